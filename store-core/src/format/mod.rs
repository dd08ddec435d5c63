//! Byte layouts of messages, shared by the store and the wire: stored records and the blank
//! segment-tail marker, the properties string, sys flags, batch request bodies, message ids,
//! body compression and tag hash codes.
//!
//! Everything is big-endian, as RocketMQ writes it; this is one of the two places byte order is
//! written (the other is proto-core's codec). Nothing here does I/O or reads a clock.

pub mod batch;
pub mod compress;
pub mod msg_id;
pub mod properties;
pub mod record;
pub mod sys_flag;
pub mod tag;
