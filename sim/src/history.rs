//! What clients were told and what they read, and the checkers over it.
//!
//! Checked while the workload runs (each read batch, each offset reset):
//! - per queue, records come back with dense, strictly increasing queue offsets starting at the
//!   offset asked for, so delivery order is queue-offset order;
//! - every body read is byte-identical to the body sent under its id, on the topic it was sent
//!   to, with the properties the producer set;
//! - an acknowledged message is read only at the (broker, queue, offset) its ack named, and a
//!   message is never stored at two places (no retries, so any duplicate is a bug);
//! - under SYNC_FLUSH, a queue never shrinks below an acknowledged offset.
//!
//! Checked at the end (over a full scan of every queue after healing):
//! - SYNC_FLUSH: every acknowledged message is there;
//! - ASYNC_FLUSH: a missing acknowledged message needs a kill of its broker after it was
//!   stored, and the losses of one broker incarnation are a suffix of its commit log (nothing
//!   lost below a message that survived);
//! - liveness: the consumer has read every acknowledged message that survived.
//!
//! Corruption: when a scenario flips a byte inside synced commit-log data it reports it with
//! [`History::corrupted`]; acks stored at or after that record by earlier incarnations of the
//! broker may then be lost (recovery truncates there, or refuses and the operator truncates),
//! and are counted as `lost_corrupt` instead of failing the run. Nothing else is excused.
//!
//! Consumer groups ([`History::group_read`], [`History::group_offset`]): at-least-once for every
//! surviving ack (the liveness check, over what members read); a message delivered twice to the
//! same member within one ownership of its queue is a violation, any other redelivery is a
//! duplicate, counted and reported (RocketMQ redelivers from the committed offset after a
//! rebalance or a crash); a group's committed offset never goes backwards except by an
//! explicit reset ([`History::offset_reset`]) or by the one move a rebalance allows: while two
//! members own a queue (the old owner has not rebalanced yet), the old owner's commit of its
//! own progress lands after the new owner passed it. That one is counted
//! (`offset_regressions`) and reported; any other backward move is a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use store_core::format::record::MessageRecord;

use crate::trace::Trace;

/// The topic every producer writes.
pub const TOPIC: &str = "SimTopic";

/// One acknowledged send.
#[derive(Clone, Debug)]
pub struct Ack {
    pub id: String,
    pub broker: usize,
    pub queue: i32,
    pub offset: i64,
    /// Commit-log offset, from the offset message id.
    pub phys: i64,
    /// Kills of `broker` before the send was issued: the incarnation that stored it.
    pub epoch: u32,
}

/// Per broker incarnation: the highest commit-log offset of a surviving ack, and the lowest
/// of a lost one (with its id).
type EpochLosses = (Option<i64>, Option<(i64, String)>);

/// Counters for the summary line.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub sent: u64,
    pub acked: u64,
    pub refused: u64,
    pub unknown: u64,
    pub read: u64,
    pub reread: u64,
    pub resets: u64,
    pub lost_async: u64,
    pub skipped_async: u64,
    /// Acks lost to a byte flipped in synced data (see the module docs).
    pub lost_corrupt: u64,
    /// Messages a consumer group delivered more than once.
    pub duplicates: u64,
    /// Group offsets moved back by an old owner's last commit while a new owner had already
    /// passed it (two owners during a rebalance; see `History::group_offset`).
    pub offset_regressions: u64,
    /// Acks per broker, for failover checks.
    pub acked_by_broker: Vec<u64>,
}

