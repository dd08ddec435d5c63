//! The timer store (RocketMQ 5's `TimerMessageStore`, storage half): a persistent timing wheel
//! for messages with an arbitrary delivery time, laid out as RocketMQ lays it out:
//! `timerwheel` ([`wheel`]), `timerlog/` ([`log`]) and `config/timercheck` ([`checkpoint`]).
//!
//! A timer message is first stored in the commit log under topic `rmq_sys_wheel_timer`, queue 0
//! (the broker does that at send time). Its commit-log record is the durable copy; the timer
//! store only indexes it by delivery time:
//! 1. *enqueue*: the broker reads the timer topic's consume queue from
//!    [`TimerStore::queue_offset`] and calls [`TimerStore::schedule`] for each record, which
//!    appends a 52-byte unit to the timer log and files it in the slot of its delivery time;
//! 2. *dequeue*: [`TimerStore::poll_due`] hands back the units of the earliest slot whose time
//!    has passed (a slot of time `t` holds deliveries in `[t, t + precision)` and fires at
//!    `t + precision`, so nothing is ever early); the broker reads each record at `offset_py`
//!    and stores it again under its real topic;
//! 3. *flush*: [`TimerStore::flush`] syncs the log, then the wheel, then writes the checkpoint
//!    with the read time and queue offset the *broker* says are durable (deliveries and
//!    immediate deliveries are commit-log writes, durable only once the commit log is synced).
//!
//! # Crash analysis
//! - Units past the checkpoint's log position are re-found by the recovery scan (CRC-checked)
//!   and revised into the wheel; a torn unit ends the scan and is overwritten.
//! - The wheel file is written only right after the log it points into was synced, so it never
//!   references a unit a crash can take away.
//! - Slots at or after the checkpoint's read time are delivered again, and the timer topic is
//!   re-enqueued from the checkpoint's queue offset: a crash may *repeat* deliveries of the last
//!   second or so (at-least-once, like RocketMQ), never lose one and never deliver early.
//!
//! What it leaves out: RocketMQ's roll (re-putting messages beyond a roll window; here the
//! wheel is sized to hold the whole maximum delay), timer deletion (`TIMER_DEL_UNIQKEY`),
//! metrics, flow control and the slave side.

pub mod checkpoint;
pub mod log;
pub mod wheel;

#[cfg(test)]
mod tests;

use crate::storage::{Storage, StorageError};

use checkpoint::TimerCheckpoint;
use log::{LogUnit, TimerLog, MAGIC_DEFAULT};
use wheel::{TimerWheel, WheelError};

/// The system topic timer messages wait in (Java `TimerMessageStore.TIMER_TOPIC`).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";
/// Java `TIMER_WHEEL_TTL_DAY × DAY_SECS`: the least number of slots (the file holds twice as
/// many).
pub const SLOTS_TOTAL_MIN: u64 = 7 * 24 * 3600;
/// Java `TIMER_BLANK_SLOTS`: head room kept when clamping an old read time.
pub const TIMER_BLANK_SLOTS: u64 = 60;

/// Settings, with RocketMQ's `MessageStoreConfig` names and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// `timerPrecisionMs` (1000): width of a slot.
    pub precision_ms: u64,
    /// `timerMaxDelaySec` (3 days): the furthest delivery time accepted.
    pub max_delay_sec: u64,
    /// `mappedFileSizeTimerLog` (100 MiB).
    pub log_file_size: u64,
    /// Slots in half the wheel file; see [`TimerConfig::slots_for`].
    pub slots_total: u64,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig::new(1000, 3 * 24 * 3600)
    }
}

impl TimerConfig {
    /// Settings for a precision and maximum delay, with the default log segment size.
    pub fn new(precision_ms: u64, max_delay_sec: u64) -> TimerConfig {
        let precision_ms = precision_ms.max(1);
        TimerConfig {
            precision_ms,
            max_delay_sec,
            log_file_size: 100 * 1024 * 1024,
            slots_total: TimerConfig::slots_for(precision_ms, max_delay_sec),
        }
    }

    /// RocketMQ's 7 days of slots, or more when the maximum delay needs it: half the wheel must
    /// hold every delivery time from a lagging read time to `now + max delay`, since we do not
    /// roll messages as RocketMQ does.
    pub fn slots_for(precision_ms: u64, max_delay_sec: u64) -> u64 {
        let needed = max_delay_sec
            .saturating_mul(1000)
            .div_ceil(precision_ms.max(1));
        SLOTS_TOTAL_MIN.max(needed + 2 * TIMER_BLANK_SLOTS)
    }

    /// The maximum delay in ms.
    pub fn max_delay_ms(&self) -> u64 {
        self.max_delay_sec.saturating_mul(1000)
    }
}

/// Why the timer store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimerError {
    #[error("timer store: {0}")]
    Storage(#[from] StorageError),
    #[error("timer store: {0}")]
    Wheel(#[from] WheelError),
}

/// What [`TimerStore::open`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimerRecovery {
    /// Slots before it are delivered.
    pub read_time_ms: u64,
    /// Next timer-topic queue offset to enqueue.
    pub queue_offset: u64,
    /// Timer log position after the scan.
    pub log_end: u64,
    /// Units found past the checkpoint and filed again.
    pub revised_units: u64,
    /// Live slots and units after recovery.
    pub live_slots: usize,
    pub live_units: u64,
}

