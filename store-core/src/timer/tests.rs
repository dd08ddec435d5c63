//! Timer store tests: a model of the broker's enqueue/dequeue loop over [`MemStorage`], run on
//! random schedules with and without crashes. The model delivers by recording the unit's
//! `offset_py` (each message's id) with the time it came out.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::storage::MemStorage;

const T0: u64 = 1_700_000_000_000;
const P: u64 = 1000;

fn small_config() -> TimerConfig {
    TimerConfig {
        precision_ms: P,
        max_delay_sec: 30,
        // Room for 4 units per segment, so schedules cross segments.
        log_file_size: 4 * log::UNIT_SIZE + log::MIN_BLANK_LEN + 8,
        slots_total: 64,
    }
}

/// A message: sent (enqueued) at `send_ms`, due at `out_ms`.
#[derive(Clone, Copy, Debug)]
struct Msg {
    send_ms: u64,
    out_ms: u64,
}

/// The broker side of the protocol, reduced to what the timer store needs.
struct Harness {
    storage: MemStorage,
    store: TimerStore<MemStorage>,
    msgs: Vec<Msg>,
    /// Deliveries: message id -> times delivered.
    delivered: BTreeMap<u64, Vec<u64>>,
    /// Time of the previous step, to check nothing comes out late by more than a step.
    last_poll_ms: u64,
    /// Deliveries recorded when the last checkpoint was written.
    checkpointed: usize,
    deliveries: usize,
}

impl Harness {
    fn new(msgs: Vec<Msg>) -> Harness {
        let storage = MemStorage::new();
        let (store, recovery) = TimerStore::open(storage.clone(), small_config(), T0).unwrap();
        assert_eq!((recovery.queue_offset, recovery.live_units), (0, 0));
        Harness {
            storage,
            store,
            msgs,
            delivered: BTreeMap::new(),
            last_poll_ms: T0,
            checkpointed: 0,
            deliveries: 0,
        }
    }

    /// Enqueues what was sent by `now`, then delivers what is due.
    fn step(&mut self, now: u64) {
        while let Some(msg) = self.msgs.get(self.store.queue_offset() as usize).copied() {
            if msg.send_ms > now {
                break;
            }
            let id = self.store.queue_offset();
            match self
                .store
                .schedule(id, msg.out_ms, id, 100, 0, now)
                .unwrap()
            {
                Scheduled::InWheel { .. } => {}
                Scheduled::Due => self.deliver(id, now),
            }
        }
        while let Some(slot) = self.store.poll_due(now).unwrap() {
            assert!(
                slot.time_ms + P <= now,
                "slot {} fired early at {now}",
                slot.time_ms
            );
            for unit in slot.units {
                self.deliver(unit.offset_py, now);
            }
        }
        self.last_poll_ms = now;
    }

    fn deliver(&mut self, id: u64, now: u64) {
        let msg = self.msgs[id as usize];
        let fire = msg.out_ms / P * P + P;
        assert!(now >= fire, "message {id} due {fire} delivered at {now}");
        self.delivered.entry(id).or_default().push(now);
        self.deliveries += 1;
    }

    fn flush(&mut self, now: u64) {
        let (read, queue) = (self.store.read_time_ms(), self.store.queue_offset());
        self.store.flush(read, queue, now).unwrap();
        self.store.clean().unwrap();
        self.checkpointed = self.deliveries;
    }

    /// Power loss and restart at `now`.
    fn crash(&mut self, now: u64, tear: Option<u64>) {
        self.storage.crash(tear);
        let (store, _) = TimerStore::open(self.storage.clone(), small_config(), now).unwrap();
        self.store = store;
    }
}

#[test]
fn each_message_comes_out_in_the_first_step_after_its_slot_fires() {
    let msgs: Vec<Msg> = (0..40)
        .map(|i| Msg {
            send_ms: T0 + i * 137,
            out_ms: T0 + i * 137 + (i * 7919) % 20_000,
        })
        .collect();
    let mut h = Harness::new(msgs.clone());
    let mut now = T0;
    while now < T0 + 40_000 {
        now += 250;
        let before = h.last_poll_ms;
        h.step(now);
        for (id, times) in &h.delivered {
            let fire = msgs[*id as usize].out_ms / P * P + P;
            if times[0] == now {
                assert!(before < fire.max(msgs[*id as usize].send_ms), "late: {id}");
            }
        }
    }
    assert_eq!(h.delivered.len(), msgs.len());
    assert!(h.delivered.values().all(|t| t.len() == 1));
}

