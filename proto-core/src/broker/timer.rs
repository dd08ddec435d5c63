//! Timer messages (RocketMQ 5's arbitrary delivery time): the broker half of
//! `TimerMessageStore` and of `HookUtils.transformTimerMessage`, over
//! [`store_core::timer::TimerStore`].
//!
//! 1. *Send*: a message with `TIMER_DELAY_SEC`, `TIMER_DELAY_MS` or `TIMER_DELIVER_MS` (and no
//!    delay level) due later than now is stored under `rmq_sys_wheel_timer` queue 0 with
//!    `TIMER_OUT_MS` (the delivery time, moved down to a slot boundary as Java does),
//!    `REAL_TOPIC` and `REAL_QID`. A delivery time not after now leaves the message as it is
//!    (delivered at once); one more than `timerMaxDelaySec` ahead, or an unparsable value, is
//!    refused MESSAGE_ILLEGAL; with `timerWheelEnable=false` the send is refused SYSTEM_ERROR.
//!    Under SYNC_FLUSH the send is acknowledged once that commit-log record is synced: the ack
//!    means the timer message is durable.
//! 2. *Enqueue*: records of the timer topic are filed in the wheel once the commit log is
//!    synced past them (so the wheel never points at a record a crash can take away).
//! 3. *Dequeue*: when a slot fires (`slot + timerPrecisionMs`, never before the delivery
//!    time), each record is stored again under its real topic and queue with body, flag, keys,
//!    tags and user properties unchanged, `REAL_TOPIC`/`REAL_QID` removed and
//!    `TIMER_ENQUEUE_MS`/`TIMER_DEQUEUE_MS` added, and waiting pulls are woken.
//! 4. *Flush* (`timerFlushIntervalMs`): the timer store is checkpointed with the read time and
//!    queue offset whose deliveries the commit log has synced.
//!
//! After a crash, deliveries that the checkpoint did not cover happen again: at-least-once
//! around a crash, never early, never lost (see `store_core::timer`).
//!
//! The timer store is opened lazily: a broker that never saw a timer message creates no
//! `timerwheel` (38 MB at the defaults).
//!
//! What it leaves out: timer deletion (`TIMER_DEL_UNIQKEY` is refused only when its time has
//! passed, as in Java, and otherwise delivered like any timer message), roll, flow control
//! (`timerCongestNumEachSlot`), metrics, and timer properties on transactional commits.

use std::collections::VecDeque;

use bytes::Bytes;

use store_core::format::properties::{self, Properties};
use store_core::format::record::{self, MessageRecord};
use store_core::format::tag::tag_hash_code;
use store_core::status::GetMessageStatus;
use store_core::storage::Storage;
use store_core::store::{AcceptAll, MAX_PULL_MSG_SIZE};
use store_core::timer::{Scheduled, TimerConfig, TimerError, TimerStore, TIMER_TOPIC};

use super::Broker;
use crate::ResponseCode;

/// Most timer-topic records filed, or messages delivered, per call (style S8); more wakes the
/// broker again at once.
const WORK_PER_CALL: usize = 4096;
/// Marks of progress waiting for the commit log to be synced; older ones merge beyond this.
const MARKS_MAX: usize = 1024;

/// The broker's timer settings (Java `MessageStoreConfig` names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerSettings {
    /// `timerWheelEnable` (true).
    pub enable: bool,
    /// `timerFlushIntervalMs` (1000): how often the timer store is checkpointed.
    pub flush_interval_ms: u64,
    /// `timerPrecisionMs`, `timerMaxDelaySec`, `mappedFileSizeTimerLog`.
    pub store: TimerConfig,
}

impl Default for TimerSettings {
    fn default() -> TimerSettings {
        TimerSettings {
            enable: true,
            flush_interval_ms: 1000,
            store: TimerConfig::default(),
        }
    }
}

