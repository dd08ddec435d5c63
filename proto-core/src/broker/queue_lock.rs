//! [`QueueLockTable`]: the queue locks orderly consumers take with LOCK_BATCH_MQ and release with
//! UNLOCK_BATCH_MQ (Java `RebalanceLockManager`, protocol reference §10.4).
//!
//! A lock belongs to one client id per (group, queue) and lapses [`LOCK_LIVE_MS_MAX`] after its
//! last refresh; a request from the holder refreshes it, and anyone may take a lapsed lock.
//! Lapsed entries stay in the table until taken or released, as in Java, so they cost a little
//! memory but never block anyone.
//!
//! A closed connection does not release its client's locks, as in Java: an orderly client trusts
//! its own lock for 30 s after the last grant (`rebalance.lockMaxLiveTime` on the client side) and
//! may still be consuming, so handing its queues over before the broker's 60 s would let two
//! clients run one queue at once. A client shutting down sends UNLOCK_BATCH_MQ instead.
//!
//! What it leaves out: strict lock mode (asking the other replicas for a quorum).

use std::collections::{BTreeMap, BTreeSet};

use crate::body::MessageQueue;

/// Consumer group -> queue -> lock.
#[derive(Clone, Debug, Default)]
pub struct QueueLockTable {
    groups: BTreeMap<String, BTreeMap<MessageQueue, LockEntry>>,
}

/// Who holds a queue and since when it was last refreshed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockEntry {
    pub client_id: String,
    pub last_update_ms: u64,
}

impl LockEntry {
    /// More than [`LOCK_LIVE_MS_MAX`] since the last refresh (strictly, as Java compares).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_update_ms) > LOCK_LIVE_MS_MAX
    }

    fn is_held_by(&self, client_id: &str, now_ms: u64) -> bool {
        self.client_id == client_id && !self.is_expired(now_ms)
    }
}

impl QueueLockTable {
    pub fn new() -> QueueLockTable {
        QueueLockTable::default()
    }

    /// LOCK_BATCH_MQ: grants each queue that is free, lapsed or already held by `client_id`, and
    /// refreshes those locks. Returns the queues `client_id` now holds (the `lockOKMQSet`).
    pub fn try_lock_batch(
        &mut self,
        group: &str,
        mqs: &BTreeSet<MessageQueue>,
        client_id: &str,
        now_ms: u64,
    ) -> BTreeSet<MessageQueue> {
        let table = self.groups.entry(group.to_string()).or_default();
        let mut locked = BTreeSet::new();
        for mq in mqs {
            match table.get_mut(mq) {
                Some(entry) if entry.is_held_by(client_id, now_ms) || entry.is_expired(now_ms) => {
                    if entry.client_id != client_id {
                        tracing::info!(group, ?mq, old = %entry.client_id, new = client_id, "lapsed queue lock taken over");
                        entry.client_id = client_id.to_string();
                    }
                    entry.last_update_ms = now_ms;
                }
                Some(_) => continue,
                None => {
                    let entry = LockEntry {
                        client_id: client_id.to_string(),
                        last_update_ms: now_ms,
                    };
                    table.insert(mq.clone(), entry);
                }
            }
            locked.insert(mq.clone());
        }
        if table.is_empty() {
            self.groups.remove(group);
        }
        locked
    }

    /// UNLOCK_BATCH_MQ: releases the queues `client_id` holds (lapsed or not, as Java does);
    /// queues held by others are left alone.
    pub fn unlock_batch(&mut self, group: &str, mqs: &BTreeSet<MessageQueue>, client_id: &str) {
        let Some(table) = self.groups.get_mut(group) else {
            return;
        };
        for mq in mqs {
            if table.get(mq).is_some_and(|e| e.client_id == client_id) {
                table.remove(mq);
            }
        }
        if table.is_empty() {
            self.groups.remove(group);
        }
    }

    /// Java `isLockAllExpired`: no unexpired lock in `group`. While it is false, sends to the
    /// group's `%RETRY%` topic go to its DLQ (§8 step 6).
    pub fn is_all_expired(&self, group: &str, now_ms: u64) -> bool {
        self.groups
            .get(group)
            .is_none_or(|t| t.values().all(|e| e.is_expired(now_ms)))
    }

    /// The unexpired holder of `mq` in `group`.
    pub fn holder(&self, group: &str, mq: &MessageQueue, now_ms: u64) -> Option<&str> {
        let entry = self.groups.get(group)?.get(mq)?;
        (!entry.is_expired(now_ms)).then_some(entry.client_id.as_str())
    }
}

