//! Delay levels (Java's `ScheduleMessageService` and `HookUtils.transformDelayLevelMessage`): a
//! message whose `DELAY` property is a level > 0 is stored in `SCHEDULE_TOPIC_XXXX`, queue
//! `level - 1`, with its real topic and queue in `REAL_TOPIC` / `REAL_QID`; when the level's
//! delay has passed since it was stored, the broker stores a copy in the real topic and queue
//! (`DELAY` removed) and moves the level's delivery offset past it. Producers' delayed messages
//! and consumer retries (`send_back.rs`) both take this path.
//!
//! Time is an argument: [`Broker::deliver_delayed`] runs when [`Schedule::next_wake`] has
//! passed. Each level's queue is ordered by delivery time (same delay, store times rising), so a
//! level sleeps until its head is due and wakes early only when a put lands in an idle level.
//! One tick delivers at most [`DELIVER_MAX_PER_TICK`] messages over all levels (taking levels in
//! turn), so a backlog of due messages cannot starve sends: the rest go on the next tick.
//!
//! Progress is kept per level in `config/delayOffset.json` (`{"offsetTable":{"1":123}}`, level
//! to the next schedule-queue offset to look at) and resumed at start. Delivery is at least once
//! and never early:
//! - the persisted offset of a level only covers deliveries whose copy in the real topic is
//!   inside the store's flushed offset, so a crash cannot lose a delivery the file claims;
//! - a copy made after the last write of the file is made again after a restart (a duplicate
//!   with the same `UNIQ_KEY`, as RocketMQ may also deliver twice);
//! - the delivery time is the record's store time plus the level's delay, read again after a
//!   restart, so downtime only makes delivery late. As Java does, a delivery time more than the
//!   level's delay in the future (the clock went back) is treated as due now.
//!
//! What it leaves out: RocketMQ 5 timer messages (`TIMER_*` properties, another module),
//! Java's asynchronous delivery mode (`enableScheduleAsyncDeliver`), statistics, and slave
//! offset syncing. A `messageDelayLevel` changed between runs applies to messages already
//! waiting (Java keeps the delivery time computed when they were stored).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use store_core::dispatch::{DispatchRequest, SCHEDULE_TOPIC};
use store_core::format::properties::{self, find_property, Properties};
use store_core::format::record::{decode_with, CrcCheck, MessageRecord};
use store_core::format::sys_flag::{self, TRANSACTION_COMMIT_TYPE, TRANSACTION_NOT_TYPE};
use store_core::status::{GetMessageStatus, PutResult};
use store_core::storage::Storage;
use store_core::store::{AcceptAll, MessageStore, MAX_PULL_MSG_SIZE};

use super::topic_config::RMQ_SYS_TRANS_HALF_TOPIC;
use super::Broker;
use crate::body::DataVersion;

/// Most messages one timer tick moves out of `SCHEDULE_TOPIC_XXXX`, all levels together.
pub const DELIVER_MAX_PER_TICK: usize = 64;
/// Java's `DELAY_FOR_A_WHILE`: after a failed put the level is tried again this much later.
const RETRY_AFTER_FAILED_PUT_MS: u64 = 100;
/// Messages read from a level's queue per store read.
const READ_BATCH: u32 = 32;
/// Store reads per level per tick that deliver nothing (holes, removed files) before giving
/// the turn back.
const EMPTY_READS_MAX: usize = 16;
/// More levels than anyone configures; bounds the per-level tables (style S8).
const LEVELS_MAX: usize = 1000;

/// Why a `messageDelayLevel` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DelayLevelError {
    #[error("no delay levels")]
    Empty,
    #[error("more than {LEVELS_MAX} delay levels")]
    TooMany,
    /// A level that is not a number followed by one of `s`, `m`, `h`, `d`.
    #[error("bad delay level {0:?}: expected a number followed by s, m, h or d")]
    BadLevel(String),
}

