//! Scenarios and the options of one run, all drawn from its seed (swarm style: each seed draws
//! its own topology, workload and fault rates), printed before anything happens.

use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A named fault scenario; each is one `#[madsim::test]` and one `--scenario` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// kill -9 of brokers during sends, SYNC_FLUSH: no acked message may be lost.
    BrokerKillRestartSyncFlush,
    /// The same under ASYNC_FLUSH: only a suffix of the unsynced log may go, only at a kill.
    BrokerKillRestartAsyncFlush,
    /// Crashes that tear the last unsynced write of every file.
    TornTailWrite,
    /// Broker↔name server links clogged past the route expiry, then healed.
    NamesrvPartition,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::BrokerKillRestartSyncFlush,
        Scenario::BrokerKillRestartAsyncFlush,
        Scenario::TornTailWrite,
        Scenario::NamesrvPartition,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::BrokerKillRestartSyncFlush => "broker_kill_restart_sync_flush",
            Scenario::BrokerKillRestartAsyncFlush => "broker_kill_restart_async_flush",
            Scenario::TornTailWrite => "torn_tail_write",
            Scenario::NamesrvPartition => "namesrv_partition",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A deliberately planted bug (compiled only into sim builds) to prove the checkers bite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Commit-log syncs report success without making anything durable, so SYNC_FLUSH sends
    /// are acknowledged before their bytes are on disk.
    AckBeforeSync,
}

impl Bug {
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeSync => "ack-before-sync",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        (name == "ack-before-sync").then_some(Bug::AckBeforeSync)
    }
}

/// Everything one run does, derived from `seed`.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub scenario: Scenario,
    pub bug: Option<Bug>,
    pub brokers: usize,
    pub queues: i32,
    pub producers: usize,
    pub messages_per_producer: u32,
    pub send_gap_ms: u64,
    pub body_len_max: usize,
    pub sync_flush: bool,
    /// Commit-log segment size: small, so runs cross segment boundaries.
    pub segment_size: u64,
    /// Broker kills during phase one.
    pub kills: u32,
    pub down_ms: (u64, u64),
    /// At each crash, tear the last unsynced write of each file keeping this many bytes
    /// (modulo the write's length); `None` drops unsynced writes whole.
    pub tear: Option<u64>,
    /// Phase one (faults on) lasts this long.
    pub fault_phase_ms: u64,
    /// How long a broker↔name server partition lasts.
    pub partition_ms: u64,
    /// After healing, every acked message must be consumed within this much simulated time.
    pub liveness_ms: u64,
}

impl Options {
    pub fn draw(seed: u64, scenario: Scenario, bug: Option<Bug>) -> Options {
        // Seed mixed with the scenario so different scenarios explore different draws.
        let mut rng = StdRng::seed_from_u64(seed ^ (scenario as u64).wrapping_mul(0x9E37));
        let kill_scenario = matches!(
            scenario,
            Scenario::BrokerKillRestartSyncFlush
                | Scenario::BrokerKillRestartAsyncFlush
                | Scenario::TornTailWrite
        );
        let brokers = rng.gen_range(1..=2);
        let messages_per_producer = rng.gen_range(40..=150);
        let fault_phase_ms = rng.gen_range(3_000..=12_000);
        Options {
            seed,
            scenario,
            bug,
            brokers,
            queues: rng.gen_range(1..=4),
            producers: rng.gen_range(1..=2),
            messages_per_producer,
            // Gaps drawn in 0..=2*mean keep the producers sending through the fault phase.
            send_gap_ms: (2 * fault_phase_ms / u64::from(messages_per_producer)).max(1),
            body_len_max: rng.gen_range(16..=600),
            sync_flush: match scenario {
                Scenario::BrokerKillRestartAsyncFlush => false,
                Scenario::BrokerKillRestartSyncFlush => true,
                _ => rng.gen_bool(0.5),
            },
            segment_size: [16 * 1024, 64 * 1024, 1 << 20][rng.gen_range(0..3)],
            kills: if kill_scenario {
                rng.gen_range(1..=3)
            } else {
                0
            },
            down_ms: {
                let lo = rng.gen_range(50..=500);
                (lo, lo + rng.gen_range(0..=2_500))
            },
            tear: (scenario == Scenario::TornTailWrite).then(|| rng.gen_range(1..=4096)),
            fault_phase_ms,
            partition_ms: if scenario == Scenario::NamesrvPartition {
                rng.gen_range(130_000..=200_000)
            } else {
                0
            },
            liveness_ms: 60_000,
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        let bug = self
            .bug
            .map(|b| format!(" --bug {}", b.name()))
            .unwrap_or_default();
        format!(
            "scripts/sim run --seed {} --scenario {}{bug} --trace",
            self.seed,
            self.scenario.name()
        )
    }
}

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed={} scenario={} bug={} brokers={} queues={} producers={} messages/producer={} \
             send_gap_ms={} body_len_max={} flush={} segment_size={} kills={} down_ms={}..{} \
             tear={:?} fault_phase_ms={} partition_ms={} liveness_ms={}",
            self.seed,
            self.scenario.name(),
            self.bug.map_or("none", Bug::name),
            self.brokers,
            self.queues,
            self.producers,
            self.messages_per_producer,
            self.send_gap_ms,
            self.body_len_max,
            if self.sync_flush {
                "SYNC_FLUSH"
            } else {
                "ASYNC_FLUSH"
            },
            self.segment_size,
            self.kills,
            self.down_ms.0,
            self.down_ms.1,
            self.tear,
            self.fault_phase_ms,
            self.partition_ms,
            self.liveness_ms,
        )
    }
}