/// How long a lock lives without refresh (Java `rocketmq.broker.rebalance.lockMaxLiveTime`).
pub const LOCK_LIVE_MS_MAX: u64 = 60_000;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mq(queue_id: i32) -> MessageQueue {
        MessageQueue {
            broker_name: "broker-a".into(),
            queue_id,
            topic: "T".into(),
        }
    }

    fn set(ids: &[i32]) -> BTreeSet<MessageQueue> {
        ids.iter().map(|&i| mq(i)).collect()
    }

    #[test]
    fn grants_free_own_and_lapsed_queues_only() {
        let mut t = QueueLockTable::new();
        assert_eq!(t.try_lock_batch("g", &set(&[0, 1]), "c1", 0), set(&[0, 1]));
        assert_eq!(t.try_lock_batch("g", &set(&[1, 2]), "c2", 1_000), set(&[2]));
        assert!(!t.is_all_expired("g", 1_000));
        // c1 refreshes queue 0 at 50 s; queue 1 lapses at 60 s + 1 ms.
        assert_eq!(t.try_lock_batch("g", &set(&[0]), "c1", 50_000), set(&[0]));
        assert_eq!(t.try_lock_batch("g", &set(&[0, 1]), "c2", 60_000), set(&[]));
        assert_eq!(
            t.try_lock_batch("g", &set(&[0, 1]), "c2", 60_001),
            set(&[1])
        );
        assert_eq!(t.holder("g", &mq(0), 60_001), Some("c1"));
        assert_eq!(t.holder("g", &mq(1), 60_001), Some("c2"));
        // Other groups are independent.
        assert_eq!(t.try_lock_batch("h", &set(&[0]), "c9", 60_001), set(&[0]));
    }

    #[test]
    fn unlock_releases_only_own_queues() {
        let mut t = QueueLockTable::new();
        t.try_lock_batch("g", &set(&[0]), "c1", 0);
        t.try_lock_batch("g", &set(&[1]), "c2", 0);
        t.unlock_batch("g", &set(&[0, 1]), "c1");
        assert_eq!(t.holder("g", &mq(0), 1), None);
        assert_eq!(t.holder("g", &mq(1), 1), Some("c2"));
        t.unlock_batch("g", &set(&[1]), "c2");
        assert!(t.is_all_expired("g", 1));
        assert!(t.groups.is_empty());
        t.unlock_batch("nope", &set(&[1]), "c2");
    }

    #[test]
    fn all_expired_after_the_live_time() {
        let mut t = QueueLockTable::new();
        assert!(t.is_all_expired("g", 0));
        t.try_lock_batch("g", &set(&[0]), "c1", 0);
        assert!(!t.is_all_expired("g", LOCK_LIVE_MS_MAX));
        assert!(t.is_all_expired("g", LOCK_LIVE_MS_MAX + 1));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Lock {
            client: u8,
            queues: Vec<i32>,
            advance_ms: u64,
        },
        Unlock {
            client: u8,
            queues: Vec<i32>,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let queues = prop::collection::vec(0i32..4, 0..4);
        prop_oneof![
            (0u8..3, queues.clone(), 0u64..40_000).prop_map(|(client, queues, advance_ms)| {
                Op::Lock {
                    client,
                    queues,
                    advance_ms,
                }
            }),
            (0u8..3, queues).prop_map(|(client, queues)| Op::Unlock { client, queues }),
        ]
    }

    proptest! {
        /// At any time each queue has at most one live holder, and a grant goes only to a
        /// client when no other client held the queue live just before.
        #[test]
        fn at_most_one_live_owner(ops in prop::collection::vec(op(), 1..60)) {
            let mut t = QueueLockTable::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Lock { client, queues, advance_ms } => {
                        now += advance_ms;
                        let client = format!("c{client}");
                        let asked: BTreeSet<_> = queues.iter().map(|&q| mq(q)).collect();
                        let before: Vec<_> = asked.iter().map(|q| t.holder("g", q, now).map(str::to_string)).collect();
                        let granted = t.try_lock_batch("g", &asked, &client, now);
                        for (q, held) in asked.iter().zip(before) {
                            let free_or_own = held.as_deref().is_none_or(|h| h == client);
                            prop_assert_eq!(granted.contains(q), free_or_own);
                            let expected = if free_or_own { Some(client.clone()) } else { held };
                            prop_assert_eq!(t.holder("g", q, now).map(str::to_string), expected);
                        }
                    }
                    Op::Unlock { client, queues } => {
                        let asked: BTreeSet<_> = queues.iter().map(|&q| mq(q)).collect();
                        t.unlock_batch("g", &asked, &format!("c{client}"));
                    }
                }
                for q in 0..4 {
                    let live = t.groups.get("g").and_then(|g| g.get(&mq(q))).filter(|e| !e.is_expired(now));
                    prop_assert_eq!(live.map(|e| e.client_id.as_str()), t.holder("g", &mq(q), now));
                }
            }
        }
    }
}