#[test]
fn a_clean_restart_delivers_the_pending_slots() {
    let msgs: Vec<Msg> = (0..10)
        .map(|i| Msg {
            send_ms: T0,
            out_ms: T0 + 2_000 + i * 1_500,
        })
        .collect();
    let mut h = Harness::new(msgs);
    h.step(T0 + 10);
    h.step(T0 + 5_000);
    assert_eq!(h.delivered.len(), 2);
    h.flush(T0 + 5_000);
    h.crash(T0 + 9_000, None);
    assert_eq!(h.store.pending().1, 8);
    h.step(T0 + 9_000);
    h.step(T0 + 30_000);
    assert_eq!(h.delivered.len(), 10);
    assert!(
        h.delivered.values().all(|t| t.len() == 1),
        "{:?}",
        h.delivered
    );
}

#[test]
fn a_crash_repeats_only_what_the_checkpoint_did_not_cover() {
    let msgs: Vec<Msg> = (0..12)
        .map(|i| Msg {
            send_ms: T0 + i * 100,
            out_ms: T0 + 1_000 + i * 700,
        })
        .collect();
    let mut h = Harness::new(msgs);
    h.step(T0 + 600);
    h.flush(T0 + 600);
    h.step(T0 + 3_000); // more enqueued and some delivered, not checkpointed
    let after_checkpoint = h.deliveries - h.checkpointed;
    assert!(after_checkpoint > 0);
    h.crash(T0 + 3_100, Some(17));
    h.step(T0 + 3_100);
    h.step(T0 + 20_000);
    assert_eq!(h.delivered.len(), 12);
    let repeats: usize = h.delivered.values().map(|t| t.len() - 1).sum();
    assert!(
        repeats <= after_checkpoint,
        "{repeats} repeats > {after_checkpoint}"
    );
}

#[test]
fn old_log_segments_go_once_delivered_and_checkpointed() {
    let msgs: Vec<Msg> = (0..20)
        .map(|i| Msg {
            send_ms: T0,
            out_ms: T0 + 1_000 + i * 1_000,
        })
        .collect();
    let mut h = Harness::new(msgs);
    h.step(T0);
    h.flush(T0);
    assert_eq!(h.store.log_min_pos(), 0);
    h.step(T0 + 15_000);
    h.flush(T0 + 15_000);
    assert!(
        h.store.log_min_pos() > 0,
        "segments of delivered slots are deleted"
    );
    h.crash(T0 + 15_500, None);
    h.step(T0 + 40_000);
    assert_eq!(h.delivered.len(), 20);
}

#[test]
fn the_read_time_survives_a_restart_so_delivered_slots_stay_delivered() {
    let msgs = vec![Msg {
        send_ms: T0,
        out_ms: T0 + 3_000,
    }];
    let mut h = Harness::new(msgs);
    h.step(T0);
    h.step(T0 + 5_000);
    h.flush(T0 + 5_000);
    h.crash(T0 + 6_000, None);
    h.step(T0 + 10_000);
    assert_eq!(h.delivered[&0].len(), 1);
}

fn schedule() -> impl Strategy<Value = Vec<Msg>> {
    prop::collection::vec((0u64..20_000, 0u64..25_000), 1..60).prop_map(|mut v| {
        v.sort_unstable();
        v.into_iter()
            .map(|(send, delay)| Msg {
                send_ms: T0 + send,
                out_ms: T0 + send + delay,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random schedules, random steps, random flushes and crashes (with torn tails): every
    /// message comes out, none early (checked in `deliver` and `step`), and without a crash
    /// each exactly once and at the first step after its slot fires.
    #[test]
    fn random_schedules_deliver_on_time(
        msgs in schedule(),
        steps in prop::collection::vec((1u64..1_500, 0u8..10, 0u64..200), 60..120),
    ) {
        let mut h = Harness::new(msgs.clone());
        let mut now = T0;
        let mut crashed = false;
        for (dt, action, tear) in steps {
            now += dt;
            let before = h.last_poll_ms;
            h.step(now);
            if !crashed {
                for (id, times) in &h.delivered {
                    let msg = msgs[*id as usize];
                    let fire = msg.out_ms / P * P + P;
                    if times[0] == now {
                        prop_assert!(before < fire.max(msg.send_ms), "message {} fired {} but came out at {}", id, fire, now);
                    }
                }
            }
            match action {
                0..=2 => h.flush(now),
                3 => { h.crash(now, (tear > 100).then_some(tear)); crashed = true; }
                _ => {}
            }
        }
        h.step(now + 60_000);
        prop_assert_eq!(h.delivered.len(), msgs.len());
        if !crashed {
            prop_assert!(h.delivered.values().all(|t| t.len() == 1));
        }
    }
}
