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
    /// Kills that also flip one byte near the commit log's durable end (or just past it).
    CorruptTail,
    /// A broker's disk fills (over `diskMaxUsedSpaceRatio`, or no room for a segment), then
    /// frees.
    DiskFull,
    /// Commit-log syncs that stall the broker now and then.
    SlowDisk,
    /// Link latency spikes and packet loss, which delay and reorder messages across
    /// connections.
    LinkDelay,
    /// Clients cut off from one broker; producers fail over to the other.
    ClientPartition,
    /// Swizzle-clogging: random links clogged one by one, unclogged in another order.
    SwizzleClog,
    /// The name server killed and restarted (empty) while clients run.
    NamesrvRestart,
    /// Consumer group members join, crash and leave while the group rebalances.
    ConsumerChurn,
    /// Delay-level and timer messages sent while brokers are killed and restarted
    /// (SYNC_FLUSH): none lost, none delivered before its time.
    DelayTimerCrash,
    /// Transactions committed, rolled back or left to the back-check while brokers and the
    /// producer are killed and restarted (SYNC_FLUSH): no double commit, nothing rolled back
    /// visible, every committed ack visible once.
    TransactionCrash,
    /// Every message handed back (CONSUMER_SEND_MSG_BACK) until it reaches the DLQ, while
    /// brokers and the consumer are killed and restarted (SYNC_FLUSH): none lost on the way.
    RetryDlqCrash,
    /// A master and two slaves (default HA, SYNC_MASTER): the master killed during sends;
    /// every acknowledged message must be on a surviving slave, each slave's log a prefix of
    /// the master's.
    HaMasterKill,
    /// Controller mode (3 controllers, 3 brokers, SYNC sends acked by the whole sync state
    /// set, minInSyncReplicas 2): the master killed during sends; a new master from the sync
    /// state set takes over; nothing acknowledged is lost.
    CtrlMasterKill,
    /// Controller mode: the master cut off from the controller majority and/or its slaves; no
    /// two masters acknowledge in one epoch.
    CtrlPartition,
    /// Controller mode: the controller leader killed (sometimes with the broker master).
    CtrlLeaderLoss,
    /// Controller mode: links among brokers and controllers clogged and unclogged repeatedly.
    CtrlFlapping,
    /// Controller mode: the master isolated from controllers and slaves while clients still
    /// reach it (an unacknowledged tail), killed, and restarted after a successor took over:
    /// it must truncate the tail and follow.
    CtrlOldMasterReturns,
}

impl Scenario {
    pub const ALL: [Scenario; 21] = [
        Scenario::BrokerKillRestartSyncFlush,
        Scenario::BrokerKillRestartAsyncFlush,
        Scenario::TornTailWrite,
        Scenario::NamesrvPartition,
        Scenario::CorruptTail,
        Scenario::DiskFull,
        Scenario::SlowDisk,
        Scenario::LinkDelay,
        Scenario::ClientPartition,
        Scenario::SwizzleClog,
        Scenario::NamesrvRestart,
        Scenario::ConsumerChurn,
        Scenario::DelayTimerCrash,
        Scenario::TransactionCrash,
        Scenario::RetryDlqCrash,
        Scenario::HaMasterKill,
        Scenario::CtrlMasterKill,
        Scenario::CtrlPartition,
        Scenario::CtrlLeaderLoss,
        Scenario::CtrlFlapping,
        Scenario::CtrlOldMasterReturns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::BrokerKillRestartSyncFlush => "broker_kill_restart_sync_flush",
            Scenario::BrokerKillRestartAsyncFlush => "broker_kill_restart_async_flush",
            Scenario::TornTailWrite => "torn_tail_write",
            Scenario::NamesrvPartition => "namesrv_partition",
            Scenario::CorruptTail => "corrupt_tail",
            Scenario::DiskFull => "disk_full",
            Scenario::SlowDisk => "slow_disk",
            Scenario::LinkDelay => "link_delay",
            Scenario::ClientPartition => "client_partition",
            Scenario::SwizzleClog => "swizzle_clog",
            Scenario::NamesrvRestart => "namesrv_restart",
            Scenario::ConsumerChurn => "consumer_churn",
            Scenario::DelayTimerCrash => "delay_timer_crash",
            Scenario::TransactionCrash => "transaction_crash",
            Scenario::RetryDlqCrash => "retry_dlq_crash",
            Scenario::HaMasterKill => "ha_master_kill",
            Scenario::CtrlMasterKill => "ctrl_master_kill",
            Scenario::CtrlPartition => "ctrl_partition",
            Scenario::CtrlLeaderLoss => "ctrl_leader_loss",
            Scenario::CtrlFlapping => "ctrl_flapping",
            Scenario::CtrlOldMasterReturns => "ctrl_old_master_returns",
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
    /// The replicated set's master runs as ASYNC_MASTER where the run expects SYNC_MASTER: it
    /// acknowledges sends before any slave has them.
    AckBeforeReplica,
}

impl Bug {
    pub fn name(self) -> &'static str {
        match self {
            Bug::AckBeforeSync => "ack-before-sync",
            Bug::AckBeforeReplica => "ack-before-replica",
        }
    }

