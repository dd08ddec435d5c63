//! Tests of the simulator itself: the same seed gives the same trace hash, and planted bugs
//! (SYNC_FLUSH acked before the commit log is durable; a SYNC_MASTER acking before its slaves
//! have the message) are caught within 50 seeds.
#![cfg(madsim)]

use sim::options::{Bug, Options, Scenario};
use sim::run::{run, Outcome};

/// One run on a fresh thread: std's per-thread hash keys (which client ids draw from) are then
/// seeded inside the simulation, as they are in a fresh process.
fn run_seed(seed: u64, scenario: Scenario, bug: Option<Bug>) -> Outcome {
    std::thread::spawn(move || {
        let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        rt.block_on(run(Options::draw(seed, scenario, bug), false))
    })
    .join()
    .expect("a simulation run panicked")
}

/// Scenarios running the HA adapter (default HA or controller mode).
fn replicated(scenario: Scenario) -> bool {
    sim::scenarios::ha::owns(scenario) || sim::scenarios::controller::owns(scenario)
}

#[test]
fn same_seed_same_trace_hash() {
    // Replication scenarios replay across processes only (see the test below).
    for scenario in Scenario::ALL.into_iter().filter(|s| !replicated(*s)) {
        let seed = 7;
        let a = run_seed(seed, scenario, None);
        let b = run_seed(seed, scenario, None);
        assert!(a.events > 20, "{}", a.summary());
        assert_eq!(a.trace_hash, b.trace_hash, "{} diverged", scenario.name());
    }
}

/// Replication scenarios, each run twice by the replay CLI in its own process, print the same
/// trace hash: the replay command a failing seed prints must reproduce it. (`scripts/sim test`
/// also runs each one twice in one process under `MADSIM_TEST_CHECK_DETERMINISM`.)
#[test]
fn replication_scenarios_replay_across_processes() {
    let hash = |scenario: Scenario| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sim"))
            .args(["--seed", "7", "--scenario", scenario.name(), "--quiet"])
            .output()
            .expect("the sim binary runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with("trace hash: "))
            .map(str::to_string);
        (line, text)
    };
    for scenario in Scenario::ALL.into_iter().filter(|s| replicated(*s)) {
        let (a, text) = hash(scenario);
        let (b, _) = hash(scenario);
        assert!(a.is_some(), "{}: no trace hash in\n{text}", scenario.name());
        assert_eq!(a, b, "{} diverged across processes", scenario.name());
    }
}

#[test]
fn planted_ack_before_sync_is_caught() {
    for seed in 1..=50 {
        let outcome = run_seed(
            seed,
            Scenario::BrokerKillRestartSyncFlush,
            Some(Bug::AckBeforeSync),
        );
        if !outcome.passed() {
            println!("caught at seed {seed}:\n{}", outcome.failure_report());
            return;
        }
    }
    panic!("the planted ack-before-sync bug survived 50 seeds: the checkers have no teeth");
}

#[test]
fn planted_ack_before_replica_is_caught() {
    for seed in 1..=50 {
        let outcome = run_seed(seed, Scenario::HaMasterKill, Some(Bug::AckBeforeReplica));
        if !outcome.passed() {
            println!("caught at seed {seed}:\n{}", outcome.failure_report());
            return;
        }
    }
    panic!("the planted ack-before-replica bug survived 50 seeds: the HA checkers have no teeth");
}
