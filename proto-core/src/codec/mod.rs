//! Byte-level remoting codec: frames, headers, codes. See `../shared/docs/remoting-protocol.md`
//! §1–§5 for the layouts.
//!
//! - [`frame`]: the length-prefixed frame, a streaming [`FrameDecoder`] and [`encode_frame`].
//! - [`json_header`]: the JSON header (serialize type 0), read leniently, written as fastjson.
//! - [`binary_header`]: the ROCKETMQ binary header (serialize type 1).
//! - [`command`], [`code`]: the decoded command and its codes.
//! - `decimal`: integers written as text without `fmt`, for both encoders.
//!
//! What it leaves out: the typed views of `extFields` (`crate::header`) and bodies
//! (`crate::body`).

pub mod binary_header;
pub mod code;
pub mod command;
pub(crate) mod decimal;
pub mod frame;
pub mod json_header;

pub use binary_header::{BinaryEncodeError, BinaryHeaderError};
pub use frame::{
    encode_frame, encode_frame_head, encode_header, EncodeError, FrameDecoder, FrameError,
    FRAME_LEN_MAX_DEFAULT, HEADER_LEN_MAX,
};
pub use json_header::JsonHeaderError;
