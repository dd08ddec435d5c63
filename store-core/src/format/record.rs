//! The stored message record (§7.5 of the protocol reference): one message as it sits in the
//! commit log and as pull, POP, query and view responses carry it, plus the 8-byte blank
//! marker that fills the tail of a commit-log segment (§16.1).
//!
//! Layout, big-endian, offsets for IPv4 hosts (each IPv6 host field adds 12 to later offsets):
//!
//! | off | field | width |
//! |---|---|---|
//! | 0 | TOTALSIZE, whole record incl. this field | i32 |
//! | 4 | MAGICCODE: [`MAGIC_V1`] or [`MAGIC_V2`] | i32 |
//! | 8 | BODYCRC: CRC-32 of the body & 0x7FFFFFFF | i32 |
//! | 12 | QUEUEID | i32 |
//! | 16 | FLAG | i32 |
//! | 20 | QUEUEOFFSET | i64 |
//! | 28 | PHYSICALOFFSET | i64 |
//! | 36 | SYSFLAG | i32 |
//! | 40 | BORNTIMESTAMP | i64 |
//! | 48 | BORNHOST: 4 (or 16 if sysflag bit 4) address bytes + i32 port | 8/20 |
//! | 56 | STORETIMESTAMP | i64 |
//! | 64 | STOREHOST: as BORNHOST, governed by sysflag bit 5 | 8/20 |
//! | 72 | RECONSUMETIMES | i32 |
//! | 76 | PREPARED TRANSACTION OFFSET | i64 |
//! | 84 | BODYLENGTH i32 + BODY | 4 + n |
//! | | TOPICLENGTH (i8 in v1, i16 in v2) + TOPIC | 1/2 + n |
//! | | PROPERTIESLENGTH i16 + PROPERTIES | 2 + n |
//!
//! Invariants the decoder checks, so a record that passes is exactly what an encoder wrote:
//! TOTALSIZE equals the length the fields add up to; the magic is v1 or v2; lengths are not
//! negative; ports fit in 16 bits; and (unless skipped) BODYCRC matches the body.
//!
//! Left out: compression (see `compress`), parsing properties (see `properties`), and the
//! optional whole-record `__CRC32#` property, which RocketMQ leaves off by default.

use bytes::Bytes;
use core::net::SocketAddr;

use super::msg_id::{self, encode_offset_msg_id};
use super::sys_flag::{self, BORNHOST_V6_FLAG, STOREHOSTADDRESS_V6_FLAG};

/// Magic code of a v1 record (1-byte topic length); Java `MESSAGE_MAGIC_CODE`, −626843481.
pub const MAGIC_V1: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic code of a v2 record (2-byte topic length); Java `MESSAGE_MAGIC_CODE_V2`.
pub const MAGIC_V2: i32 = 0xDAA3_20AB_u32 as i32;
/// Magic code of the blank marker ending a commit-log segment; Java `BLANK_MAGIC_CODE`.
pub const BLANK_MAGIC: i32 = 0xCBD4_3194_u32 as i32;
/// Size of the blank marker: TOTALSIZE + BLANK_MAGIC. A segment always keeps room for one
/// (Java `END_FILE_MIN_BLANK_LENGTH`).
pub const BLANK_RECORD_LEN: usize = 8;
/// Longest topic written as v1. Longer topics switch the record to v2, as RocketMQ's
/// `autoMessageVersionOnTopicLen` (default on) does.
pub const MAX_V1_TOPIC_LEN: usize = 127;
/// Longest topic or properties string the i16 length fields can hold.
pub const MAX_SHORT_FIELD_LEN: usize = i16::MAX as usize;

/// Position of QUEUEOFFSET; fixed, it precedes both host fields.
pub const QUEUE_OFFSET_POSITION: usize = 20;
/// Position of PHYSICALOFFSET.
pub const PHYSICAL_OFFSET_POSITION: usize = 28;
/// Position of SYSFLAG.
pub const SYS_FLAG_POSITION: usize = 36;
/// Position of BORNHOST.
pub const BORN_HOST_POSITION: usize = 48;

/// Everything before BODYLENGTH with IPv4 hosts.
const FIXED_PREFIX_LEN: usize = 84;
/// Extra bytes per IPv6 host field (16 + 4 instead of 4 + 4).
const IPV6_EXTRA_LEN: usize = 12;

const _: () = assert!(MAGIC_V1 == -626_843_481);
const _: () = assert!(MAGIC_V2 == -626_843_477);
const _: () = assert!(BLANK_MAGIC == -875_286_124);
const _: () = assert!(FIXED_PREFIX_LEN == BORN_HOST_POSITION + 8 + 8 + 8 + 4 + 8);
// 91 bytes of overhead for v1 with IPv4 hosts, as the reference states.
const _: () = assert!(FIXED_PREFIX_LEN + 4 + 1 + 2 == 91);

