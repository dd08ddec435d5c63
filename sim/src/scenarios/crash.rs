//! Broker kill -9 and restart during sends: the disk keeps only synced bytes (optionally
//! tearing the last unsynced write), and in `corrupt_tail` one byte near the durable end is
//! flipped before the restart.
//!
//! Corruption policy (decided here, checked by the history): the byte lands either just past
//! the durable end (garbage where the next record would go: recovery must drop it, nothing
//! acked may go) or inside one of the last records recovery walks (those after the
//! checkpoint's replay point or in the newest segment), in a byte the record format protects:
//! TOTALSIZE, MAGICCODE, BODYCRC, PHYSICALOFFSET or the body (under BODYCRC). Recovery must
//! then either cut the log at that record or, when the record lies below the checkpoint's
//! durable offset, refuse to start naming the file and offset; the operator (this scenario)
//! then sets `truncate_on_corruption` and starts it again. Acks stored at or after that record
//! may be lost, as RocketMQ would lose them (they were synced, then the disk damaged them);
//! everything before must survive, and no damaged record may ever be served.
//!
//! Left out, as RocketMQ leaves it: bytes no checksum covers (queue id and offset, flags,
//! timestamps, hosts, topic, properties) and bytes below the walked region, which recovery
//! trusts without reading; a flip there would be served.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use store_core::checkpoint::{Checkpoint, CheckpointState};
use store_core::commit_log::{parse_segment_name, segment_name, COMMIT_LOG_DIR};
use store_core::format::record::{decode_with, peek, CrcCheck, MessageVersion, SlotKind};
use store_core::storage::{MemStorage, Storage};

use super::Ctx;
use crate::cluster::{broker_name, sleep_ms};

/// `opts.kills` kills spread over the fault phase, each followed by a restart.
pub async fn kills(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let opts = ctx.opts;
    let slot = opts.fault_phase_ms / u64::from(opts.kills.max(1));
    for _ in 0..opts.kills {
        sleep_ms(rng.gen_range(0..slot.max(1))).await;
        let b = rng.gen_range(0..opts.brokers);
        ctx.cluster.kill_broker(b);
        if opts.corrupt {
            corrupt_tail(ctx, b, rng);
        }
        sleep_ms(rng.gen_range(opts.down_ms.0..=opts.down_ms.1)).await;
        ctx.cluster.restart_broker(b);
        if opts.corrupt {
            operator_truncates_if_refused(ctx, b).await;
        }
    }
}

/// A broker that refused to open must have named its damage; the operator then allows
/// truncation and starts it again.
async fn operator_truncates_if_refused(ctx: &Ctx<'_>, b: usize) {
    sleep_ms(500).await;
    let Some(error) = ctx.cluster.open_error(b) else {
        return;
    };
    if !(error.contains("commitlog/") && error.contains("damaged")) {
        ctx.history.violation(format!(
            "{} refused to start without naming the damaged file: {error}",
            broker_name(b)
        ));
    }
    ctx.cluster.set_truncate_on_corruption(b);
    ctx.cluster.kill_broker(b);
    ctx.cluster.restart_broker(b);
    sleep_ms(500).await;
    if let Some(error) = ctx.cluster.open_error(b) {
        ctx.history.violation(format!(
            "{} still refuses to start with truncate_on_corruption: {error}",
            broker_name(b)
        ));
    }
}

/// One record of the newest commit-log segment holding data.
struct Slot {
    /// Commit-log offset.
    start: u64,
    len: u64,
    /// Offset of the body inside the record, and its length.
    body: (u64, u64),
}

/// Flips one byte of broker `b`'s crashed disk near the end of its commit log.
fn corrupt_tail(ctx: &Ctx<'_>, b: usize, rng: &mut StdRng) {
    let Some(node) = ctx.cluster.brokers.get(b) else {
        return;
    };
    let mem = &node.disk.mem;
    let segment_size = ctx.opts.segment_size;
    let Some((base, records, end)) = newest_records(mem, segment_size) else {
        ctx.trace
            .event(format!("CORRUPT {}: no data yet", broker_name(b)));
        return;
    };
    // Where recovery's walk starts: the checkpoint's replay point, or the newest segment.
    let newest = mem
        .list(COMMIT_LOG_DIR)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .max()
        .unwrap_or(0);
    let walked_from = match Checkpoint::load(mem) {
        Ok(CheckpointState::Valid(cp)) => cp.replay_from().min(newest),
        _ => 0,
    };
    let walked: Vec<&Slot> = records
        .iter()
        .filter(|r| r.start >= walked_from)
        .rev()
        .take(3)
        .collect();
    let past_end = walked.is_empty() || rng.gen_bool(0.3);
    let (offset, record) = if past_end {
        let room = (base + segment_size).saturating_sub(end).min(64);
        if room == 0 {
            return;
        }
        (end + rng.gen_range(0..room), None)
    } else {
        let r = walked[rng.gen_range(0..walked.len())];
        // Protected bytes: TOTALSIZE, MAGICCODE, BODYCRC (0..12), PHYSICALOFFSET (28..36),
        // the body.
        let within = match rng.gen_range(0..3) {
            0 => rng.gen_range(0..12),
            1 => rng.gen_range(28..36),
            _ => r.body.0 + rng.gen_range(0..r.body.1.max(1)),
        };
        (r.start + within.min(r.len - 1), Some(r.start))
    };
    let name = segment_name(base);
    if let Err(e) = mem.corrupt_byte(&name, offset - base) {
        ctx.trace
            .event(format!("CORRUPT {} failed: {e}", broker_name(b)));
        return;
    }
    ctx.trace.event(format!(
        "CORRUPT {} commit-log offset {offset} ({name}+{}), {}; log ends at {end}, walk from {walked_from}",
        broker_name(b),
        offset - base,
        match record {
            Some(start) => format!("inside the record at {start}"),
            None => "past the end".to_string(),
        }
    ));
    if let Some(start) = record {
        ctx.history
            .corrupted(b, i64::try_from(start).unwrap_or(i64::MAX));
    }
}

/// The newest segment holding records: its base, its records and where its data ends.
fn newest_records(mem: &MemStorage, segment_size: u64) -> Option<(u64, Vec<Slot>, u64)> {
    let mut bases: Vec<u64> = mem
        .list(COMMIT_LOG_DIR)
        .ok()?
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect();
    bases.sort_unstable();
    for base in bases.into_iter().rev() {
        let bytes = mem.read_at(&segment_name(base), 0, segment_size).ok()?;
        let mut records = Vec::new();
        let mut pos = 0u64;
        let end = loop {
            let Some(head) = bytes.get(pos as usize..).and_then(peek) else {
                break pos;
            };
            let Some(len) = u64::try_from(head.total_size).ok().filter(|l| *l > 0) else {
                break pos;
            };
            let SlotKind::Message(version) = head.kind() else {
                break pos;
            };
            let Some(raw) = bytes.get(pos as usize..(pos + len) as usize) else {
                break pos;
            };
            let Ok((rec, _)) = decode_with(&Bytes::copy_from_slice(raw), CrcCheck::Skip) else {
                break pos;
            };
            let tail = version_topic_width(version)
                + rec.topic.len() as u64
                + 2
                + rec.properties.len() as u64;
            let body_len = rec.body.len() as u64;
            records.push(Slot {
                start: base + pos,
                len,
                body: (len - tail - body_len, body_len),
            });
            pos += len;
        };
        if !records.is_empty() {
            return Some((base, records, base + end));
        }
    }
    None
}

fn version_topic_width(version: MessageVersion) -> u64 {
    version.topic_len_width() as u64
}
