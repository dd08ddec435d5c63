//! Byte-level remoting codec: frames, headers, codes. See `../shared/docs/remoting-protocol.md`
//! §1–§5 for the layouts.

pub mod code;
pub mod command;