/// One stored message. TOTALSIZE and BODYCRC are derived when encoding, so they are not fields;
/// neither are sysflag bits 4–5, which follow the host address families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Queue id within the topic.
    pub queue_id: i32,
    /// Application flag, opaque to the broker.
    pub flag: i32,
    /// Consume-queue (logical) offset; 0 for prepared and rollback records.
    pub queue_offset: i64,
    /// Commit-log offset of this record's first byte.
    pub physical_offset: i64,
    /// `MessageSysFlag` bits. The encoder rewrites bits 4–5 from the host families.
    pub sys_flag: i32,
    /// Producer's timestamp, ms since the epoch.
    pub born_timestamp: i64,
    /// Producer's address as the broker saw it.
    pub born_host: SocketAddr,
    /// Broker's timestamp at append, ms since the epoch.
    pub store_timestamp: i64,
    /// Broker's own listen address; with `physical_offset` it forms the offset message id.
    pub store_host: SocketAddr,
    /// How many times the message went through `%RETRY%`.
    pub reconsume_times: i32,
    /// For commit/rollback records: commit-log offset of the half message; else 0.
    pub prepared_transaction_offset: i64,
    /// The body as stored (still compressed if sysflag bit 0 is set).
    pub body: Bytes,
    /// Topic name, UTF-8 bytes.
    pub topic: Bytes,
    /// Encoded properties string (see `properties`).
    pub properties: Bytes,
}

/// Record format version, chosen by topic length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageVersion {
    /// 1-byte topic length, magic [`MAGIC_V1`].
    V1,
    /// 2-byte topic length, magic [`MAGIC_V2`].
    V2,
}

impl MessageVersion {
    /// The version a magic code names, if any.
    #[must_use]
    pub fn from_magic(magic: i32) -> Option<Self> {
        match magic {
            MAGIC_V1 => Some(Self::V1),
            MAGIC_V2 => Some(Self::V2),
            _ => None,
        }
    }

    /// The version the encoder uses for a topic of `topic_len` bytes.
    #[must_use]
    pub fn for_topic_len(topic_len: usize) -> Self {
        if topic_len > MAX_V1_TOPIC_LEN {
            Self::V2
        } else {
            Self::V1
        }
    }

    /// This version's magic code.
    #[must_use]
    pub fn magic(self) -> i32 {
        match self {
            Self::V1 => MAGIC_V1,
            Self::V2 => MAGIC_V2,
        }
    }

    /// Width of the topic length field.
    #[must_use]
    pub fn topic_len_width(self) -> usize {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }
}

/// Whether [`decode_with`] verifies BODYCRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcCheck {
    /// Recompute the body CRC and compare (recovery; `checkCRCOnRecover` defaults to true).
    Verify,
    /// Trust the stored CRC (consumers, which RocketMQ does not make verify by default).
    Skip,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the record needs: the 8-byte head, or TOTALSIZE.
    #[error("record truncated: needs {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes there are.
        available: usize,
    },
    /// The blank marker that ends a commit-log segment, not a message.
    #[error("blank end-of-segment marker covering {total_size} bytes")]
    Blank {
        /// Bytes the marker says remain in the segment.
        total_size: i32,
    },
    /// Neither message magic nor the blank magic.
    #[error("bad magic code {magic:#010x}")]
    BadMagic {
        /// The magic code found.
        magic: i32,
    },
    /// TOTALSIZE is negative or too small for even the fixed fields.
    #[error("total size {total_size} is below the minimum record size")]
    BadTotalSize {
        /// TOTALSIZE as stored.
        total_size: i32,
    },
    /// A field runs past the end that TOTALSIZE declares.
    #[error("field {field} runs past the declared total size {total_size}")]
    FieldOverrun {
        /// The field that did not fit.
        field: RecordField,
        /// TOTALSIZE as stored.
        total_size: i32,
    },
    /// The fields end before TOTALSIZE does.
    #[error("total size {total_size} but the fields add up to {computed}")]
    SizeMismatch {
        /// TOTALSIZE as stored.
        total_size: i32,
        /// Length the fields add up to.
        computed: usize,
    },
    /// A length field holds a negative value.
    #[error("negative length {len} for {field}")]
    NegativeLength {
        /// The field whose length is negative.
        field: RecordField,
        /// The stored length.
        len: i32,
    },
    /// A host port outside 0..=65535.
    #[error("{field} port {port} is out of range")]
    BadPort {
        /// BornHost or StoreHost.
        field: RecordField,
        /// The port as stored.
        port: i32,
    },
    /// BODYCRC does not match the body.
    #[error("body CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC stored in the record.
        stored: i32,
        /// CRC of the body bytes.
        computed: i32,
    },
}

/// A record field, for naming it in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordField {
    /// Everything from BODYCRC through PREPARED TRANSACTION OFFSET.
    FixedFields,
    /// BORNHOST.
    BornHost,
    /// STOREHOST.
    StoreHost,
    /// BODYLENGTH + BODY.
    Body,
    /// TOPICLENGTH + TOPIC.
    Topic,
    /// PROPERTIESLENGTH + PROPERTIES.
    Properties,
}

impl core::fmt::Display for RecordField {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::FixedFields => "fixed fields",
            Self::BornHost => "born host",
            Self::StoreHost => "store host",
            Self::Body => "body",
            Self::Topic => "topic",
            Self::Properties => "properties",
        })
    }
}