#[derive(Default)]
struct Inner {
    sync_flush: bool,
    bodies: BTreeMap<String, Bytes>,
    acks: BTreeMap<String, Ack>,
    /// Kills per broker so far.
    kills: Vec<u32>,
    /// Where the consumer read each id.
    seen: BTreeMap<String, (usize, i32, i64)>,
    /// The id the consumer last read at each position.
    read_at: BTreeMap<(usize, i32, i64), String>,
    violations: Vec<String>,
    counts: Counts,
    /// Corruptions of synced data: (broker, kills at the time, first damaged record's offset).
    corrupted: Vec<(usize, u32, i64)>,
    /// Who read each id in a consumer group: (member, ownership number) pairs.
    readers: BTreeMap<String, BTreeSet<(String, u64)>>,
    /// Highest committed group offset seen per (broker, queue).
    group_offsets: BTreeMap<(usize, i32), i64>,
    /// Per (broker, queue), where each member's last read of it ended.
    read_ends: BTreeMap<(usize, i32), BTreeMap<String, i64>>,
}

impl Inner {
    /// An ack that a corruption of synced data may have taken.
    fn excused(&self, ack: &Ack) -> bool {
        self.corrupted
            .iter()
            .any(|&(b, kills, from)| b == ack.broker && ack.epoch < kills && ack.phys >= from)
    }
}

/// The shared history of one run. Cheap to clone.
#[derive(Clone)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
    trace: Trace,
}

/// The id a body starts with (`p1-17|...`).
pub fn body_id(body: &[u8]) -> Option<&str> {
    let end = body.iter().position(|&b| b == b'|')?;
    std::str::from_utf8(body.get(..end)?).ok()
}

/// The properties a producer sets on message `id` (KEYS names the id).
pub fn properties_for(id: &str) -> String {
    format!("KEYS\u{1}{id}\u{2}TAGS\u{1}sim\u{2}WAIT\u{1}true\u{2}")
}