/// Where [`TimerStore::schedule`] put a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduled {
    /// Filed in the wheel; the unit is at `pos` in the timer log.
    InWheel { pos: u64 },
    /// Its slot was already read: deliver it now.
    Due,
}

/// One slot's worth of deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueSlot {
    /// The slot time; every unit here is due at `time_ms + precision`.
    pub time_ms: u64,
    /// The units in the order they were scheduled.
    pub units: Vec<LogUnit>,
}

/// The timer store. See the module docs for the enqueue / dequeue / flush protocol.
#[derive(Debug)]
pub struct TimerStore<S: Storage> {
    storage: S,
    config: TimerConfig,
    log: TimerLog,
    wheel: TimerWheel,
    /// Slots before this time have been handed out by `poll_due`.
    read_time_ms: u64,
    /// Next timer-topic queue offset to schedule.
    queue_offset: u64,
    /// The last checkpoint written.
    checkpoint: TimerCheckpoint,
}

impl<S: Storage> TimerStore<S> {
    /// Opens the timer store on `storage`, recovering it (see the crash analysis above).
    ///
    /// # Errors
    /// [`TimerError`]: a file could not be read or created, or the wheel was made for other
    /// settings.
    pub fn open(
        storage: S,
        config: TimerConfig,
        now_ms: u64,
    ) -> Result<(TimerStore<S>, TimerRecovery), TimerError> {
        let p = config.precision_ms;
        let floor_now = now_ms / p * p;
        let checkpoint = TimerCheckpoint::load(&storage)?.unwrap_or(TimerCheckpoint {
            last_read_time_ms: floor_now,
            ..TimerCheckpoint::default()
        });
        // Java clamps an old read time to one wheel half before now: anything older is lost
        // to index reuse anyway.
        let oldest = floor_now.saturating_sub((config.slots_total - TIMER_BLANK_SLOTS) * p);
        let read_time_ms = (checkpoint.last_read_time_ms / p * p).max(oldest);
        let mut wheel = TimerWheel::open(&storage, config.slots_total, p, read_time_ms)?;
        let mut log = TimerLog::load(&storage, config.log_file_size)?;
        let mut revised_units = 0;
        let log_end = log.recover(
            &storage,
            checkpoint.last_timer_log_flush_pos,
            |pos, unit| {
                let slot = unit.delayed_time_ms() / p * p;
                if slot >= read_time_ms {
                    wheel.revise(slot, pos);
                    revised_units += 1;
                }
            },
        )?;
        let (live_slots, live_units) = wheel.live_slots();
        let recovery = TimerRecovery {
            read_time_ms,
            queue_offset: checkpoint.last_timer_queue_offset,
            log_end,
            revised_units,
            live_slots,
            live_units,
        };
        tracing::info!(?recovery, "timer store recovered");
        let store = TimerStore {
            storage,
            log,
            wheel,
            read_time_ms,
            queue_offset: checkpoint.last_timer_queue_offset,
            checkpoint,
            config,
        };
        Ok((store, recovery))
    }

    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Next timer-topic queue offset to schedule.
    pub fn queue_offset(&self) -> u64 {
        self.queue_offset
    }

    /// Moves the enqueue position, for a record that is not scheduled (unreadable, or outside
    /// the consume queue's bounds after retention).
    pub fn skip_to(&mut self, queue_offset: u64) {
        self.queue_offset = self.queue_offset.max(queue_offset);
    }

    /// Slots before this time have been handed out.
    pub fn read_time_ms(&self) -> u64 {
        self.read_time_ms
    }

    /// The slot a delivery time falls into.
    pub fn slot_time(&self, out_ms: u64) -> u64 {
        out_ms / self.config.precision_ms * self.config.precision_ms
    }

    /// Schedules the timer message at timer-topic `queue_offset` (commit-log `offset_py`,
    /// `size_py` bytes) for `out_ms`, its `TIMER_OUT_MS`.
    ///
    /// # Errors
    /// The storage's; nothing is filed then and the queue offset does not move.
    pub fn schedule(
        &mut self,
        queue_offset: u64,
        out_ms: u64,
        offset_py: u64,
        size_py: u32,
        topic_hash: i32,
        now_ms: u64,
    ) -> Result<Scheduled, TimerError> {
        let slot = self.slot_time(out_ms);
        if slot < self.read_time_ms {
            self.queue_offset = self.queue_offset.max(queue_offset + 1);
            return Ok(Scheduled::Due);
        }
        // RocketMQ stores the write time and the delay; a delay that does not fit an i32 (only
        // possible with a maximum delay above 24 days) is filed as written at the slot time.
        let (write_time_ms, delay_ms) = match i32::try_from(i128::from(slot) - i128::from(now_ms)) {
            Ok(delay_ms) => (now_ms, delay_ms),
            Err(_) => (slot, 0),
        };
        let unit = LogUnit {
            prev_pos: self.wheel.last_pos(slot),
            magic: MAGIC_DEFAULT,
            write_time_ms,
            delay_ms,
            offset_py,
            size_py,
            topic_hash,
        };
        assert_eq!(unit.delayed_time_ms(), slot);
        let pos = self.log.append(&self.storage, &unit)?;
        self.wheel.put(slot, pos);
        self.queue_offset = self.queue_offset.max(queue_offset + 1);
        Ok(Scheduled::InWheel { pos })
    }