/// Why a record cannot be encoded: the broker must reject such a message before it gets here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordEncodeError {
    /// Topic longer than the 2-byte length field allows.
    #[error("topic of {len} bytes exceeds {MAX_SHORT_FIELD_LEN}")]
    TopicTooLong {
        /// Topic length in bytes.
        len: usize,
    },
    /// Properties longer than the 2-byte length field allows (RocketMQ's
    /// PROPERTIES_SIZE_EXCEEDED).
    #[error("properties of {len} bytes exceed {MAX_SHORT_FIELD_LEN}")]
    PropertiesTooLong {
        /// Properties length in bytes.
        len: usize,
    },
    /// The whole record would not fit the i32 TOTALSIZE.
    #[error("record of {len} bytes does not fit an i32 total size")]
    RecordTooLarge {
        /// Record length in bytes.
        len: usize,
    },
}

/// The three fields the store fills in when it appends a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredAt {
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub store_timestamp: i64,
}

impl MessageRecord {
    /// The version the encoder writes: v2 only for topics over 127 bytes.
    #[must_use]
    pub fn version(&self) -> MessageVersion {
        MessageVersion::for_topic_len(self.topic.len())
    }

    /// `sys_flag` as written: bits 4–5 set from the host address families.
    #[must_use]
    pub fn stored_sys_flag(&self) -> i32 {
        sys_flag::with_host_families(
            self.sys_flag,
            self.born_host.is_ipv6(),
            self.store_host.is_ipv6(),
        )
    }

    /// Length of the encoded record, TOTALSIZE.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        record_len(
            self.version(),
            self.born_host.is_ipv6(),
            self.store_host.is_ipv6(),
            self.body.len(),
            self.topic.len(),
            self.properties.len(),
        )
    }

    /// Checks the length limits [`MessageRecord::encode_into`] asserts.
    ///
    /// # Errors
    /// [`RecordEncodeError`] naming the field that is too long.
    pub fn check_encodable(&self) -> Result<(), RecordEncodeError> {
        if self.topic.len() > MAX_SHORT_FIELD_LEN {
            return Err(RecordEncodeError::TopicTooLong {
                len: self.topic.len(),
            });
        }
        if self.properties.len() > MAX_SHORT_FIELD_LEN {
            return Err(RecordEncodeError::PropertiesTooLong {
                len: self.properties.len(),
            });
        }
        let len = self.encoded_len();
        if i32::try_from(len).is_err() {
            return Err(RecordEncodeError::RecordTooLarge { len });
        }
        Ok(())
    }

    /// Appends the encoded record to `out`.
    ///
    /// # Panics
    /// If [`MessageRecord::check_encodable`] fails: callers validate messages first.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_at_into(&self.stored_at(), out);
    }

    /// Writes the encoded record into `out`, which must be exactly
    /// [`MessageRecord::encoded_len`] bytes (a slot in a mapped segment, say).
    ///
    /// # Panics
    /// If `out` has another length or [`MessageRecord::check_encodable`] fails.
    pub fn encode_to_slice(&self, out: &mut [u8]) {
        self.encode_at_to_slice(&self.stored_at(), out);
    }

    /// Where the record itself says it is stored.
    #[must_use]
    pub fn stored_at(&self) -> StoredAt {
        StoredAt {
            queue_offset: self.queue_offset,
            physical_offset: self.physical_offset,
            store_timestamp: self.store_timestamp,
        }
    }

    /// Appends the record as stored at `at`, whatever its own three placement fields say:
    /// the store's append path encodes the caller's record without copying it first.
    ///
    /// # Panics
    /// If [`MessageRecord::check_encodable`] fails: callers validate messages first.
    pub fn encode_at_into(&self, at: &StoredAt, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.encoded_len(), 0);
        self.encode_at_to_slice(at, &mut out[start..]);
    }

    fn encode_at_to_slice(&self, at: &StoredAt, out: &mut [u8]) {
        if let Err(err) = self.check_encodable() {
            panic!("record not encodable: {err}");
        }
        let len = self.encoded_len();
        assert_eq!(
            out.len(),
            len,
            "output slice must be exactly the record length"
        );
        let version = self.version();
        let mut w = Writer { out, pos: 0 };
        // Lengths fit their fields: check_encodable bounded topic/properties to i16 and the
        // record (hence the body) to i32, and v1 is chosen only for topics up to 127 bytes.
        w.i32(len as i32);
        w.i32(version.magic());
        w.i32(body_crc(&self.body));
        w.i32(self.queue_id);
        w.i32(self.flag);
        w.i64(at.queue_offset);
        w.i64(at.physical_offset);
        w.i32(self.stored_sys_flag());
        w.i64(self.born_timestamp);
        w.host(self.born_host);
        w.i64(at.store_timestamp);
        w.host(self.store_host);
        w.i32(self.reconsume_times);
        w.i64(self.prepared_transaction_offset);
        w.i32(self.body.len() as i32);
        w.bytes(&self.body);
        match version {
            MessageVersion::V1 => w.bytes(&[self.topic.len() as u8]),
            MessageVersion::V2 => w.bytes(&(self.topic.len() as i16).to_be_bytes()),
        }
        w.bytes(&self.topic);
        w.bytes(&(self.properties.len() as i16).to_be_bytes());
        w.bytes(&self.properties);
        assert_eq!(
            w.pos, len,
            "encoder wrote a different length than it computed"
        );
    }

    /// The offset message id: store host + physical offset (§7.7).
    #[must_use]
    pub fn msg_id(&self) -> String {
        encode_offset_msg_id(self.store_host, self.physical_offset)
    }

    /// The topic as text, if it is valid UTF-8 (every topic we write is).
    #[must_use]
    pub fn topic_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.topic).ok()
    }
}

