//! Scenario tests: role machines wired by hand and fed real frames, one file per story.
//!
//! - `namesrv.rs`: a name server replaying a real broker's registrations and a real client's
//!   route lookups from `../shared/vectors/`.

mod namesrv;
