//! Broker liveness as the controller leader sees it (RocketMQ's DefaultBrokerHeartbeatManager):
//! the last BROKER_HEARTBEAT of each broker, with the epoch, offsets and priority it reported.
//!
//! Liveness is not replicated: each controller builds it from the heartbeats it receives, and
//! only the leader acts on it. A leader that just took over may have heard nobody yet (brokers
//! were talking to the old leader, or it was cut off), so it gives every broker one of its own
//! timeouts counted from the moment it became leader (a broker never heard from gets the grace
//! period); otherwise it could expire every master at its first scan. A broker it does hear
//! from is judged by its own timeout at once, so a master that dies just after a leader change
//! is not kept alive for the controller's default timeout.
//!
//! What it leaves out: the choice of master (`elect.rs`) and when to scan (`mod.rs`).

use std::collections::BTreeMap;

use super::elect::Candidate;
use super::state::BrokerSet;

/// The last heartbeat of each broker, keyed by (brokerName, brokerId).
#[derive(Debug, Default)]
pub struct Liveness {
    brokers: BTreeMap<(String, i64), BrokerLive>,
    /// Until this instant (ms) a registered broker never heard from counts as alive; 0 when
    /// not leading.
    grace_until_ms: u64,
    /// When this controller became leader; 0 when not leading.
    leading_since_ms: u64,
}

/// What one broker's last heartbeat said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerLive {
    pub broker_addr: String,
    pub last_heartbeat_ms: u64,
    /// How long after its last heartbeat the broker counts as gone (its own
    /// `controllerHeartBeatTimeoutMills`).
    pub timeout_ms: u64,
    pub epoch: i32,
    pub max_offset: i64,
    pub confirm_offset: i64,
    pub election_priority: i32,
}

impl Liveness {
    /// Starts judging liveness as a new leader: everyone registered is alive for `grace_ms`.
    pub fn start_leading(&mut self, now_ms: u64, grace_ms: u64) {
        self.grace_until_ms = now_ms.saturating_add(grace_ms);
        self.leading_since_ms = now_ms;
    }

    /// Stops leading: the heartbeats stay (they expire on their own), the grace period ends.
    pub fn stop_leading(&mut self) {
        self.grace_until_ms = 0;
        self.leading_since_ms = 0;
    }

    /// Whether a grace period is still running.
    pub fn in_grace(&self, now_ms: u64) -> bool {
        now_ms < self.grace_until_ms
    }

    /// The instant the grace period ends.
    pub fn grace_until_ms(&self) -> u64 {
        self.grace_until_ms
    }

    /// Records a heartbeat. Refused (false) when the table is full of other brokers, so a
    /// flood of made-up names cannot grow it without bound.
    pub fn record(&mut self, broker_name: &str, broker_id: i64, live: BrokerLive) -> bool {
        let key = (broker_name.to_owned(), broker_id);
        if !self.brokers.contains_key(&key) && self.brokers.len() >= BROKERS_MAX {
            return false;
        }
        self.brokers.insert(key, live);
        true
    }

    /// Whether broker `broker_id` of `broker_name` counts as alive at `now_ms`.
    pub fn is_alive(&self, broker_name: &str, broker_id: i64, now_ms: u64) -> bool {
        match self.live(broker_name, broker_id) {
            // Heard from: its own timeout, from its last heartbeat or, if that came before this
            // controller led, from when it started leading.
            Some(live) => {
                let from = live.last_heartbeat_ms.max(self.leading_since_ms);
                now_ms <= from.saturating_add(live.timeout_ms)
            }
            None => self.in_grace(now_ms),
        }
    }

    /// The last heartbeat of a broker, if any.
    pub fn live(&self, broker_name: &str, broker_id: i64) -> Option<&BrokerLive> {
        self.brokers.get(&(broker_name.to_owned(), broker_id))
    }