/// BODYCRC: CRC-32 (zlib polynomial, as `java.util.zip.CRC32`) masked to 31 bits.
#[must_use]
pub fn body_crc(body: &[u8]) -> i32 {
    (crc32fast::hash(body) & 0x7FFF_FFFF) as i32
}

/// Record length for the given version, host families and field lengths.
#[must_use]
pub fn record_len(
    version: MessageVersion,
    born_host_v6: bool,
    store_host_v6: bool,
    body_len: usize,
    topic_len: usize,
    properties_len: usize,
) -> usize {
    let hosts_extra = IPV6_EXTRA_LEN * (usize::from(born_host_v6) + usize::from(store_host_v6));
    FIXED_PREFIX_LEN
        + hosts_extra
        + 4
        + body_len
        + version.topic_len_width()
        + topic_len
        + 2
        + properties_len
}

/// Decodes the record at the start of `buf`, verifying BODYCRC. Returns the record, whose byte
/// fields are slices of `buf`, and its length.
///
/// # Errors
/// [`RecordError`] naming the first violation found.
pub fn decode(buf: &Bytes) -> Result<(MessageRecord, usize), RecordError> {
    decode_with(buf, CrcCheck::Verify)
}

/// [`decode`] with a choice about the CRC.
///
/// # Errors
/// [`RecordError`] naming the first violation found.
pub fn decode_with(buf: &Bytes, crc: CrcCheck) -> Result<(MessageRecord, usize), RecordError> {
    let head = peek(buf).ok_or(RecordError::Truncated {
        needed: BLANK_RECORD_LEN,
        available: buf.len(),
    })?;
    let version = match (MessageVersion::from_magic(head.magic), head.magic) {
        (Some(version), _) => version,
        (None, BLANK_MAGIC) => {
            return Err(RecordError::Blank {
                total_size: head.total_size,
            })
        }
        (None, magic) => return Err(RecordError::BadMagic { magic }),
    };
    let total_size = head.total_size;
    let len = usize::try_from(total_size)
        .ok()
        .filter(|&len| len >= record_len(version, false, false, 0, 0, 0))
        .ok_or(RecordError::BadTotalSize { total_size })?;
    if len > buf.len() {
        return Err(RecordError::Truncated {
            needed: len,
            available: buf.len(),
        });
    }
    let mut r = Reader {
        buf: &buf[..len],
        pos: BLANK_RECORD_LEN,
        total_size,
    };
    let stored_crc = r.i32(RecordField::FixedFields)?;
    let queue_id = r.i32(RecordField::FixedFields)?;
    let flag = r.i32(RecordField::FixedFields)?;
    let queue_offset = r.i64(RecordField::FixedFields)?;
    let physical_offset = r.i64(RecordField::FixedFields)?;
    let sys_flag = r.i32(RecordField::FixedFields)?;
    let born_timestamp = r.i64(RecordField::FixedFields)?;
    let born_host = r.host(sys_flag & BORNHOST_V6_FLAG != 0, RecordField::BornHost)?;
    let store_timestamp = r.i64(RecordField::FixedFields)?;
    let store_host = r.host(
        sys_flag & STOREHOSTADDRESS_V6_FLAG != 0,
        RecordField::StoreHost,
    )?;
    let reconsume_times = r.i32(RecordField::FixedFields)?;
    let prepared_transaction_offset = r.i64(RecordField::FixedFields)?;
    let body_len = r.i32(RecordField::Body)?;
    let body = r.span(body_len, RecordField::Body)?;
    let topic_len = match version {
        MessageVersion::V1 => i32::from(r.take::<1>(RecordField::Topic)?[0] as i8),
        MessageVersion::V2 => i32::from(i16::from_be_bytes(r.take(RecordField::Topic)?)),
    };
    let topic = r.span(topic_len, RecordField::Topic)?;
    let properties_len = i32::from(i16::from_be_bytes(r.take(RecordField::Properties)?));
    let properties = r.span(properties_len, RecordField::Properties)?;
    if r.pos != len {
        return Err(RecordError::SizeMismatch {
            total_size,
            computed: r.pos,
        });
    }
    let body = buf.slice(body);
    if crc == CrcCheck::Verify {
        let computed = body_crc(&body);
        if computed != stored_crc {
            return Err(RecordError::BadCrc {
                stored: stored_crc,
                computed,
            });
        }
    }
    let record = MessageRecord {
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic: buf.slice(topic),
        properties: buf.slice(properties),
    };
    Ok((record, len))
}

/// Decodes a concatenation of records, such as a pull response body. Stops after the first
/// error, as Java's `MessageDecoder.decodes` does.
#[must_use]
pub fn decode_all(buf: Bytes) -> RecordIter {
    RecordIter {
        rest: buf,
        crc: CrcCheck::Verify,
        failed: false,
    }
}