/// The timer state inside the broker.
#[derive(Debug)]
pub(super) struct TimerService<S: Storage> {
    settings: TimerSettings,
    store: Option<TimerStore<S>>,
    /// Units of a fired slot still to deliver, and the slot's time.
    pending: VecDeque<store_core::timer::log::LogUnit>,
    pending_slot_ms: u64,
    /// (commit-log end, read time, queue offset) after each step: the step is durable once the
    /// commit log is synced to its end.
    marks: VecDeque<(u64, u64, u64)>,
    /// The latest step known durable.
    durable: Option<(u64, u64)>,
    next_flush_ms: u64,
    /// Work is left over from the last call: wake at once.
    backlog: bool,
    /// The timer store failed (I/O): no more timer work until restart.
    failed: bool,
}

impl<S: Storage> TimerService<S> {
    pub(super) fn new(settings: TimerSettings, now_ms: u64) -> TimerService<S> {
        TimerService {
            next_flush_ms: now_ms + settings.flush_interval_ms.max(1),
            settings,
            store: None,
            pending: VecDeque::new(),
            pending_slot_ms: 0,
            marks: VecDeque::new(),
            durable: None,
            backlog: false,
            failed: false,
        }
    }

    /// When the broker must call `run_timer` next (0: at once).
    pub(super) fn next_wake(&self) -> Option<u64> {
        let store = self.store.as_ref()?;
        if self.failed {
            return None;
        }
        if self.backlog || !self.pending.is_empty() {
            return Some(0);
        }
        [store.next_due_ms(), Some(self.next_flush_ms)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Timer messages waiting (slots, units), for inspection.
    pub(super) fn pending(&self) -> (usize, u64) {
        self.store.as_ref().map_or((0, 0), TimerStore::pending)
    }

    fn mark(&mut self, commit_log_end: u64) {
        let Some(store) = &self.store else { return };
        let read_time = if self.pending.is_empty() {
            store.read_time_ms()
        } else {
            self.pending_slot_ms
        };
        let mark = (commit_log_end, read_time, store.queue_offset());
        if self
            .marks
            .back()
            .is_some_and(|last| last.1 == mark.1 && last.2 == mark.2)
        {
            return;
        }
        if self.marks.len() == MARKS_MAX {
            // Merge the two oldest: keeping the later one only delays when it counts as durable.
            self.marks.pop_front();
        }
        self.marks.push_back(mark);
    }

    fn note_flushed(&mut self, flushed: u64) {
        while let Some(&(end, read_time, queue_offset)) = self.marks.front() {
            if end > flushed {
                break;
            }
            self.durable = Some((read_time, queue_offset));
            self.marks.pop_front();
        }
    }
}

impl<S: Storage + Clone> Broker<S> {
    /// Send hook (Java `HookUtils.handleScheduleMessage`, timer half): rewrites `record` into
    /// the timer topic if it carries a timer property due later than now.
    ///
    /// # Errors
    /// The response code and remark Java answers for a bad timer message.
    pub(super) fn redirect_timer(
        &mut self,
        record: &mut MessageRecord,
        now_ms: u64,
    ) -> Result<(), (ResponseCode, String)> {
        let mut props = Properties::parse_bytes(&record.properties);
        let has_timer = [
            properties::TIMER_DELIVER_MS,
            properties::TIMER_DELAY_SEC,
            properties::TIMER_DELAY_MS,
        ]
        .iter()
        .any(|key| props.get(key).is_some());
        if !has_timer || record.topic.as_ref() == TIMER_TOPIC.as_bytes() {
            return Ok(());
        }
        let level = props
            .get(properties::DELAY)
            .and_then(|d| d.trim().parse::<i32>().ok())
            .unwrap_or(0);
        if level > 0 {
            // A delay level wins; Java drops the timer properties.
            props.remove(properties::TIMER_DELIVER_MS);
            props.remove(properties::TIMER_DELAY_SEC);
            props.remove(properties::TIMER_DELAY_MS);
            record.properties = Bytes::from(props.encode().into_bytes());
            return Ok(());
        }
        if props.get(properties::TIMER_OUT_MS).is_some() {
            return Ok(()); // already transformed (Java's double check)
        }
        let settings = &self.timer.settings;
        if !settings.enable {
            return Err((
                ResponseCode::SystemError,
                "accurate timer message is not enabled, timerWheelEnable is false".to_string(),
            ));
        }
        let max_delay_ms = settings.store.max_delay_ms();
        let illegal = || {
            (
                ResponseCode::MessageIllegal,
                format!("timer message illegal, the delay time should not be bigger than the max delay {max_delay_ms}ms; or if set del msg, the delay time should be bigger than the current time"),
            )
        };
        let deliver_ms = deliver_time(&props, now_ms).ok_or_else(illegal)?;
        if deliver_ms <= i128::from(now_ms) {
            if props.get(properties::TIMER_DEL_UNIQKEY).is_some() {
                return Err(illegal());
            }
            return Ok(()); // due already: stored as a plain message
        }
        if deliver_ms - i128::from(now_ms) > i128::from(max_delay_ms) {
            return Err(illegal());
        }
        let precision = i128::from(settings.store.precision_ms);
        let out_ms = if deliver_ms % precision == 0 {
            deliver_ms - precision
        } else {
            deliver_ms / precision * precision
        };
        let real_topic = String::from_utf8_lossy(&record.topic).into_owned();
        props.insert(properties::TIMER_OUT_MS, out_ms.to_string());
        props.insert(properties::REAL_TOPIC, real_topic);
        props.insert(properties::REAL_QID, record.queue_id.to_string());
        record.properties = Bytes::from(props.encode().into_bytes());
        record.topic = Bytes::from_static(TIMER_TOPIC.as_bytes());
        record.queue_id = 0;
        if let Err(e) = self.open_timer_store(now_ms) {
            return Err((ResponseCode::SystemError, e.to_string()));
        }
        Ok(())
    }

    /// Opens the timer store at start if a previous run used it.
    pub(super) fn open_timer_if_used(&mut self, now_ms: u64) -> Result<(), TimerError> {
        let used = self
            .store
            .storage()
            .len(store_core::timer::wheel::TIMER_WHEEL_FILE)?
            .is_some()
            || self.store.max_offset_in_queue(TIMER_TOPIC, 0) > 0;
        if used {
            self.open_timer_store(now_ms)?;
        }
        Ok(())
    }

    fn open_timer_store(&mut self, now_ms: u64) -> Result<(), TimerError> {
        if self.timer.store.is_some() {
            return Ok(());
        }
        let config = self.timer.settings.store.clone();
        let (mut timer, recovery) = TimerStore::open(self.store.storage().clone(), config, now_ms)?;
        // Java's correction: the queue offset stays inside the timer topic's consume queue.
        let min = self.store.min_offset_in_queue(TIMER_TOPIC, 0);
        let max = self.store.max_offset_in_queue(TIMER_TOPIC, 0);
        let start = recovery.queue_offset.clamp(min, max.max(min));
        if start != recovery.queue_offset {
            tracing::warn!(
                checkpoint = recovery.queue_offset,
                min,
                max,
                "timer queue offset corrected"
            );
        }
        timer.skip_to(start);
        self.timer.durable = Some((recovery.read_time_ms, start));
        self.timer.store = Some(timer);
        self.timer.backlog = true;
        Ok(())
    }

    /// The timer's periodic work: file newly durable timer-topic records, deliver fired slots,
    /// checkpoint. Early or repeated calls are harmless.
    pub(super) fn run_timer(&mut self, now_ms: u64) {
        if self.timer.store.is_none() || self.timer.failed {
            return;
        }
        let result = self
            .timer_enqueue(now_ms)
            .and_then(|enqueued| Ok((enqueued, self.timer_dequeue(now_ms)?)))
            .and_then(|(enqueued, delivered)| {
                self.timer.backlog = enqueued == WORK_PER_CALL || delivered == WORK_PER_CALL;
                self.timer_flush(now_ms, false)
            });
        if let Err(e) = result {
            tracing::error!(error = %e, "timer store failed; timer messages wait for a restart");
            self.timer.failed = true;
        }
    }

    /// Checkpoints the timer store now (shutdown), after the caller synced the commit log.
    pub(super) fn flush_timer(&mut self, now_ms: u64) {
        if let Err(e) = self.timer_flush(now_ms, true) {
            tracing::error!(error = %e, "timer checkpoint failed at shutdown");
        }
    }

    /// Timer messages waiting (slots, units), for inspection.
    pub fn timer_pending(&self) -> (usize, u64) {
        self.timer.pending()
    }

    fn timer_flush(&mut self, now_ms: u64, force: bool) -> Result<(), TimerError> {
        if !force && now_ms < self.timer.next_flush_ms {
            return Ok(());
        }
        self.timer.next_flush_ms = now_ms + self.timer.settings.flush_interval_ms.max(1);
        self.timer.note_flushed(self.store.flushed_offset());
        let Some((read_time, queue_offset)) = self.timer.durable else {
            return Ok(());
        };
        let Some(timer) = self.timer.store.as_mut() else {
            return Ok(());
        };
        timer.flush(read_time, queue_offset, now_ms)?;
        timer.clean()?;
        Ok(())
    }

    /// Files timer-topic records the commit log has synced; returns how many were read.
    fn timer_enqueue(&mut self, now_ms: u64) -> Result<usize, TimerError> {
        let flushed = self.store.flushed_offset();
        let mut done = 0;
        while done < WORK_PER_CALL {
            let Some(timer) = self.timer.store.as_ref() else {
                return Ok(done);
            };
            let from = timer.queue_offset();
            let got =
                self.store
                    .get_messages(TIMER_TOPIC, 0, from, 256, MAX_PULL_MSG_SIZE, &AcceptAll);
            match got.status {
                GetMessageStatus::Found => {}
                _ if got.next_begin_offset > from => {
                    tracing::warn!(
                        from,
                        next = got.next_begin_offset,
                        status = got.status.name(),
                        "timer queue skipped"
                    );
                    if let Some(timer) = self.timer.store.as_mut() {
                        timer.skip_to(got.next_begin_offset);
                    }
                    continue;
                }
                _ => break,
            }
            let mut progressed = false;
            for (bytes, queue_offset) in got.records.iter().zip(got.queue_offsets.iter().copied()) {
                match self.enqueue_one(bytes, queue_offset, flushed, now_ms)? {
                    true => {
                        progressed = true;
                        done += 1;
                    }
                    false => break,
                }
            }
            if !progressed {
                break;
            }
        }
        if done > 0 {
            self.timer.mark(self.store.commit_log_max_offset());
        }
        Ok(done)
    }

    /// Files one timer-topic record; `false` if it is not durable yet.
    fn enqueue_one(
        &mut self,
        bytes: &Bytes,
        queue_offset: u64,
        flushed: u64,
        now_ms: u64,
    ) -> Result<bool, TimerError> {
        let decoded = record::decode(bytes).ok();
        let Some(timer) = self.timer.store.as_mut() else {
            return Ok(false);
        };
        let Some((rec, len)) = decoded else {
            tracing::warn!(queue_offset, "unreadable timer record skipped");
            timer.skip_to(queue_offset + 1);
            return Ok(true);
        };
        let phys = u64::try_from(rec.physical_offset).unwrap_or(u64::MAX);
        if phys.saturating_add(len as u64) > flushed {
            return Ok(false);
        }
        let props = Properties::parse_bytes(&rec.properties);
        let out_ms = props
            .get(properties::TIMER_OUT_MS)
            .and_then(|v| v.parse::<u64>().ok());
        let Some(out_ms) = out_ms else {
            tracing::warn!(queue_offset, "timer record without TIMER_OUT_MS skipped");
            timer.skip_to(queue_offset + 1);
            return Ok(true);
        };
        let hash = java_string_hash(props.get(properties::REAL_TOPIC).unwrap_or_default());
        let size = u32::try_from(len).unwrap_or(u32::MAX);
        match timer.schedule(queue_offset, out_ms, phys, size, hash, now_ms)? {
            Scheduled::InWheel { .. } => {}
            Scheduled::Due => self.deliver_timer_record(bytes, now_ms, now_ms),
        }
        Ok(true)
    }

    /// Delivers fired slots; returns how many messages.
    fn timer_dequeue(&mut self, now_ms: u64) -> Result<usize, TimerError> {
        let mut done = 0;
        while done < WORK_PER_CALL {
            if let Some(unit) = self.timer.pending.pop_front() {
                if let Some(bytes) = self.store.lookup_by_offset(unit.offset_py) {
                    self.deliver_timer_record(&bytes, unit.write_time_ms, now_ms);
                } else {
                    tracing::warn!(
                        offset = unit.offset_py,
                        "timer message gone from the commit log"
                    );
                }
                done += 1;
                continue;
            }
            let Some(timer) = self.timer.store.as_mut() else {
                break;
            };
            match timer.poll_due(now_ms)? {
                Some(slot) => {
                    self.timer.pending_slot_ms = slot.time_ms;
                    self.timer.pending.extend(slot.units);
                }
                None => break,
            }
        }
        self.timer.mark(self.store.commit_log_max_offset());
        Ok(done)
    }

    /// Stores a timer record again under its real topic and queue (Java `convertMessage`).
    fn deliver_timer_record(&mut self, bytes: &Bytes, enqueue_ms: u64, now_ms: u64) {
        let Ok((stored, _)) = record::decode(bytes) else {
            tracing::warn!("unreadable timer record not delivered");
            return;
        };
        if stored.topic.as_ref() != TIMER_TOPIC.as_bytes() {
            tracing::warn!(
                offset = stored.physical_offset,
                "timer unit points at another topic's record"
            );
            return;
        }
        let mut props = Properties::parse_bytes(&stored.properties);
        let (Some(topic), Some(queue_id)) = (
            props.remove(properties::REAL_TOPIC),
            props
                .remove(properties::REAL_QID)
                .and_then(|q| q.parse::<i32>().ok()),
        ) else {
            tracing::warn!(
                offset = stored.physical_offset,
                "timer record without REAL_TOPIC/REAL_QID"
            );
            return;
        };
        props.insert(properties::TIMER_ENQUEUE_MS, enqueue_ms.to_string());
        props.insert(properties::TIMER_DEQUEUE_MS, now_ms.to_string());
        let tags_code = props.get(properties::TAGS).map_or(0, tag_hash_code);
        let record = MessageRecord {
            queue_id,
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: 0,
            topic: Bytes::from(topic.clone().into_bytes()),
            properties: Bytes::from(props.encode().into_bytes()),
            ..stored
        };
        let put = self.store.put(&record, now_ms);
        if !put.status.is_stored() {
            // Java retries PUT_NEED_RETRY statuses; the store refuses only when failed or full,
            // and then the message stays in the timer log for the next incarnation.
            tracing::error!(
                topic,
                status = put.status.name(),
                "timer delivery refused by the store"
            );
            self.timer.failed = true;
            return;
        }
        let max_offset = self.store.max_offset_in_queue(&topic, queue_id);
        self.wake_held_pulls(&topic, queue_id, max_offset, Some(tags_code), now_ms);
    }
}

/// The delivery time a message asks for (Java's order: TIMER_DELAY_SEC, TIMER_DELAY_MS,
/// TIMER_DELIVER_MS); `None` if the value does not parse as a Java long.
fn deliver_time(props: &Properties, now_ms: u64) -> Option<i128> {
    let now = i128::from(now_ms);
    if let Some(sec) = props.get(properties::TIMER_DELAY_SEC) {
        return Some(now + i128::from(sec.parse::<i64>().ok()?) * 1000);
    }
    if let Some(ms) = props.get(properties::TIMER_DELAY_MS) {
        return Some(now + i128::from(ms.parse::<i64>().ok()?));
    }
    Some(i128::from(
        props
            .get(properties::TIMER_DELIVER_MS)?
            .parse::<i64>()
            .ok()?,
    ))
}

/// Java's `String.hashCode` (UTF-16 units), as RocketMQ puts into timer-log units.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}
