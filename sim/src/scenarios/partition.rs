//! Partitions: broker↔name server (route expiry and re-registration), client↔broker (producers
//! fail over to the other broker), swizzle-clogging of random links, and the name server
//! killed and restarted empty while clients run.

use madsim::task::NodeId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::Ctx;
use crate::cluster::{broker_name, clog_link, sleep_ms};
use crate::history::TOPIC;
use crate::workload::{route, Connections};

/// One broker's links to the name server clogged past the 120 s route expiry, then healed.
pub async fn namesrv_partition(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let (opts, cluster, history) = (ctx.opts, ctx.cluster, ctx.history);
    sleep_ms(rng.gen_range(0..opts.fault_phase_ms)).await;
    let b = rng.gen_range(0..opts.brokers);
    cluster.clog_namesrv_link(b, true);
    // Expiry: 120 s without a registration, found by the 5 s scan.
    let expired_by = 130_000;
    sleep_ms(expired_by).await;
    let listed = ctx
        .checker
        .spawn(async {
            let mut conns = Connections::default();
            route(&mut conns, "TBW102").await
        })
        .await;
    match listed {
        Ok(Ok(Some(brokers))) if brokers.contains(&b) => history.fail_liveness(format!(
            "broker {b} still routed {expired_by} ms into its partition from the name server"
        )),
        Ok(r) => ctx.trace.event(format!("route during partition: {r:?}")),
        Err(e) => history.fail_liveness(format!("checker task failed: {e}")),
    }
    sleep_ms(opts.partition_ms.saturating_sub(expired_by)).await;
    cluster.clog_namesrv_link(b, false);
}

/// Rounds in which every client host is cut off (both directions) from one broker. When the
/// topic's route lists another broker, producers that keep sending must get acks from it.
pub async fn client_partition(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let (opts, cluster, history) = (ctx.opts, ctx.cluster, ctx.history);
    let slot = opts.fault_phase_ms / u64::from(opts.rounds.max(1));
    for _ in 0..opts.rounds {
        sleep_ms(rng.gen_range(0..slot.max(1))).await;
        let b = rng.gen_range(0..opts.brokers);
        let Some(broker) = cluster.brokers.get(b) else {
            return;
        };
        // Failover needs the topic on another broker: auto-creation puts it only where the
        // first sends went, and RocketMQ producers then keep to its route.
        let routed = ctx
            .checker
            .spawn(async {
                let mut conns = Connections::default();
                route(&mut conns, TOPIC).await
            })
            .await;
        let elsewhere = matches!(&routed, Ok(Ok(Some(r))) if r.iter().any(|&o| o != b));
        ctx.trace.event(format!(
            "CLOG clients<->{} (topic elsewhere: {elsewhere})",
            broker_name(b)
        ));
        for &c in &ctx.clients {
            clog_link(c, broker.id, true);
            clog_link(broker.id, c, true);
        }
        let before = history.counts();
        sleep_ms(opts.partition_ms).await;
        let after = history.counts();
        for &c in &ctx.clients {
            clog_link(c, broker.id, false);
            clog_link(broker.id, c, false);
        }
        ctx.trace
            .event(format!("UNCLOG clients<->{}", broker_name(b)));
        // Each send to the cut-off broker costs a 3 s timeout; a dozen sends leave room for
        // several to the other one.
        let others: u64 = (0..opts.brokers)
            .filter(|&o| o != b)
            .map(|o| after.acked_by_broker[o] - before.acked_by_broker[o])
            .sum();
        let sent = after.sent - before.sent;
        if elsewhere && sent >= 12 && others == 0 {
            history.fail_liveness(format!(
                "no failover: {sent} sends during a {} ms partition from {}, none acked by another broker",
                opts.partition_ms,
                broker_name(b)
            ));
        }
    }
}

/// Swizzle-clogging: each round clogs a random subset of directed links between all hosts
/// one by one, holds, then unclogs them one by one in a different order.
pub async fn swizzle_clog(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let (opts, cluster) = (ctx.opts, ctx.cluster);
    let mut hosts: Vec<(NodeId, String)> = vec![(cluster.namesrv, "namesrv".to_string())];
    hosts.extend(
        cluster
            .brokers
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id, broker_name(i))),
    );
    hosts.extend(
        ctx.clients
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, format!("client{i}"))),
    );
    let mut links: Vec<(usize, usize)> = (0..hosts.len())
        .flat_map(|a| (0..hosts.len()).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .collect();
    let slot = opts.fault_phase_ms / u64::from(opts.rounds.max(1));
    for _ in 0..opts.rounds {
        sleep_ms(rng.gen_range(0..slot.max(1))).await;
        links.shuffle(rng);
        let n = rng.gen_range(1..=links.len().min(8));
        let mut chosen: Vec<(usize, usize)> = links.iter().take(n).copied().collect();
        for &(a, b) in &chosen {
            clog_link(hosts[a].0, hosts[b].0, true);
            ctx.trace
                .event(format!("CLOG {}->{}", hosts[a].1, hosts[b].1));
            sleep_ms(rng.gen_range(0..=opts.partition_ms / 4)).await;
        }
        sleep_ms(opts.partition_ms).await;
        // Rotate, so links come back in another order than they went.
        let shift = rng.gen_range(0..chosen.len());
        chosen.rotate_left(shift);
        for &(a, b) in &chosen {
            clog_link(hosts[a].0, hosts[b].0, false);
            ctx.trace
                .event(format!("UNCLOG {}->{}", hosts[a].1, hosts[b].1));
            sleep_ms(rng.gen_range(0..=opts.partition_ms / 4)).await;
        }
    }
}

/// The name server killed and restarted empty, `rounds` times, while clients run: producers
/// keep their cached routes, brokers re-register within their 30 s period.
pub async fn namesrv_restart(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let opts = ctx.opts;
    let slot = opts.fault_phase_ms / u64::from(opts.rounds.max(1));
    for _ in 0..opts.rounds {
        sleep_ms(rng.gen_range(0..slot.max(1))).await;
        ctx.cluster.kill_namesrv();
        sleep_ms(rng.gen_range(opts.down_ms.0..=opts.down_ms.1)).await;
        ctx.cluster.restart_namesrv();
    }
}
