//! [`Template`]: a send request encoded once by the real encoder, then re-sent with only the
//! bytes that differ between messages rewritten in place: each message's `UNIQ_KEY` sequence
//! digits and the born timestamp.
//!
//! Building a SEND_MESSAGE_V2 request from scratch (header struct, properties string, JSON
//! header) costs the bench several microseconds and a dozen allocations per message, on the same
//! two cores as the broker it measures. What goes on the wire is byte for byte what a fresh
//! encode of the same message would give (the tests check exactly that), so the broker sees no
//! difference.
//!
//! A template is made only where every varying value has a fixed width and occurs exactly once
//! in the frame; otherwise (`--keys`, whose values grow in width) the sender encodes each
//! request as usual. The opaque can be rewritten too ([`Template::set_opaque`]) when the new
//! one has as many decimal digits as the template's: a connection shared by several senders
//! tells their answers apart by it.

use bytes::BytesMut;
use proto_core::codec::frame::encode_frame;
use proto_core::{RemotingCommand, SerializeType};

/// Digits of a millisecond timestamp from 2001 to 2286.
const BORN_DIGITS: usize = 13;
/// Hex digits of the sequence number at the end of a bench `UNIQ_KEY`.
pub const SEQ_HEX_DIGITS: usize = 20;
/// What precedes the opaque's digits in a JSON header.
const OPAQUE_KEY: &str = "\"opaque\":";

/// One encoded request and where its varying bytes are.
#[derive(Debug)]
pub struct Template {
    frame: Vec<u8>,
    /// Offset of each message's sequence digits (the tail of its `UNIQ_KEY`), in order.
    seq_at: Vec<usize>,
    born_at: usize,
    /// Offset of the opaque's digits in the JSON header, if found exactly once.
    opaque_at: Option<usize>,
    /// The opaque the frame carries; its answer echoes it.
    pub opaque: i32,
}

impl Template {
    /// Encodes `cmd` (with `opaque`) and finds the varying bytes: `uniq_keys` are the keys of
    /// its messages in order, each ending in [`SEQ_HEX_DIGITS`] hex digits of sequence number,
    /// and `born` its born timestamp. `None` if any of them is not found exactly once.
    pub fn new(
        mut cmd: RemotingCommand,
        opaque: i32,
        uniq_keys: &[String],
        born: i64,
    ) -> Option<Template> {
        cmd.opaque = opaque;
        let mut out = BytesMut::new();
        encode_frame(&cmd, SerializeType::Json, &mut out).ok()?;
        let frame = out.to_vec();
        let born_text = born.to_string();
        if born_text.len() != BORN_DIGITS {
            return None;
        }
        let born_at = find_once(&frame, born_text.as_bytes())?;
        let opaque_field = format!("\"opaque\":{opaque},");
        let opaque_at = find_once(&frame, opaque_field.as_bytes()).map(|at| at + OPAQUE_KEY.len());
        let key_at = find_each_once(&frame, uniq_keys)?;
        let mut seq_at = Vec::with_capacity(uniq_keys.len());
        for (key, at) in uniq_keys.iter().zip(key_at) {
            let tail = key.len().checked_sub(SEQ_HEX_DIGITS)?;
            seq_at.push(at + tail);
        }
        Some(Template {
            frame,
            seq_at,
            born_at,
            opaque_at,
            opaque,
        })
    }

    /// Makes the frame carry `opaque` instead; `None` (frame unchanged) unless both it and the
    /// current opaque are non-negative with the same number of decimal digits.
    pub fn set_opaque(&mut self, opaque: i32) -> Option<()> {
        let at = self.opaque_at?;
        let (old, new) = (
            u64::try_from(self.opaque).ok()?,
            u64::try_from(opaque).ok()?,
        );
        let width = decimal_width(old);
        if decimal_width(new) != width {
            return None;
        }
        write_digits(self.frame.get_mut(at..)?, new, 10, width)?;
        self.opaque = opaque;
        Some(())
    }