    /// The registered brokers of `set` that count as alive, with what they last reported (zeros
    /// for a broker not heard from yet during the grace period).
    pub fn candidates(&self, broker_name: &str, set: &BrokerSet, now_ms: u64) -> Vec<Candidate> {
        set.brokers
            .keys()
            .filter(|id| self.is_alive(broker_name, **id, now_ms))
            .map(|id| {
                let live = self.live(broker_name, *id);
                Candidate {
                    broker_id: *id,
                    epoch: live.map_or(0, |l| l.epoch),
                    max_offset: live.map_or(0, |l| l.max_offset),
                    election_priority: live.map_or(0, |l| l.election_priority),
                }
            })
            .collect()
    }

    /// Forgets brokers silent for far longer than their timeout, bounding the table; they count
    /// as dead either way.
    pub fn forget_long_silent(&mut self, now_ms: u64) {
        self.brokers.retain(|_, live| {
            let keep_until = live
                .last_heartbeat_ms
                .saturating_add(live.timeout_ms.saturating_mul(FORGET_AFTER_TIMEOUTS));
            now_ms <= keep_until
        });
    }
}

/// The most brokers whose heartbeats a leader tracks.
pub const BROKERS_MAX: usize = 10_000;

/// A broker silent for this many of its timeouts is dropped from the table.
const FORGET_AFTER_TIMEOUTS: u64 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn live(at: u64) -> BrokerLive {
        BrokerLive {
            broker_addr: "127.0.0.1:10911".to_owned(),
            last_heartbeat_ms: at,
            timeout_ms: 10_000,
            epoch: 2,
            max_offset: 100,
            confirm_offset: 90,
            election_priority: 0,
        }
    }

    #[test]
    fn a_broker_is_alive_until_its_timeout_passes() {
        let mut liveness = Liveness::default();
        liveness.start_leading(0, 10_000);
        assert!(liveness.record("a", 1, live(20_000)));
        assert!(liveness.is_alive("a", 1, 30_000));
        assert!(!liveness.is_alive("a", 1, 30_001));
        assert!(!liveness.is_alive("a", 2, 20_000));
    }

    #[test]
    fn everyone_is_alive_during_the_grace_period() {
        let mut liveness = Liveness::default();
        liveness.start_leading(1_000, 10_000);
        assert!(liveness.is_alive("a", 7, 10_999));
        assert!(!liveness.is_alive("a", 7, 11_000));
        liveness.stop_leading();
        assert!(!liveness.is_alive("a", 7, 1_000));
    }

    #[test]
    fn a_broker_heard_from_is_judged_by_its_own_timeout_from_the_leadership_start() {
        let mut liveness = Liveness::default();
        // Heard before this controller led: one of its own timeouts from the leadership start.
        liveness.record(
            "a",
            1,
            BrokerLive {
                timeout_ms: 3_000,
                ..live(0)
            },
        );
        liveness.start_leading(5_000, 10_000);
        assert!(liveness.is_alive("a", 1, 8_000));
        assert!(
            !liveness.is_alive("a", 1, 8_001),
            "not kept for the whole grace"
        );
        // Heard during the grace period: its own timeout from that heartbeat.
        liveness.record(
            "a",
            2,
            BrokerLive {
                timeout_ms: 3_000,
                ..live(6_000)
            },
        );
        assert!(liveness.is_alive("a", 2, 9_000));
        assert!(!liveness.is_alive("a", 2, 9_001));
        // Never heard from: the grace period.
        assert!(liveness.is_alive("a", 3, 14_999));
        assert!(!liveness.is_alive("a", 3, 15_000));
    }

    #[test]
    fn long_silent_brokers_are_forgotten() {
        let mut liveness = Liveness::default();
        liveness.record("a", 1, live(0));
        liveness.forget_long_silent(100_000);
        assert!(liveness.live("a", 1).is_some());
        liveness.forget_long_silent(100_001);
        assert!(liveness.live("a", 1).is_none());
    }
}