/// Iterator returned by [`decode_all`].
#[derive(Debug, Clone)]
pub struct RecordIter {
    rest: Bytes,
    crc: CrcCheck,
    failed: bool,
}

impl RecordIter {
    /// Sets whether each record's BODYCRC is verified (the default is [`CrcCheck::Verify`]).
    #[must_use]
    pub fn with_crc(mut self, crc: CrcCheck) -> Self {
        self.crc = crc;
        self
    }
}

impl Iterator for RecordIter {
    type Item = Result<MessageRecord, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match decode_with(&self.rest, self.crc) {
            Ok((record, len)) => {
                let _ = self.rest.split_to(len);
                Some(Ok(record))
            }
            Err(err) => {
                self.failed = true;
                Some(Err(err))
            }
        }
    }
}

impl core::iter::FusedIterator for RecordIter {}

/// The first 8 bytes of a commit-log slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPeek {
    /// TOTALSIZE.
    pub total_size: i32,
    /// MAGICCODE.
    pub magic: i32,
}

/// What a commit-log slot holds, judged from its first 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A message record of this version (still to be decoded and checked).
    Message(MessageVersion),
    /// The blank marker: the rest of the segment is filler; go to the next segment.
    Blank,
    /// Zero bytes: the preallocated, never-written part of a segment, end of data.
    Empty,
    /// Anything else: a torn or corrupt write, also end of valid data.
    Corrupt,
}

impl RecordPeek {
    /// Classifies the slot.
    #[must_use]
    pub fn kind(self) -> SlotKind {
        match (MessageVersion::from_magic(self.magic), self.magic) {
            (Some(version), _) => SlotKind::Message(version),
            (None, BLANK_MAGIC) => SlotKind::Blank,
            (None, 0) if self.total_size == 0 => SlotKind::Empty,
            (None, _) => SlotKind::Corrupt,
        }
    }
}

/// Reads TOTALSIZE and MAGICCODE, or `None` if `buf` is shorter than 8 bytes.
#[must_use]
pub fn peek(buf: &[u8]) -> Option<RecordPeek> {
    let head: &[u8; BLANK_RECORD_LEN] = buf.get(..BLANK_RECORD_LEN)?.try_into().ok()?;
    let (size, magic) = head.split_at(4);
    Some(RecordPeek {
        total_size: i32::from_be_bytes(size.try_into().ok()?),
        magic: i32::from_be_bytes(magic.try_into().ok()?),
    })
}