    pub fn from_name(name: &str) -> Option<Bug> {
        [Bug::AckBeforeSync, Bug::AckBeforeReplica]
            .into_iter()
            .find(|b| b.name() == name)
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
    /// `corrupt_tail`: at each kill, flip one byte near the commit log's durable end.
    pub corrupt: bool,
    /// `disk_full`: how the disk fills and how long it stays full.
    pub disk_full: Option<DiskFull>,
    /// `slow_disk`: each commit-log sync stalls with this probability, up to this long.
    pub slow_sync: Option<(f64, u64)>,
    /// `link_delay`: latency spikes up to this many ms, with this packet loss (TCP retries a
    /// lost packet, so loss is more delay).
    pub link_delay: Option<(u64, f64)>,
    /// `client_partition`, `swizzle_clog`, `namesrv_restart`: rounds of faults.
    pub rounds: u32,
    /// `consumer_churn`: members at the start and membership changes during phase one.
    pub churn: Option<(usize, u32)>,
    /// HA scenarios: brokers of the one replicated set (0 elsewhere).
    pub replicas: usize,
    /// HA scenarios: `inSyncReplicas` (default HA) or `minInSyncReplicas` (controller mode),
    /// master included.
    pub in_sync_replicas: u32,
    /// Controller-mode scenarios: controllers in the group (0 elsewhere).
    pub controllers: usize,
}

/// How a `disk_full` run fills the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFull {
    /// Capacity set so use sits at this percent: above `diskSpaceWarningLevelRatio` (90), so
    /// the store refuses writes (forced cleaning is off in `disk_full` runs).
    Ratio(u32),
    /// Capacity set to what is used: the next segment cannot be created. (Forced cleaning,
    /// which would delete unexpired segments above 85 %, is off in `disk_full` runs.)
    NoSpace,
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
        let brokers = match scenario {
            // Failover needs somewhere to go.
            Scenario::ClientPartition | Scenario::DiskFull => 2,
            _ => rng.gen_range(1..=2),
        };
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
            corrupt: false,
            disk_full: None,
            slow_sync: None,
            link_delay: None,
            rounds: 0,
            churn: None,
            replicas: 0,
            in_sync_replicas: 1,
            controllers: 0,
        }
        .draw_faults(&mut rng)
    }

    /// The fault options of the newer scenarios, drawn after the older ones so the older
    /// scenarios keep the draws (and traces) of their seeds.
    fn draw_faults(mut self, rng: &mut StdRng) -> Options {
        match self.scenario {
            Scenario::CorruptTail => {
                self.corrupt = true;
                self.kills = rng.gen_range(1..=3);
                self.tear = rng.gen_bool(0.5).then(|| rng.gen_range(1..=4096));
            }
            Scenario::DiskFull => {
                self.disk_full = Some(if rng.gen_bool(0.5) {
                    DiskFull::Ratio(rng.gen_range(91..=97))
                } else {
                    DiskFull::NoSpace
                });
                // Long enough for the 10 s disk check to notice and refuse.
                self.partition_ms = rng.gen_range(12_000..=30_000);
            }
            Scenario::SlowDisk => {
                // Mostly SYNC_FLUSH: ASYNC_FLUSH syncs only every few pages, so it would rarely stall.
                self.sync_flush = rng.gen_bool(0.8);
                self.slow_sync = Some((rng.gen_range(0.02..0.3), rng.gen_range(500..=8_000)));
            }
            Scenario::LinkDelay => {
                self.link_delay = Some((rng.gen_range(200..=5_000), rng.gen_range(0.0..0.05)));
                self.rounds = rng.gen_range(1..=4);
            }
            Scenario::ClientPartition => {
                self.rounds = rng.gen_range(1..=3);
                self.partition_ms = rng.gen_range(5_000..=20_000);
            }
            Scenario::SwizzleClog => {
                self.rounds = rng.gen_range(1..=3);
                self.partition_ms = rng.gen_range(2_000..=10_000);
            }
            Scenario::NamesrvRestart => {
                self.rounds = rng.gen_range(1..=3);
                self.down_ms = (rng.gen_range(100..=5_000), rng.gen_range(5_000..=40_000));
            }
            Scenario::ConsumerChurn => {
                self.churn = Some((rng.gen_range(1..=3), rng.gen_range(3..=8)));
                // Members that crash are expired by the broker only after 120 s without a
                // heartbeat (or sooner when their connections close): wait that out.
                self.liveness_ms = 180_000;
            }
            Scenario::DelayTimerCrash | Scenario::TransactionCrash | Scenario::RetryDlqCrash => {
                self.sync_flush = true;
                self.kills = rng.gen_range(1..=3);
            }
            Scenario::HaMasterKill => {
                self.brokers = 1;
                self.replicas = 3;
                self.kills = 1;
                // 1: one slave must ack (RocketMQ 4's SYNC_MASTER); 3: both.
                self.in_sync_replicas = rng.gen_range(1..=3);
                self.fault_phase_ms = rng.gen_range(1_000..=6_000);
                self.send_gap_ms =
                    (2 * self.fault_phase_ms / u64::from(self.messages_per_producer)).max(1);
            }
            Scenario::CtrlMasterKill
            | Scenario::CtrlPartition
            | Scenario::CtrlLeaderLoss
            | Scenario::CtrlFlapping
            | Scenario::CtrlOldMasterReturns => {
                self.brokers = 1;
                self.replicas = 3;
                self.controllers = 3;
                self.in_sync_replicas = 2;
                self.kills = 1;
                self.fault_phase_ms = rng.gen_range(3_000..=8_000);
                self.send_gap_ms = rng.gen_range(20..=150);
                self.down_ms = (rng.gen_range(2_000..=8_000), rng.gen_range(8_000..=25_000));
                self.partition_ms = match self.scenario {
                    Scenario::CtrlFlapping => rng.gen_range(500..=5_000),
                    _ => rng.gen_range(5_000..=30_000),
                };
                self.rounds = rng.gen_range(3..=8);
                self.liveness_ms = 60_000;
            }
            _ => {}
        }
        self
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
             tear={:?} fault_phase_ms={} partition_ms={} liveness_ms={} corrupt={} \
             disk_full={:?} slow_sync={:?} link_delay={:?} rounds={} churn={:?} replicas={} \
             in_sync_replicas={} controllers={}",
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
            self.corrupt,
            self.disk_full,
            self.slow_sync,
            self.link_delay,
            self.rounds,
            self.churn,
            self.replicas,
            self.in_sync_replicas,
            self.controllers,
        )
    }
}