/// Parses `messageDelayLevel` (`"1s 5s 10s 30s 1m ... 2h"`) into the delay of each level in
/// milliseconds, level 1 first. Units are Java's: `s`, `m`, `h`, `d`.
///
/// # Errors
/// [`DelayLevelError`] naming the first level that does not parse.
pub fn parse_delay_levels(text: &str) -> Result<Vec<u64>, DelayLevelError> {
    let mut levels = Vec::new();
    for word in text.split_whitespace() {
        if levels.len() == LEVELS_MAX {
            return Err(DelayLevelError::TooMany);
        }
        let bad = || DelayLevelError::BadLevel(word.to_string());
        let unit_ms: u64 = match word.as_bytes().last() {
            Some(b's') => 1_000,
            Some(b'm') => 60_000,
            Some(b'h') => 3_600_000,
            Some(b'd') => 86_400_000,
            _ => return Err(bad()),
        };
        let number = word.get(..word.len() - 1).ok_or_else(bad)?;
        let count: u64 = number.parse().map_err(|_| bad())?;
        levels.push(count.checked_mul(unit_ms).ok_or_else(bad)?);
    }
    if levels.is_empty() {
        return Err(DelayLevelError::Empty);
    }
    Ok(levels)
}

/// `config/delayOffset.json`: level -> next `SCHEDULE_TOPIC_XXXX` queue offset to deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DelayOffsetSerializeWrapper {
    pub offset_table: BTreeMap<i32, i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
}

/// The delivery state of every delay level (see the module docs).
#[derive(Debug)]
pub struct Schedule {
    /// Delay of level `i + 1`, in ms.
    levels_ms: Vec<u64>,
    /// State of level `i + 1`.
    levels: Vec<LevelState>,
    /// Deliveries whose copy may not be durable yet, in the order they were made (commit-log
    /// ends rising): (level index, offset to persist once durable, commit-log end of the copy,
    /// 0 when nothing was written).
    undurable: VecDeque<(usize, u64, u64)>,
    /// Offsets of levels beyond `messageDelayLevel` found in the file, written back unchanged.
    foreign: BTreeMap<i32, i64>,
    data_version: DataVersion,
    /// The level a tick starts with, rotated so no level waits behind a busy one.
    cursor: usize,
    deliver_max_per_tick: usize,
    dirty: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LevelState {
    /// Next queue offset to look at.
    next: u64,
    /// Offset whose every delivery below is durable: what the file may say.
    durable: u64,
    /// When to look at the level again; `None` while its queue is read to the end.
    wake_ms: Option<u64>,
}

impl Schedule {
    /// The state after a start: offsets from `loaded` (the file) corrected into each level's
    /// queue bounds, and every level with waiting messages looked at `now_ms`.
    pub fn new<S: Storage + Clone>(
        levels_ms: Vec<u64>,
        loaded: Option<DelayOffsetSerializeWrapper>,
        store: &MessageStore<S>,
        now_ms: u64,
    ) -> Schedule {
        let loaded = loaded.unwrap_or_default();
        let mut foreign = loaded.offset_table.clone();
        let mut levels = Vec::with_capacity(levels_ms.len());
        for queue_id in (0_i32..).take(levels_ms.len()) {
            let level = queue_id + 1;
            let saved = foreign
                .remove(&level)
                .map_or(0, |o| u64::try_from(o).unwrap_or(0));
            let min = store.min_offset_in_queue(SCHEDULE_TOPIC, queue_id);
            let max = store.max_offset_in_queue(SCHEDULE_TOPIC, queue_id);
            // Java's correctDelayOffset: retention may have removed what the file points at, a
            // lost tail may have shortened the queue.
            let next = saved.clamp(min, max.max(min));
            if next != saved {
                tracing::warn!(level, saved, next, min, max, "delay offset corrected");
            }
            levels.push(LevelState {
                next,
                durable: next,
                wake_ms: (next < max).then_some(now_ms),
            });
        }
        Schedule {
            levels_ms,
            levels,
            undurable: VecDeque::new(),
            foreign,
            data_version: loaded.data_version.unwrap_or_default(),
            cursor: 0,
            deliver_max_per_tick: DELIVER_MAX_PER_TICK,
            dirty: false,
        }
    }

