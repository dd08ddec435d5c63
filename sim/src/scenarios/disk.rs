//! Disk faults: a broker's disk fills, then frees; commit-log syncs that stall.
//!
//! Disk full: the disk's capacity is cut to what is used (no room for the next segment) or to
//! a use of 91–97 % (over `diskSpaceWarningLevelRatio`, 90). Within one 10 s disk check the broker
//! must refuse sends with SERVICE_NOT_AVAILABLE, as RocketMQ does; nothing acked may be lost;
//! once the capacity is back, sends must succeed again within the next checks. Forced
//! cleaning (deleting unexpired segments above 85 %) is off in this scenario: it is
//! RocketMQ's designed loss of acked data, not a fault of the full disk.

use bytes::Bytes;
use proto_core::ResponseCode;
use rand::rngs::StdRng;
use rand::Rng;

use super::Ctx;
use crate::cluster::{broker_name, sleep_ms};
use crate::options::DiskFull;
use crate::workload::{send, Connections, Sent};

/// How long after filling (or freeing) the store must have noticed: one 10 s disk check and
/// some slack.
const NOTICE_MS: u64 = 12_000;

pub async fn disk_full(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let (opts, history) = (ctx.opts, ctx.history);
    let Some(mode) = opts.disk_full else { return };
    sleep_ms(rng.gen_range(0..opts.fault_phase_ms / 2)).await;
    let b = rng.gen_range(0..opts.brokers);
    let Some(node) = ctx.cluster.brokers.get(b) else {
        return;
    };
    let mem = &node.disk.mem;
    let used = mem.used_bytes();
    let capacity = match mode {
        DiskFull::Ratio(percent) => used * 100 / u64::from(percent),
        DiskFull::NoSpace => used,
    };
    mem.set_capacity(Some(capacity));
    ctx.trace.event(format!(
        "DISK FULL {}: capacity {capacity} bytes, {used} used ({mode:?})",
        broker_name(b)
    ));
    sleep_ms(NOTICE_MS).await;
    match probe(ctx, b, 0).await {
        Sent::Refused(code) if code == ResponseCode::ServiceNotAvailable.value() => {}
        Sent::Refused(code) => history.violation(format!(
            "{} refused a send on a full disk with code {code}, not SERVICE_NOT_AVAILABLE",
            broker_name(b)
        )),
        Sent::Acked => history.violation(format!(
            "{} still accepted sends {NOTICE_MS} ms after its disk filled",
            broker_name(b)
        )),
        Sent::Unknown => ctx.trace.event("probe on the full disk: no answer"),
    }
    sleep_ms(opts.partition_ms.saturating_sub(NOTICE_MS)).await;
    mem.set_capacity(None);
    ctx.trace.event(format!("DISK FREED {}", broker_name(b)));
    for n in 1.. {
        sleep_ms(1_000).await;
        if let Sent::Acked = probe(ctx, b, n).await {
            break;
        }
        if n * 1_000 >= 2 * NOTICE_MS {
            history.fail_liveness(format!(
                "{} still refused sends {} ms after its disk was freed",
                broker_name(b),
                n * 1_000
            ));
            break;
        }
    }
}

/// One send to broker `b` from the checker host, recorded like any other.
async fn probe(ctx: &Ctx<'_>, b: usize, n: u64) -> Sent {
    let opts = ctx.opts.clone();
    let history = ctx.history.clone();
    let sent = ctx
        .checker
        .spawn(async move {
            let mut conns = Connections::default();
            let id = format!("probe{b}-{n}");
            let body = Bytes::from(format!("{id}|disk probe")).to_vec();
            send(&mut conns, &opts, &history, b, 0, &id, body).await
        })
        .await;
    sent.unwrap_or(Sent::Unknown)
}

/// Syncs stall (see `disk.rs`) during phase one only.
pub async fn slow_disk(ctx: &Ctx<'_>) {
    sleep_ms(ctx.opts.fault_phase_ms).await;
    for b in &ctx.cluster.brokers {
        b.disk.set_slow(false);
    }
    ctx.trace.event("slow syncs off");
}
