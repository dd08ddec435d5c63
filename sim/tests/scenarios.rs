//! The named scenarios, one `#[madsim::test]` each. Seeds come from `MADSIM_TEST_SEED` and
//! `MADSIM_TEST_NUM` (scripts/sim test sets a bounded range); a failure prints its violations
//! and the exact replay command.
#![cfg(madsim)]

use sim::options::{Options, Scenario};

async fn check(scenario: Scenario) {
    let seed = madsim::runtime::Handle::current().seed();
    let outcome = sim::run::run(Options::draw(seed, scenario, None), false).await;
    println!("{}", outcome.summary());
    assert!(outcome.passed(), "{}", outcome.failure_report());
}

#[madsim::test]
async fn broker_kill_restart_sync_flush() {
    check(Scenario::BrokerKillRestartSyncFlush).await;
}

#[madsim::test]
async fn broker_kill_restart_async_flush() {
    check(Scenario::BrokerKillRestartAsyncFlush).await;
}

#[madsim::test]
async fn torn_tail_write() {
    check(Scenario::TornTailWrite).await;
}

#[madsim::test]
async fn namesrv_partition() {
    check(Scenario::NamesrvPartition).await;
}