impl History {
    pub fn new(brokers: usize, sync_flush: bool, trace: Trace) -> History {
        History {
            inner: Arc::new(Mutex::new(Inner {
                sync_flush,
                kills: vec![0; brokers],
                counts: Counts {
                    acked_by_broker: vec![0; brokers],
                    ..Counts::default()
                },
                ..Inner::default()
            })),
            trace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn violate(&self, inner: &mut Inner, what: String) {
        self.trace.event(format!("VIOLATION {what}"));
        inner.violations.push(what);
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    pub fn counts(&self) -> Counts {
        self.lock().counts.clone()
    }

    /// The body sent under `id`.
    pub fn body(&self, id: &str) -> Option<Bytes> {
        self.lock().bodies.get(id).cloned()
    }

    /// Every acknowledged send so far, by id.
    pub fn acks(&self) -> Vec<Ack> {
        self.lock().acks.values().cloned().collect()
    }

    pub fn epoch(&self, broker: usize) -> u32 {
        self.lock().kills.get(broker).copied().unwrap_or(0)
    }

    pub fn killed(&self, broker: usize) {
        if let Some(k) = self.lock().kills.get_mut(broker) {
            *k += 1;
        }
    }

    pub fn sending(&self, id: &str, body: Bytes) {
        let mut inner = self.lock();
        inner.counts.sent += 1;
        inner.bodies.insert(id.to_string(), body);
    }

    pub fn acked(&self, ack: Ack) {
        self.trace.event(format!(
            "ack {} broker={} queue={} offset={} phys={} epoch={}",
            ack.id, ack.broker, ack.queue, ack.offset, ack.phys, ack.epoch
        ));
        let mut inner = self.lock();
        inner.counts.acked += 1;
        if let Some(n) = inner.counts.acked_by_broker.get_mut(ack.broker) {
            *n += 1;
        }
        if let Some((b, q, o)) = inner.seen.get(&ack.id).copied() {
            if (b, q, o) != (ack.broker, ack.queue, ack.offset) {
                let what = format!(
                    "{} acked at broker {} queue {} offset {} but read at broker {b} queue {q} offset {o}",
                    ack.id, ack.broker, ack.queue, ack.offset
                );
                self.violate(&mut inner, what);
            }
        }
        inner.acks.insert(ack.id.clone(), ack);
    }

    pub fn refused(&self, id: &str, code: i32, remark: &str) {
        self.trace
            .event(format!("refused {id} code={code} remark={remark}"));
        self.lock().counts.refused += 1;
    }

    pub fn unknown(&self, id: &str, why: &str) {
        self.trace.event(format!("unknown {id}: {why}"));
        self.lock().counts.unknown += 1;
    }

    /// A batch read from `broker`/`queue` asked at `from`. `record_seen` is false for the final
    /// scan, which checks the records but does not count as consumption.
    pub fn read(
        &self,
        broker: usize,
        queue: i32,
        from: i64,
        records: &[MessageRecord],
        record_seen: bool,
    ) {
        let mut inner = self.lock();
        for (i, rec) in records.iter().enumerate() {
            let expected = from + i as i64;
            if rec.queue_offset != expected || rec.queue_id != queue {
                let what = format!(
                    "broker {broker} queue {queue}: asked from {from}, record {i} has queue {} offset {} (offsets must be dense and increasing)",
                    rec.queue_id, rec.queue_offset
                );
                self.violate(&mut inner, what);
            }
            if &rec.topic[..] != TOPIC.as_bytes() {
                let what = format!(
                    "broker {broker} queue {queue} offset {}: topic {:?}",
                    rec.queue_offset, rec.topic
                );
                self.violate(&mut inner, what);
            }
            let Some(id) = body_id(&rec.body).map(str::to_string) else {
                let what = format!(
                    "broker {broker} queue {queue} offset {}: body without an id",
                    rec.queue_offset
                );
                self.violate(&mut inner, what);
                continue;
            };
            match inner.bodies.get(&id) {
                Some(sent) if *sent == rec.body => {}
                Some(_) => {
                    let what = format!("{id}: body read differs from the body sent");
                    self.violate(&mut inner, what);
                }
                None => {
                    let what = format!("{id}: read but never sent");
                    self.violate(&mut inner, what);
                }
            }
            let props = properties_for(&id);
            if !rec
                .properties
                .windows(props.len())
                .any(|w| w == props.as_bytes())
            {
                let what = format!("{id}: properties changed: {:?}", rec.properties);
                self.violate(&mut inner, what);
            }
            let here = (broker, queue, rec.queue_offset);
            if let Some(ack) = inner.acks.get(&id) {
                if (ack.broker, ack.queue, ack.offset) != here {
                    let what = format!(
                        "{id} acked at broker {} queue {} offset {} but read at {here:?}",
                        ack.broker, ack.queue, ack.offset
                    );
                    self.violate(&mut inner, what);
                }
            }
            if !record_seen {
                continue;
            }
            inner.read_at.insert(here, id.clone());
            match inner.seen.get(&id).copied() {
                Some(at) if at == here => inner.counts.reread += 1,
                Some(at) => {
                    let what = format!("{id} stored twice: at {at:?} and at {here:?}");
                    self.violate(&mut inner, what);
                }
                None => {
                    inner.counts.read += 1;
                    inner.seen.insert(id, here);
                }
            }
        }
    }

    /// The broker moved the consumer's offset: the queue now ends at `max`, below `cursor`.
    /// Under SYNC_FLUSH no acknowledged message may sit in the vanished range.
    pub fn queue_shrank(&self, broker: usize, queue: i32, cursor: i64, max: i64) {
        self.trace.event(format!(
            "consumer reset broker={broker} queue={queue} cursor={cursor} max={max}"
        ));
        let mut inner = self.lock();
        inner.counts.resets += 1;
        if !inner.sync_flush || max >= cursor {
            return;
        }
        let lost: Vec<String> = inner
            .acks
            .values()
            .filter(|a| a.broker == broker && a.queue == queue && (max..cursor).contains(&a.offset))
            .filter(|a| !inner.excused(a))
            .map(|a| format!("{}@{}", a.id, a.offset))
            .collect();
        if !lost.is_empty() {
            let what = format!(
                "SYNC_FLUSH acked messages lost: broker {broker} queue {queue} shrank to {max} below {lost:?}"
            );
            self.violate(&mut inner, what);
        }
    }

    /// The end-of-run checks over a full scan: `scan[(broker, queue)]` lists the ids at offsets
    /// 0, 1, .... Returns the acked ids that must be consumed (those that survived).
    pub fn check_final(&self, scan: &BTreeMap<(usize, i32), Vec<String>>) -> BTreeSet<String> {
        let mut inner = self.lock();
        let mut survivors = BTreeSet::new();
        let mut by_epoch: BTreeMap<(usize, u32), EpochLosses> = BTreeMap::new();
        let acks: Vec<Ack> = inner.acks.values().cloned().collect();
        for ack in acks {
            let present = scan
                .get(&(ack.broker, ack.queue))
                .and_then(|ids| usize::try_from(ack.offset).ok().and_then(|o| ids.get(o)))
                .is_some_and(|id| *id == ack.id);
            if !present && inner.excused(&ack) {
                inner.counts.lost_corrupt += 1;
                continue;
            }
            let slot = by_epoch.entry((ack.broker, ack.epoch)).or_default();
            if present {
                slot.0 = slot.0.max(Some(ack.phys));
                survivors.insert(ack.id.clone());
                continue;
            }
            if slot.1.as_ref().is_none_or(|(p, _)| ack.phys < *p) {
                slot.1 = Some((ack.phys, ack.id.clone()));
            }
            let killed_since = inner.kills.get(ack.broker).copied().unwrap_or(0) > ack.epoch;
            if inner.sync_flush {
                let what = format!(
                    "SYNC_FLUSH acked message {} lost (broker {} queue {} offset {})",
                    ack.id, ack.broker, ack.queue, ack.offset
                );
                self.violate(&mut inner, what);
            } else if !killed_since {
                let what = format!(
                    "ASYNC_FLUSH acked message {} lost without a kill of broker {}",
                    ack.id, ack.broker
                );
                self.violate(&mut inner, what);
            } else {
                inner.counts.lost_async += 1;
            }
        }
        for ((broker, epoch), (kept, lost)) in by_epoch {
            if let (Some(kept), Some((lost_phys, lost_id))) = (kept, lost) {
                if lost_phys < kept {
                    let what = format!(
                        "broker {broker} incarnation {epoch}: {lost_id} at commit-log offset {lost_phys} lost below a surviving message at {kept} (losses must be a suffix)"
                    );
                    self.violate(&mut inner, what);
                }
            }
        }
        survivors
    }

    /// Acked survivors the consumer has not read yet. Under ASYNC_FLUSH a survivor is excused
    /// when its queue reused offsets after a loss at or below its own offset (the consumer had
    /// read a lost message there, so its offset was ahead of the recovered end and the broker
    /// refilled the range before the consumer noticed): RocketMQ consumers skip those too.
    pub fn unconsumed(
        &self,
        survivors: &BTreeSet<String>,
        scan: &BTreeMap<(usize, i32), Vec<String>>,
    ) -> Vec<String> {
        let mut inner = self.lock();
        let mut missing = Vec::new();
        let mut skipped = 0;
        for id in survivors {
            if inner.seen.contains_key(id) {
                continue;
            }
            let excused = inner.acks.get(id).is_some_and(|ack| {
                // Offsets reused after a loss: ASYNC_FLUSH kills, or a corruption.
                let lossy = !inner.sync_flush || inner.corrupted.iter().any(|c| c.0 == ack.broker);
                lossy && {
                    let ids = scan.get(&(ack.broker, ack.queue));
                    inner
                        .read_at
                        .range((ack.broker, ack.queue, 0)..=(ack.broker, ack.queue, ack.offset))
                        .any(|((_, _, p), read)| {
                            ids.and_then(|v| usize::try_from(*p).ok().and_then(|p| v.get(p)))
                                .is_some_and(|now| now != read)
                        })
                }
            });
            if excused {
                skipped += 1;
            } else {
                missing.push(id.clone());
            }
        }
        inner.counts.skipped_async = skipped;
        missing
    }

    /// A trace line without a verdict.
    pub fn note(&self, what: String) {
        self.trace.event(what);
    }

    pub fn fail_liveness(&self, what: String) {
        let mut inner = self.lock();
        self.violate(&mut inner, what);
    }

    /// A safety violation a scenario found itself.
    pub fn violation(&self, what: String) {
        let mut inner = self.lock();
        self.violate(&mut inner, what);
    }

    /// A byte was flipped inside synced commit-log data of `broker`, in the record starting at
    /// `record_start`: acks stored there or later by earlier incarnations may be lost.
    pub fn corrupted(&self, broker: usize, record_start: i64) {
        let mut inner = self.lock();
        let kills = inner.kills.get(broker).copied().unwrap_or(0);
        inner.corrupted.push((broker, kills, record_start));
    }

    /// Messages `member` read from one queue of a consumer group, in its `ownership`-th
    /// ownership of that queue. Checked like any read (from the batch's first offset), then for
    /// redelivery.
    pub fn group_read(
        &self,
        member: &str,
        ownership: u64,
        broker: usize,
        queue: i32,
        records: &[MessageRecord],
    ) {
        let Some(first) = records.first() else { return };
        self.trace.event(format!(
            "member {member} read broker={broker} queue={queue} offsets {}..{}",
            first.queue_offset,
            first.queue_offset + records.len() as i64
        ));
        self.read(broker, queue, first.queue_offset, records, true);
        let mut inner = self.lock();
        inner.read_ends.entry((broker, queue)).or_default().insert(
            member.to_string(),
            first.queue_offset + records.len() as i64,
        );
        for rec in records {
            let Some(id) = body_id(&rec.body).map(str::to_string) else {
                continue;
            };
            let reader = (member.to_string(), ownership);
            let readers = inner.readers.entry(id.clone()).or_default();
            let again = !readers.is_empty();
            if !readers.insert(reader) {
                let what = format!(
                    "{id} delivered twice to {member} within one ownership of broker {broker} queue {queue}"
                );
                self.violate(&mut inner, what);
            } else if again {
                inner.counts.duplicates += 1;
            }
        }
    }

    /// The committed offset of the group on (`broker`, `queue`), as the broker answered it.
    pub fn group_offset(&self, broker: usize, queue: i32, offset: i64) {
        let mut inner = self.lock();
        let prev = inner.group_offsets.insert((broker, queue), offset);
        if prev != Some(offset) {
            self.trace.event(format!(
                "group offset broker={broker} queue={queue} {prev:?} -> {offset}"
            ));
        }
        if let Some(prev) = prev.filter(|p| offset < *p) {
            // The one backward move RocketMQ's rebalance allows: two members owned the queue
            // at once (the old one had not rebalanced yet), and the old one's commit of its
            // own progress landed after the new one had passed it.
            let ends = inner.read_ends.get(&(broker, queue));
            let overlap = ends.is_some_and(|ends| {
                ends.iter().any(|(m, &end)| {
                    end == offset && ends.iter().any(|(other, &e)| other != m && e > offset)
                })
            });
            if overlap {
                inner.counts.offset_regressions += 1;
                self.trace.event(format!(
                    "group offset of broker {broker} queue {queue} back from {prev} to {offset}: an old owner's commit during a rebalance"
                ));
            } else {
                let what = format!(
                    "group offset of broker {broker} queue {queue} went back from {prev} to {offset} without a reset"
                );
                self.violate(&mut inner, what);
            }
        }
    }

    /// An explicit reset of the group's offset: the next observed value may be lower.
    pub fn offset_reset(&self, broker: usize, queue: i32) {
        self.trace
            .event(format!("offset reset broker={broker} queue={queue}"));
        self.lock().group_offsets.remove(&(broker, queue));
    }
}
