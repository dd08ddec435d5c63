//! The RocketMQ remoting protocol as pure logic: no sockets, files, clocks or threads.
//!
//! # Layout
//! - [`codec`]: the byte level. Frames (length-prefixed), the two header encodings (JSON and
//!   ROCKETMQ binary), [`RemotingCommand`], request and response codes.
//! - [`header`]: typed views of a command's `extFields` for each request and response.
//! - [`body`]: JSON bodies (route data, cluster info, heartbeats, broker registration...),
//!   read and written with fastjson's quirks.
//! - [`filter`]: SQL92 property filters (the selector language and the broker's per-group
//!   compiled filters).
//! - [`message`]: message-level formats shared with the store (properties, sys flags, stored
//!   records, batch bodies, message ids), re-exported from `store-core`, which owns them.
//! - [`namesrv`]: the name server state machine (routes, broker liveness, KV config).
//! - [`controller`]: the controller-mode machine (per broker set: master, epoch, sync state
//!   set), replicated through a log the adapter runs.
//! - `reply.rs`: the responses both roles build (success, code and remark, not supported,
//!   SYSTEM_ERROR for undecodable requests) and the oneway rule.
//! - [`role`]: the driving contract of the role machines (`handle_*`, `poll_transmit`,
//!   `next_timeout`) that `io-adapters` runs.
//!
//! What it leaves out: every kind of I/O. Callers feed bytes and time in and take bytes and
//! actions out; `io-adapters` does the reading, writing and waiting.
#![forbid(unsafe_code)]

pub mod body;
pub mod broker;
pub mod client;
pub mod codec;
pub mod controller;
pub mod filter;
pub mod ha;
pub mod header;
pub mod message;
pub mod namesrv;
mod reply;
pub mod role;

#[cfg(test)]
mod tests;

pub use codec::code::{RequestCode, ResponseCode};
pub use codec::command::{ExtFields, LanguageCode, RemotingCommand, SerializeType};
pub use codec::{
    encode_frame, encode_header, EncodeError, FrameDecoder, FrameError, FRAME_LEN_MAX_DEFAULT,
};