    /// When the earliest filed slot fires, if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        let slot = self.wheel.next_slot(self.read_time_ms)?;
        Some(slot + self.config.precision_ms)
    }

    /// Takes the earliest slot that has fired by `now_ms`, with its units in scheduling order;
    /// `None` if none has (the read time then moves up to `now_ms`'s slot).
    ///
    /// # Errors
    /// The storage's, reading the chain; the slot is then left in place.
    pub fn poll_due(&mut self, now_ms: u64) -> Result<Option<DueSlot>, TimerError> {
        let p = self.config.precision_ms;
        let due = self
            .wheel
            .next_slot(self.read_time_ms)
            .filter(|&slot| slot + p <= now_ms);
        let Some(time_ms) = due else {
            self.read_time_ms = self.read_time_ms.max(now_ms / p * p);
            return Ok(None);
        };
        let units = self.read_chain(time_ms)?;
        self.wheel.take(time_ms);
        self.read_time_ms = time_ms + p;
        Ok(Some(DueSlot { time_ms, units }))
    }

    /// Syncs the log, then the wheel, then checkpoints `read_time_ms` and `queue_offset`, which
    /// the caller has made durable (never beyond this store's own).
    ///
    /// # Errors
    /// The storage's; the previous checkpoint stays in force.
    pub fn flush(
        &mut self,
        read_time_ms: u64,
        queue_offset: u64,
        now_ms: u64,
    ) -> Result<(), TimerError> {
        self.log.sync(&self.storage)?;
        self.wheel.flush(&self.storage)?;
        let read_time_ms = read_time_ms
            .min(self.read_time_ms)
            .max(self.checkpoint.last_read_time_ms);
        let queue_offset = queue_offset
            .min(self.queue_offset)
            .max(self.checkpoint.last_timer_queue_offset);
        let next = TimerCheckpoint {
            last_read_time_ms: read_time_ms,
            last_timer_log_flush_pos: self.log.flushed_pos(),
            last_timer_queue_offset: queue_offset,
            master_timer_queue_offset: queue_offset,
            counter: self.checkpoint.counter + 1,
            timestamp_ms: now_ms,
        };
        if (
            next.last_read_time_ms,
            next.last_timer_log_flush_pos,
            next.last_timer_queue_offset,
        ) != (
            self.checkpoint.last_read_time_ms,
            self.checkpoint.last_timer_log_flush_pos,
            self.checkpoint.last_timer_queue_offset,
        ) {
            next.store(&self.storage)?;
            self.checkpoint = next;
        }
        Ok(())
    }

    /// Deletes timer-log segments nothing can need again: below every live slot's first unit,
    /// and only once the checkpoint's read time has caught up (a crash reloads slots from the
    /// checkpoint's read time on, and those may point into older segments).
    ///
    /// # Errors
    /// The storage's.
    pub fn clean(&mut self) -> Result<usize, TimerError> {
        if self.checkpoint.last_read_time_ms < self.read_time_ms {
            return Ok(0);
        }
        let keep = self
            .wheel
            .min_first_pos()
            .unwrap_or(self.log.flushed_pos())
            .min(self.checkpoint.last_timer_log_flush_pos);
        Ok(self.log.delete_below(&self.storage, keep)?)
    }

    /// The last checkpoint written.
    pub fn checkpoint(&self) -> &TimerCheckpoint {
        &self.checkpoint
    }

    /// Live slots and units waiting in the wheel.
    pub fn pending(&self) -> (usize, u64) {
        self.wheel.live_slots()
    }

    /// Start of the oldest timer-log segment kept.
    pub fn log_min_pos(&self) -> u64 {
        self.log.min_pos()
    }

    /// The units of a slot, oldest first, following `prev_pos` back from the last one. The
    /// walk stops at the chain's end, at a unit that is not there (its segment deleted) and at a
    /// link that does not go backwards, so damaged bytes cannot loop it.
    fn read_chain(&self, time_ms: u64) -> Result<Vec<LogUnit>, TimerError> {
        let mut units = Vec::new();
        let mut pos = self.wheel.last_pos(time_ms);
        while let Ok(at) = u64::try_from(pos) {
            if at < self.log.min_pos() {
                break;
            }
            let Some(unit) = self.log.read(&self.storage, at)? else {
                tracing::warn!(pos = at, time_ms, "timer log unit unreadable; chain cut");
                break;
            };
            if unit.delayed_time_ms() / self.config.precision_ms * self.config.precision_ms
                == time_ms
            {
                units.push(unit);
            }
            if unit.prev_pos >= pos {
                break;
            }
            pos = unit.prev_pos;
        }
        units.reverse();
        Ok(units)
    }
}