    /// Messages per request.
    pub fn messages(&self) -> usize {
        self.seq_at.len()
    }

    /// The frame for messages with sequence numbers `first_seq..` born at `born`; `None` if
    /// `born` no longer has the template's width.
    pub fn fill(&mut self, first_seq: u64, born: i64) -> Option<&[u8]> {
        let born = u64::try_from(born).ok()?;
        if born < 10u64.pow(BORN_DIGITS as u32 - 1) || born >= 10u64.pow(BORN_DIGITS as u32) {
            return None;
        }
        write_digits(self.frame.get_mut(self.born_at..)?, born, 10, BORN_DIGITS)?;
        for (i, &at) in self.seq_at.iter().enumerate() {
            let seq = first_seq.wrapping_add(i as u64);
            write_digits(self.frame.get_mut(at..)?, seq, 16, SEQ_HEX_DIGITS)?;
        }
        Some(&self.frame)
    }
}

/// Decimal digits of `value` (1 for 0).
fn decimal_width(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Writes `value` as `width` upper-case digits in `radix` at the start of `out`.
fn write_digits(out: &mut [u8], mut value: u64, radix: u64, width: usize) -> Option<()> {
    let digits = out.get_mut(..width)?;
    for d in digits.iter_mut().rev() {
        let v = (value % radix) as u8;
        *d = if v < 10 { b'0' + v } else { b'A' + v - 10 };
        value /= radix;
    }
    Some(())
}

/// The offset of the only occurrence of each of `needles` (distinct, non-empty) in `hay`, in
/// their order; `None` if any occurs more or less than once. One pass over `hay` per distinct
/// needle length, looking each window up in a map, instead of one pass per needle: a batch
/// template has 64 keys in a frame of ~15 KiB.
fn find_each_once(hay: &[u8], needles: &[String]) -> Option<Vec<usize>> {
    let mut index: std::collections::HashMap<&[u8], usize> =
        std::collections::HashMap::with_capacity(needles.len());
    for (i, needle) in needles.iter().enumerate() {
        if needle.is_empty() || index.insert(needle.as_bytes(), i).is_some() {
            return None;
        }
    }
    let mut lens: Vec<usize> = needles.iter().map(String::len).collect();
    lens.sort_unstable();
    lens.dedup();
    let mut found: Vec<Option<usize>> = vec![None; needles.len()];
    for len in lens {
        for (at, window) in hay.windows(len).enumerate() {
            if let Some(&i) = index.get(window) {
                let slot = found.get_mut(i)?;
                if slot.replace(at).is_some() {
                    return None;
                }
            }
        }
    }
    found.into_iter().collect()
}

/// The offset of the only occurrence of `needle` in `hay`.
fn find_once(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let mut found = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i);
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_core::body::MessageQueue;
    use proto_core::client::{send_message_v2_request, OutgoingMessage};

    fn request(uniq: &str, born: i64) -> RemotingCommand {
        let mq = MessageQueue {
            topic: "T".to_string(),
            broker_name: "b".to_string(),
            queue_id: 1,
        };
        let msg = OutgoingMessage {
            topic: "T".to_string(),
            body: bytes::Bytes::from_static(b"0123456789"),
            tags: Some("TagA".to_string()),
            keys: Vec::new(),
            flag: 0,
        };
        send_message_v2_request("g", &mq, &msg, uniq, born)
    }

    fn key(seq: u64) -> String {
        format!("0000ABCD0001{seq:020X}")
    }

    #[test]
    fn a_filled_template_is_the_fresh_encoding() {
        let mut t = Template::new(
            request(&key(1), 1_700_000_000_000),
            5,
            &[key(1)],
            1_700_000_000_000,
        )
        .expect("template");
        assert_eq!(t.messages(), 1);
        for (seq, born) in [(2u64, 1_700_000_000_123i64), (0xABCDEF, 1_799_999_999_999)] {
            let mut fresh = request(&key(seq), born);
            fresh.opaque = 5;
            let mut want = BytesMut::new();
            encode_frame(&fresh, SerializeType::Json, &mut want).expect("encode");
            assert_eq!(t.fill(seq, born).expect("fits"), &want[..]);
        }
        assert!(t.fill(3, 99).is_none(), "a narrower timestamp does not fit");
    }

    /// A batch body of `n` messages with keys from `first`, as the bench sends them.
    fn batch_request(first: u64, n: u64, born: i64) -> RemotingCommand {
        use proto_core::message::batch::{encode_batch, BatchEntry};
        use proto_core::message::properties::{Properties, UNIQ_KEY};
        let entries: Vec<BatchEntry> = (first..first + n)
            .map(|seq| {
                let mut props = Properties::new();
                props.insert(UNIQ_KEY, key(seq));
                BatchEntry {
                    flag: 0,
                    body: bytes::Bytes::from_static(b"body"),
                    properties: bytes::Bytes::from(props.encode().into_bytes()),
                }
            })
            .collect();
        let mut body = Vec::new();
        encode_batch(&entries, &mut body);
        let mut cmd = RemotingCommand::request(320, 0).with_body(body);
        cmd.ext_fields_mut().insert("b", born.to_string());
        cmd
    }

    #[test]
    fn a_filled_batch_template_is_the_fresh_encoding() {
        let born = 1_700_000_000_000;
        let keys: Vec<String> = (1..=64).map(key).collect();
        let mut t = Template::new(batch_request(1, 64, born), 5, &keys, born).expect("template");
        assert_eq!(t.messages(), 64);
        let mut fresh = batch_request(65, 64, born + 7);
        fresh.opaque = 5;
        let mut want = BytesMut::new();
        encode_frame(&fresh, SerializeType::Json, &mut want).expect("encode");
        assert_eq!(t.fill(65, born + 7).expect("fits"), &want[..]);
    }

    #[test]
    fn a_template_with_a_new_opaque_is_the_fresh_encoding() {
        let born = 1_700_000_000_000;
        let mut t = Template::new(request(&key(1), born), 1_000_000_000, &[key(1)], born)
            .expect("template");
        assert_eq!(t.set_opaque(1_234_567_890), Some(()));
        assert_eq!(t.opaque, 1_234_567_890);
        let mut fresh = request(&key(9), born + 1);
        fresh.opaque = 1_234_567_890;
        let mut want = BytesMut::new();
        encode_frame(&fresh, SerializeType::Json, &mut want).expect("encode");
        assert_eq!(t.fill(9, born + 1).expect("fits"), &want[..]);
        assert!(t.set_opaque(99).is_none(), "a narrower opaque does not fit");
        assert!(t.set_opaque(-1_234_567_890).is_none());
        assert_eq!(
            t.opaque, 1_234_567_890,
            "a refused opaque leaves the frame as it was"
        );
        assert_eq!(t.fill(9, born + 1).expect("fits"), &want[..]);
    }

    #[test]
    fn each_needle_is_found_once_in_order() {
        let hay = b"..abc..xyz..abd..";
        let needles = ["xyz", "abc", "abd"].map(String::from);
        assert_eq!(find_each_once(hay, &needles), Some(vec![7, 2, 12]));
        assert_eq!(find_each_once(hay, &["abc", "zzz"].map(String::from)), None);
        assert_eq!(find_each_once(b"abcabc", &["abc"].map(String::from)), None);
        assert_eq!(
            find_each_once(b"abcd", &["abc", "bcd"].map(String::from)),
            Some(vec![0, 1])
        );
    }

    #[test]
    fn no_template_when_a_value_is_missing_or_repeated() {
        let born = 1_700_000_000_000;
        assert!(Template::new(request(&key(1), born), 5, &[key(2)], born).is_none());
        assert!(Template::new(request(&key(1), born), 5, &[key(1)], 1_700_000_000_001).is_none());
        assert!(Template::new(request(&key(1), born), 5, &[key(1), key(1)], born).is_none());
    }
}