/// The blank marker for a segment tail of `total_size` bytes: TOTALSIZE then [`BLANK_MAGIC`].
/// Only these 8 bytes are written; the rest of the tail stays zero.
///
/// # Panics
/// If `total_size` is below [`BLANK_RECORD_LEN`]: a segment always keeps room for the marker.
#[must_use]
pub fn blank_record(total_size: i32) -> [u8; BLANK_RECORD_LEN] {
    assert!(
        total_size >= BLANK_RECORD_LEN as i32,
        "blank tail of {total_size} bytes is too short"
    );
    let mut out = [0u8; BLANK_RECORD_LEN];
    out[..4].copy_from_slice(&total_size.to_be_bytes());
    out[4..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
    out
}

/// Big-endian writer over a slice sized by `encoded_len`; overrunning it is an encoder bug.
struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        self.out[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }

    fn i32(&mut self, v: i32) {
        self.bytes(&v.to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.bytes(&v.to_be_bytes());
    }

    fn host(&mut self, host: SocketAddr) {
        match host {
            SocketAddr::V4(v4) => self.bytes(&v4.ip().octets()),
            SocketAddr::V6(v6) => self.bytes(&v6.ip().octets()),
        }
        self.i32(i32::from(host.port()));
    }
}

/// Big-endian reader over one record's bytes (`buf` is cut at TOTALSIZE).
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    total_size: i32,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self, field: RecordField) -> Result<[u8; N], RecordError> {
        let range = self.advance(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[range]);
        Ok(out)
    }

    fn i32(&mut self, field: RecordField) -> Result<i32, RecordError> {
        self.take(field).map(i32::from_be_bytes)
    }

    fn i64(&mut self, field: RecordField) -> Result<i64, RecordError> {
        self.take(field).map(i64::from_be_bytes)
    }

    /// The range of the next `len` bytes, after checking the stored length is not negative.
    fn span(
        &mut self,
        len: i32,
        field: RecordField,
    ) -> Result<core::ops::Range<usize>, RecordError> {
        let len = usize::try_from(len).map_err(|_| RecordError::NegativeLength { field, len })?;
        self.advance(len, field)
    }

    fn host(&mut self, v6: bool, field: RecordField) -> Result<SocketAddr, RecordError> {
        let ip = self.advance(if v6 { 16 } else { 4 }, field)?;
        let port = self.i32(field)?;
        msg_id::socket_addr(&self.buf[ip], port).map_err(|_| RecordError::BadPort { field, port })
    }

    fn advance(
        &mut self,
        len: usize,
        field: RecordField,
    ) -> Result<core::ops::Range<usize>, RecordError> {
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or(RecordError::FieldOverrun {
                field,
                total_size: self.total_size,
            })?;
        self.pos = end;
        Ok(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::sys_flag::COMPRESSED_FLAG;
    use core::net::{SocketAddrV4, SocketAddrV6};
    use proptest::prelude::*;

    fn sample_v4() -> MessageRecord {
        MessageRecord {
            queue_id: 1,
            flag: 0,
            queue_offset: 2,
            physical_offset: 0x100,
            // Bit 4 set on purpose: the encoder must clear it because the born host is IPv4.
            sys_flag: BORNHOST_V6_FLAG | COMPRESSED_FLAG,
            born_timestamp: 0x0102_0304_0506_0708,
            born_host: "10.0.0.1:5000".parse().unwrap(),
            store_timestamp: 0x1112_1314_1516_1718,
            store_host: "127.0.0.1:10911".parse().unwrap(),
            reconsume_times: 3,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"hi"),
            topic: Bytes::from_static(b"T"),
            properties: Bytes::from_static(b"A\x01B\x02"),
        }
    }

    fn unhex(hex: &str) -> Vec<u8> {
        let hex: String = hex.split_whitespace().collect();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn v1_ipv4_record_matches_hand_computed_bytes() {
        let expected = unhex(
            "00000062 DAA320A7 58932AAC 00000001 00000000 0000000000000002 0000000000000100
             00000001 0102030405060708 0A000001 00001388 1112131415161718 7F000001 00002A9F
             00000003 0000000000000000 00000002 6869 01 54 0004 41014202",
        );
        let record = sample_v4();
        assert_eq!(record.encoded_len(), 98);
        let mut out = vec![0xEE];
        record.encode_into(&mut out);
        assert_eq!(&out[1..], &expected[..]);
        let buf = Bytes::from(expected);
        let (decoded, len) = decode(&buf).unwrap();
        assert_eq!(len, 98);
        assert_eq!(
            decoded,
            MessageRecord {
                sys_flag: COMPRESSED_FLAG,
                ..record
            }
        );
        assert_eq!(decoded.msg_id(), "7F00000100002A9F0000000000000100");
        assert_eq!(decoded.topic_str(), Some("T"));
    }

    #[test]
    fn v2_ipv6_record_layout() {
        let record = MessageRecord {
            sys_flag: 0,
            born_host: "[::1]:1".parse().unwrap(),
            store_host: "[2001:db8::1]:10911".parse().unwrap(),
            topic: Bytes::from(vec![b'x'; 128]),
            ..sample_v4()
        };
        assert_eq!(record.version(), MessageVersion::V2);
        let len = 91 + 1 + 24 + 2 + 128 + 4;
        assert_eq!(record.encoded_len(), len);
        let mut slot = vec![0u8; len];
        record.encode_to_slice(&mut slot);
        assert_eq!(&slot[..8], &unhex("000000FA DAA320AB")[..]);
        assert_eq!(
            &slot[SYS_FLAG_POSITION..SYS_FLAG_POSITION + 4],
            &[0, 0, 0, 0x30]
        );
        // Born host: 16 address bytes then port 1.
        let born = &slot[BORN_HOST_POSITION..BORN_HOST_POSITION + 20];
        assert_eq!(&born[..16], &Ipv6::LOCALHOST.octets());
        assert_eq!(&born[16..], &[0, 0, 0, 1]);
        // Store host starts after the 8-byte store timestamp.
        let store = &slot[BORN_HOST_POSITION + 28..BORN_HOST_POSITION + 48];
        assert_eq!(&store[..4], &[0x20, 0x01, 0x0D, 0xB8]);
        assert_eq!(&store[16..], &unhex("00002A9F")[..]);
        // Body length and body at 84 + 24, then the 2-byte topic length 0x0080.
        let body_at = FIXED_PREFIX_LEN + 2 * IPV6_EXTRA_LEN;
        assert_eq!(&slot[body_at..body_at + 6], &unhex("00000002 6869")[..]);
        assert_eq!(&slot[body_at + 6..body_at + 8], &[0x00, 0x80]);
        let (decoded, used) = decode(&Bytes::from(slot)).unwrap();
        assert_eq!(used, len);
        assert_eq!(decoded.sys_flag, 0x30);
        assert_eq!(decoded.born_host, record.born_host);
        assert_eq!(decoded.topic, record.topic);
        assert_eq!(decoded.msg_id().len(), 56);
    }

    type Ipv6 = core::net::Ipv6Addr;

    #[test]
    fn topic_of_127_bytes_stays_v1() {
        let record = MessageRecord {
            topic: Bytes::from(vec![b'x'; 127]),
            ..sample_v4()
        };
        assert_eq!(record.version(), MessageVersion::V1);
        let mut out = Vec::new();
        record.encode_into(&mut out);
        assert_eq!(peek(&out).unwrap().magic, MAGIC_V1);
        assert_eq!(decode(&Bytes::from(out)).unwrap().0.topic.len(), 127);
    }

    fn encoded(record: &MessageRecord) -> Vec<u8> {
        let mut out = Vec::new();
        record.encode_into(&mut out);
        out
    }

    #[test]
    fn decode_names_each_violation() {
        let good = encoded(&sample_v4());
        let check = |bytes: Vec<u8>| decode(&Bytes::from(bytes)).unwrap_err();

        assert_eq!(
            check(good[..5].to_vec()),
            RecordError::Truncated {
                needed: 8,
                available: 5
            }
        );
        assert_eq!(
            check(good[..97].to_vec()),
            RecordError::Truncated {
                needed: 98,
                available: 97
            }
        );

        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&0x1234_5678_i32.to_be_bytes());
        assert_eq!(check(bad), RecordError::BadMagic { magic: 0x1234_5678 });

        assert_eq!(
            check(blank_record(64).to_vec()),
            RecordError::Blank { total_size: 64 }
        );

        let mut bad = good.clone();
        bad[..4].copy_from_slice(&90_i32.to_be_bytes());
        assert_eq!(check(bad), RecordError::BadTotalSize { total_size: 90 });

        // Declares one byte more than the fields use (an extra trailing byte is present).
        let mut bad = good.clone();
        bad[..4].copy_from_slice(&99_i32.to_be_bytes());
        bad.push(0);
        assert_eq!(
            check(bad),
            RecordError::SizeMismatch {
                total_size: 99,
                computed: 98
            }
        );

        // A body length running past the record.
        let mut bad = good.clone();
        bad[84..88].copy_from_slice(&1000_i32.to_be_bytes());
        let want = RecordError::FieldOverrun {
            field: RecordField::Body,
            total_size: 98,
        };
        assert_eq!(check(bad), want);

        let mut bad = good.clone();
        bad[84..88].copy_from_slice(&(-1_i32).to_be_bytes());
        assert_eq!(
            check(bad),
            RecordError::NegativeLength {
                field: RecordField::Body,
                len: -1
            }
        );

        // A v1 topic length byte above 127 reads as negative, as in Java.
        let mut bad = good.clone();
        bad[90] = 0x80;
        let want = RecordError::NegativeLength {
            field: RecordField::Topic,
            len: -128,
        };
        assert_eq!(check(bad), want);

        let mut bad = good.clone();
        bad[52..56].copy_from_slice(&70_000_i32.to_be_bytes());
        let want = RecordError::BadPort {
            field: RecordField::BornHost,
            port: 70_000,
        };
        assert_eq!(check(bad), want);

        // Flipping the sysflag's store-host bit makes the fixed part 12 bytes longer.
        let mut bad = good.clone();
        bad[39] |= 0x20;
        assert!(matches!(
            check(bad),
            RecordError::FieldOverrun { .. } | RecordError::SizeMismatch { .. }
        ));

        let mut bad = good.clone();
        bad[88] ^= 1;
        assert!(matches!(
            check(bad.clone()),
            RecordError::BadCrc {
                stored: 0x5893_2AAC,
                ..
            }
        ));
        assert!(decode_with(&Bytes::from(bad), CrcCheck::Skip).is_ok());
    }

    #[test]
    fn peek_classifies_slots() {
        let good = encoded(&sample_v4());
        assert_eq!(
            peek(&good).unwrap().kind(),
            SlotKind::Message(MessageVersion::V1)
        );
        assert_eq!(peek(&good).unwrap().total_size, 98);
        let blank = blank_record(1000);
        assert_eq!(blank, [0, 0, 3, 0xE8, 0xCB, 0xD4, 0x31, 0x94]);
        assert_eq!(
            peek(&blank).unwrap(),
            RecordPeek {
                total_size: 1000,
                magic: BLANK_MAGIC
            }
        );
        assert_eq!(peek(&blank).unwrap().kind(), SlotKind::Blank);
        assert_eq!(peek(&[0; 8]).unwrap().kind(), SlotKind::Empty);
        assert_eq!(
            peek(&[0, 0, 0, 9, 0, 0, 0, 0]).unwrap().kind(),
            SlotKind::Corrupt
        );
        assert_eq!(peek(&[0; 7]), None);
    }

    #[test]
    #[should_panic(expected = "too short")]
    fn blank_record_needs_eight_bytes() {
        let _ = blank_record(7);
    }

    #[test]
    fn encode_checks_length_limits() {
        let props = MessageRecord {
            properties: Bytes::from(vec![b'p'; 32_768]),
            ..sample_v4()
        };
        assert_eq!(
            props.check_encodable(),
            Err(RecordEncodeError::PropertiesTooLong { len: 32_768 })
        );
        let topic = MessageRecord {
            topic: Bytes::from(vec![b't'; 32_768]),
            ..sample_v4()
        };
        assert_eq!(
            topic.check_encodable(),
            Err(RecordEncodeError::TopicTooLong { len: 32_768 })
        );
        let max = MessageRecord {
            properties: Bytes::from(vec![b'p'; 32_767]),
            ..sample_v4()
        };
        assert_eq!(max.check_encodable(), Ok(()));
        let (back, _) = decode(&Bytes::from(encoded(&max))).unwrap();
        assert_eq!(back.properties.len(), 32_767);
    }

    #[test]
    #[should_panic(expected = "exactly the record length")]
    fn encode_to_slice_wants_the_exact_length() {
        sample_v4().encode_to_slice(&mut [0u8; 97]);
    }

    #[test]
    fn decode_all_stops_at_first_error() {
        let mut buf = encoded(&sample_v4());
        buf.extend(encoded(&MessageRecord {
            queue_offset: 3,
            ..sample_v4()
        }));
        buf.extend_from_slice(&[0, 0, 0]);
        let results: Vec<_> = decode_all(Bytes::from(buf)).collect();
        assert_eq!(results.len(), 3);
        assert_eq!(results[1].as_ref().unwrap().queue_offset, 3);
        assert_eq!(
            results[2],
            Err(RecordError::Truncated {
                needed: 8,
                available: 3
            })
        );
    }

    const CPP_PUSH_CONSUMER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cpp-push-consumer.jsonl"
    ));

    /// Bodies of PULL_MESSAGE responses with code SUCCESS in the golden capture. Frame layout:
    /// i32 total length, i32 (serialize type << 24 | header length), JSON header, body.
    fn pull_bodies() -> Vec<Bytes> {
        let mut bodies = Vec::new();
        for line in CPP_PUSH_CONSUMER.lines() {
            let frame: serde_json::Value = serde_json::from_str(line).unwrap();
            let is_pull_found = frame["code"] == 0
                && frame["flag"] == 1
                && frame["summary"]
                    .as_str()
                    .unwrap()
                    .contains("response to PULL_MESSAGE");
            if !is_pull_found {
                continue;
            }
            let raw = unhex(frame["hex"].as_str().unwrap());
            let total = u32::from_be_bytes(raw[..4].try_into().unwrap()) as usize;
            assert_eq!(total + 4, raw.len());
            let header_len =
                (u32::from_be_bytes(raw[4..8].try_into().unwrap()) & 0xFF_FFFF) as usize;
            bodies.push(Bytes::from(raw[8 + header_len..].to_vec()));
        }
        bodies
    }

    #[test]
    fn decodes_real_pull_response_bodies() {
        let bodies = pull_bodies();
        assert!(
            bodies.len() >= 10,
            "expected the capture's pull responses, got {}",
            bodies.len()
        );
        let mut records = 0;
        for body in &bodies {
            let mut offsets = Vec::new();
            for record in decode_all(body.clone()) {
                let record = record.unwrap();
                assert!(record.topic_str().unwrap().starts_with("Golden"));
                assert!(record.store_host.is_ipv4());
                assert!(record.physical_offset >= 0);
                let props = crate::format::properties::Properties::parse_bytes(&record.properties);
                assert!(props.get(crate::format::properties::UNIQ_KEY).is_some());
                // Re-encoding gives back the exact bytes the broker sent.
                let mut again = Vec::new();
                record.encode_into(&mut again);
                let at = offsets.iter().sum::<usize>();
                assert_eq!(&again[..], &body[at..at + again.len()]);
                offsets.push(again.len());
                records += 1;
            }
            assert_eq!(offsets.iter().sum::<usize>(), body.len());
        }
        assert!(records >= 20, "decoded {records} records");
    }

    fn socket() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V4(SocketAddrV4::new(ip.into(), port))),
            (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::V6(SocketAddrV6::new(ip.into(), port, 0, 0))),
        ]
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    prop_compose! {
        fn record()(
            queue_id in any::<i32>(), flag in any::<i32>(), queue_offset in any::<i64>(),
            physical_offset in any::<i64>(), sys_flag in any::<i32>(), born_timestamp in any::<i64>(),
            born_host in socket(), store_timestamp in any::<i64>(), store_host in socket(),
            reconsume_times in any::<i32>(), prepared_transaction_offset in any::<i64>(),
            body in bytes(300), topic in bytes(200), properties in bytes(300),
        ) -> MessageRecord {
            MessageRecord {
                queue_id, flag, queue_offset, physical_offset, sys_flag, born_timestamp, born_host,
                store_timestamp, store_host, reconsume_times, prepared_transaction_offset, body,
                topic, properties,
            }
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(record in record()) {
            let out = encoded(&record);
            prop_assert_eq!(out.len(), record.encoded_len());
            let (decoded, used) = decode(&Bytes::from(out)).unwrap();
            prop_assert_eq!(used, record.encoded_len());
            let normalized = MessageRecord { sys_flag: record.stored_sys_flag(), ..record };
            prop_assert_eq!(decoded, normalized);
        }

        #[test]
        fn decode_all_over_concatenations(records in prop::collection::vec(record(), 0..6)) {
            let mut buf = Vec::new();
            for r in &records {
                r.encode_into(&mut buf);
            }
            let decoded: Vec<_> = decode_all(Bytes::from(buf)).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(decoded.len(), records.len());
            for (d, r) in decoded.iter().zip(&records) {
                prop_assert_eq!(d.sys_flag, r.stored_sys_flag());
                prop_assert_eq!(&d.body, &r.body);
                prop_assert_eq!(&d.properties, &r.properties);
            }
        }

        #[test]
        fn decode_of_arbitrary_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..400)) {
            let buf = Bytes::from(raw);
            if let Ok((_, used)) = decode_with(&buf, CrcCheck::Skip) {
                prop_assert!(used <= buf.len());
            }
            for item in decode_all(buf) {
                let _ = item;
            }
        }

        #[test]
        fn corrupting_one_byte_never_panics(record in record(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut out = encoded(&record);
            let i = at.index(out.len());
            out[i] ^= 1 << bit;
            let _ = decode(&Bytes::from(out));
        }
    }
}
