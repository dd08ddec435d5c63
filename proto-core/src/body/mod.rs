//! JSON bodies with fastjson's quirks.