    /// When a level is next due to be looked at.
    pub fn next_wake(&self) -> Option<u64> {
        self.levels.iter().filter_map(|l| l.wake_ms).min()
    }

    /// Level -> next offset to deliver, as it would be persisted now.
    pub fn to_persist(&self) -> DelayOffsetSerializeWrapper {
        let mut offset_table = self.foreign.clone();
        for (level, state) in (1_i32..).zip(&self.levels) {
            offset_table.insert(level, i64::try_from(state.durable).unwrap_or(i64::MAX));
        }
        DelayOffsetSerializeWrapper {
            offset_table,
            data_version: Some(self.data_version),
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn mark_persisted(&mut self) {
        self.dirty = false;
        self.data_version.counter += 1;
    }

    /// Deliveries up to `flushed` (the store's flushed commit-log offset) are durable: their
    /// levels' offsets may be persisted.
    pub fn note_flushed(&mut self, flushed: u64) {
        while let Some(&(index, offset, end)) = self.undurable.front() {
            if end > flushed {
                break;
            }
            self.undurable.pop_front();
            let state = &mut self.levels[index];
            if offset > state.durable {
                state.durable = offset;
                self.dirty = true;
            }
        }
    }

    /// Java's `transformDelayLevelMessage`: a record with `DELAY` > 0 (and not a half or
    /// rolled-back transaction record) is moved to its level's schedule queue, the level
    /// clamped to the highest configured. Returns the level's index.
    fn redirect(&self, record: &mut MessageRecord) -> Option<usize> {
        let tran = sys_flag::transaction_type(record.sys_flag);
        if tran != TRANSACTION_NOT_TYPE && tran != TRANSACTION_COMMIT_TYPE {
            return None;
        }
        let delay = find_property(&record.properties, properties::DELAY)
            .and_then(|v| core::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|level| *level > 0)?;
        let max_level = i64::try_from(self.levels_ms.len())
            .ok()
            .filter(|m| *m > 0)?;
        let level = delay.min(max_level);
        let queue_id = i32::try_from(level - 1).ok()?;
        let real_topic = record.topic_str()?.to_string();
        let mut props = Properties::parse_bytes(&record.properties);
        props.insert(properties::DELAY, level.to_string());
        props.insert(properties::REAL_TOPIC, real_topic);
        props.insert(properties::REAL_QID, record.queue_id.to_string());
        // Java's checkIfTimerMessage: a delay level wins over timer properties.
        for timer in [
            properties::TIMER_DELIVER_MS,
            properties::TIMER_DELAY_SEC,
            properties::TIMER_DELAY_MS,
        ] {
            props.remove(timer);
        }
        record.properties = Bytes::from(props.encode().into_bytes());
        record.topic = Bytes::from_static(SCHEDULE_TOPIC.as_bytes());
        record.queue_id = queue_id;
        usize::try_from(queue_id).ok()
    }

    /// A message was stored in level `index` at `store_ms`: the level wakes by its delivery.
    fn note_put(&mut self, index: usize, store_ms: u64) {
        let Some(state) = self.levels.get_mut(index) else {
            return;
        };
        let due = store_ms.saturating_add(self.levels_ms[index]);
        state.wake_ms = Some(state.wake_ms.map_or(due, |at| at.min(due)));
    }

    /// Level `index` is processed up to `offset`; `end` is the commit-log end of the copy just
    /// written (0 for a skip, which needs no write to be durable).
    fn advance(&mut self, index: usize, offset: u64, end: u64) {
        let state = &mut self.levels[index];
        if offset <= state.next {
            return;
        }
        state.next = offset;
        self.undurable.push_back((index, offset, end));
    }

    /// When the record stored at `store_ms` in level `index` is due: its schedule-queue tag
    /// code, with Java's correction for a clock that went back.
    fn due_ms(&self, index: usize, record: &MessageRecord, size: u32, now_ms: u64) -> u64 {
        let tags_code =
            DispatchRequest::from_record(record, size, &self.levels_ms).map_or(0, |d| d.tags_code);
        let due = u64::try_from(tags_code).unwrap_or(0);
        if due > now_ms.saturating_add(self.levels_ms[index]) {
            return now_ms;
        }
        due
    }
}

impl<S: Storage + Clone> Broker<S> {
    /// Puts `record` the way every broker-made or client-sent single message is put: a
    /// delayed one goes to its schedule queue first (`record` is rewritten in place, so the
    /// caller sees where it went).
    pub(super) fn put_message(&mut self, record: &mut MessageRecord, now_ms: u64) -> PutResult {
        let level = self.schedule.redirect(record);
        let put = self.store.put(record, now_ms);
        if let (Some(index), Some(wrote)) = (level, put.wrote.as_ref()) {
            if put.status.is_stored() {
                self.schedule.note_put(index, wrote.store_timestamp);
            }
        }
        put
    }

    /// The schedule timer: delivers due messages of every level that is awake, at most
    /// `deliver_max_per_tick` in all.
    pub(super) fn deliver_delayed(&mut self, now_ms: u64) {
        self.schedule.note_flushed(self.store.flushed_offset());
        let count = self.schedule.levels.len();
        let mut budget = self.schedule.deliver_max_per_tick;
        for step in 0..count {
            let index = (self.schedule.cursor + step) % count;
            let awake = self.schedule.levels[index]
                .wake_ms
                .is_some_and(|at| at <= now_ms);
            if awake && budget > 0 {
                self.deliver_level(index, now_ms, &mut budget);
            }
        }
        self.schedule.cursor = (self.schedule.cursor + 1) % count.max(1);
    }

    /// Delivers level `index` until its head is not due, its queue ends, or `budget` runs out.
    fn deliver_level(&mut self, index: usize, now_ms: u64, budget: &mut usize) {
        let queue_id = i32::try_from(index).unwrap_or(i32::MAX);
        let mut empty_reads = 0;
        loop {
            if *budget == 0 || empty_reads == EMPTY_READS_MAX {
                // More may be due: look again at the next tick.
                self.schedule.levels[index].wake_ms = Some(now_ms);
                return;
            }
            let offset = self.schedule.levels[index].next;
            let batch = READ_BATCH.min(u32::try_from(*budget).unwrap_or(READ_BATCH));
            let got = self.store.get_messages(
                SCHEDULE_TOPIC,
                queue_id,
                offset,
                batch,
                MAX_PULL_MSG_SIZE,
                &AcceptAll,
            );
            match got.status {
                GetMessageStatus::Found => {}
                GetMessageStatus::OffsetOverflowOne
                | GetMessageStatus::NoMessageInQueue
                | GetMessageStatus::NoMatchedLogicQueue => {
                    self.schedule.levels[index].wake_ms = None;
                    return;
                }
                GetMessageStatus::OffsetOverflowBadly => {
                    // The queue is shorter than the offset (only a damaged store does this).
                    tracing::warn!(
                        level = index + 1,
                        offset,
                        max = got.max_offset,
                        "delay offset past the schedule queue"
                    );
                    let state = &mut self.schedule.levels[index];
                    state.next = got.max_offset;
                    state.durable = state.durable.min(got.max_offset);
                    state.wake_ms = None;
                    self.schedule.dirty = true;
                    return;
                }
                _ if got.next_begin_offset > offset => {
                    // Too small (retention), a hole, or units of removed files: step over.
                    tracing::warn!(
                        level = index + 1,
                        offset,
                        status = got.status.name(),
                        next = got.next_begin_offset,
                        "schedule queue skipped"
                    );
                    self.schedule.advance(index, got.next_begin_offset, 0);
                    empty_reads += 1;
                    continue;
                }
                _ => {
                    tracing::warn!(
                        level = index + 1,
                        offset,
                        status = got.status.name(),
                        "schedule queue unreadable"
                    );
                    self.schedule.levels[index].wake_ms = Some(now_ms + RETRY_AFTER_FAILED_PUT_MS);
                    return;
                }
            }
            for (bytes, queue_offset) in got.records.iter().zip(&got.queue_offsets) {
                match self.deliver_one(index, bytes, *queue_offset, now_ms) {
                    Delivered::Yes => *budget = budget.saturating_sub(1),
                    Delivered::Skipped => {}
                    Delivered::NotDue(due_ms) => {
                        self.schedule.levels[index].wake_ms = Some(due_ms);
                        return;
                    }
                    Delivered::PutFailed => {
                        self.schedule.levels[index].wake_ms =
                            Some(now_ms + RETRY_AFTER_FAILED_PUT_MS);
                        return;
                    }
                }
            }
            // Everything read went out; blank units after the last record are passed too.
            self.schedule.advance(index, got.next_begin_offset, 0);
            empty_reads += usize::from(got.records.is_empty());
        }
    }

    /// Delivers the schedule record at `queue_offset` of level `index` if it is due.
    fn deliver_one(
        &mut self,
        index: usize,
        bytes: &Bytes,
        queue_offset: u64,
        now_ms: u64,
    ) -> Delivered {
        let Ok((record, size)) = decode_with(bytes, CrcCheck::Skip) else {
            tracing::error!(
                level = index + 1,
                queue_offset,
                "schedule record undecodable, skipped"
            );
            self.schedule.advance(index, queue_offset + 1, 0);
            return Delivered::Skipped;
        };
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        let due_ms = self.schedule.due_ms(index, &record, size, now_ms);
        if due_ms > now_ms {
            return Delivered::NotDue(due_ms);
        }
        let Some(mut copy) = time_up(record) else {
            tracing::error!(
                level = index + 1,
                queue_offset,
                "schedule record without a usable REAL_TOPIC/REAL_QID, skipped"
            );
            self.schedule.advance(index, queue_offset + 1, 0);
            return Delivered::Skipped;
        };
        let put = self.put_message(&mut copy, now_ms);
        let Some(wrote) = put.wrote.filter(|_| put.status.is_stored()) else {
            tracing::warn!(
                level = index + 1,
                queue_offset,
                status = put.status.name(),
                "delayed delivery failed, will retry"
            );
            return Delivered::PutFailed;
        };
        let end = wrote.phys_offset + u64::from(wrote.wrote_bytes);
        self.schedule.advance(index, queue_offset + 1, end);
        if let Some(topic) = copy.topic_str().map(str::to_string) {
            let max_offset = self.store.max_offset_in_queue(&topic, copy.queue_id);
            self.wake_held_pulls(&topic, copy.queue_id, max_offset, None, now_ms);
        }
        Delivered::Yes
    }

    /// The delay-level state, for inspection.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

/// What became of one schedule record.
enum Delivered {
    Yes,
    /// Unusable; passed over.
    Skipped,
    /// Due at this time; the level sleeps until then.
    NotDue(u64),
    PutFailed,
}

/// Java's `messageTimeUp`: the copy for the real topic and queue, `DELAY` and timer properties
/// removed. `None` for a record without a usable `REAL_TOPIC` / `REAL_QID`, or one that would
/// land in the transaction half topic (Java discards those as a bug).
fn time_up(record: MessageRecord) -> Option<MessageRecord> {
    let mut props = Properties::parse_bytes(&record.properties);
    let topic = props.get(properties::REAL_TOPIC)?.to_string();
    let queue_id: i32 = props.get(properties::REAL_QID)?.trim().parse().ok()?;
    if topic.is_empty() || queue_id < 0 || topic == RMQ_SYS_TRANS_HALF_TOPIC {
        return None;
    }
    for key in [
        properties::DELAY,
        properties::TIMER_DELIVER_MS,
        properties::TIMER_DELAY_SEC,
    ] {
        props.remove(key);
    }
    props.insert(properties::WAIT, "false");
    Some(MessageRecord {
        queue_id,
        queue_offset: 0,
        physical_offset: 0,
        store_timestamp: 0,
        prepared_transaction_offset: 0,
        topic: Bytes::from(topic.into_bytes()),
        properties: Bytes::from(props.encode().into_bytes()),
        ..record
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocketmq_default_levels_parse() {
        let levels =
            parse_delay_levels("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h")
                .unwrap();
        assert_eq!(
            levels,
            store_core::dispatch::DEFAULT_DELAY_LEVELS_MS.to_vec()
        );
        assert_eq!(
            parse_delay_levels(" 2d  0s ").unwrap(),
            vec![172_800_000, 0]
        );
    }

    #[test]
    fn bad_levels_are_named() {
        assert_eq!(parse_delay_levels(""), Err(DelayLevelError::Empty));
        for bad in ["1x", "s", "1.5s", "-1s", "99999999999999999d", "1ms"] {
            assert_eq!(
                parse_delay_levels(&format!("1s {bad}")),
                Err(DelayLevelError::BadLevel(bad.to_string())),
                "{bad}"
            );
        }
        let many = "1s ".repeat(LEVELS_MAX + 1);
        assert_eq!(parse_delay_levels(&many), Err(DelayLevelError::TooMany));
    }

    #[test]
    fn delay_offsets_read_java_files() {
        // fastjson writes bare integer keys; store_core::config rewrites them before parsing,
        // here the quoted form we write is read back.
        let text = br#"{"offsetTable":{"1":12,"3":7},"dataVersion":{"counter":2,"stateVersion":0,"timestamp":5}}"#;
        let w: DelayOffsetSerializeWrapper = serde_json::from_slice(text).unwrap();
        assert_eq!(w.offset_table, BTreeMap::from([(1, 12), (3, 7)]));
        assert_eq!(w.data_version.unwrap().counter, 2);
        let back = serde_json::to_string(&w).unwrap();
        assert!(
            back.starts_with(r#"{"offsetTable":{"1":12,"3":7}"#),
            "{back}"
        );
    }

    #[test]
    fn time_up_restores_the_real_topic_and_drops_the_delay() {
        let host = "127.0.0.1:10911".parse().unwrap();
        let props: Properties = [
            ("DELAY", "3"),
            ("REAL_TOPIC", "T"),
            ("REAL_QID", "2"),
            ("UNIQ_KEY", "U"),
            ("TIMER_DELAY_SEC", "9"),
        ]
        .into_iter()
        .collect();
        let record = MessageRecord {
            queue_id: 2,
            flag: 5,
            queue_offset: 9,
            physical_offset: 900,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: host,
            store_timestamp: 2,
            store_host: host,
            reconsume_times: 4,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"b"),
            topic: Bytes::from_static(SCHEDULE_TOPIC.as_bytes()),
            properties: Bytes::from(props.encode().into_bytes()),
        };
        let copy = time_up(record.clone()).unwrap();
        assert_eq!(copy.topic_str(), Some("T"));
        assert_eq!((copy.queue_id, copy.reconsume_times, copy.flag), (2, 4, 5));
        let props = Properties::parse_bytes(&copy.properties);
        assert_eq!(props.get("DELAY"), None);
        assert_eq!(props.get("TIMER_DELAY_SEC"), None);
        assert_eq!(props.get("UNIQ_KEY"), Some("U"));
        assert_eq!(props.get("REAL_TOPIC"), Some("T"));
        assert_eq!(props.get("WAIT"), Some("false"));

        let mut half = record;
        let mut p = Properties::parse_bytes(&half.properties);
        p.insert("REAL_TOPIC", RMQ_SYS_TRANS_HALF_TOPIC);
        half.properties = Bytes::from(p.encode().into_bytes());
        assert!(time_up(half.clone()).is_none());
        p.insert("REAL_TOPIC", "T");
        p.insert("REAL_QID", "x");
        half.properties = Bytes::from(p.encode().into_bytes());
        assert!(time_up(half).is_none());
    }
}
