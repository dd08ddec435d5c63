//! On-disk and on-wire message layouts (filled in by the format work).
