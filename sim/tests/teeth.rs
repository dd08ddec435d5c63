//! Tests of the simulator itself: the same seed gives the same trace hash, and a planted bug
//! (SYNC_FLUSH acked before the commit log is durable) is caught within 50 seeds.
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

#[test]
fn same_seed_same_trace_hash() {
    for scenario in Scenario::ALL {
        let seed = 7;
        let a = run_seed(seed, scenario, None);
        let b = run_seed(seed, scenario, None);
        assert!(a.events > 20, "{}", a.summary());
        assert_eq!(a.trace_hash, b.trace_hash, "{} diverged", scenario.name());
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
