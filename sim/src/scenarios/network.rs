//! Message delay and reordering: rounds in which every link's latency is drawn from a wide
//! range and packets are lost. madsim keeps each TCP connection in order (a lost packet is
//! retried with backoff, i.e. more delay), so reordering happens between connections: a
//! producer's send against a consumer's pull, a response against a heartbeat, one client's
//! request against another's. Latency spikes past the 3 s client timeout turn sends into
//! unknowns that may still be stored later.

use std::time::Duration;

use madsim::net::NetSim;
use rand::rngs::StdRng;
use rand::Rng;

use super::Ctx;
use crate::cluster::sleep_ms;

/// madsim's default latency range, restored at the heal.
const CALM: std::ops::Range<Duration> = Duration::from_millis(1)..Duration::from_millis(10);

pub async fn link_delay(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let opts = ctx.opts;
    let Some((max_ms, loss)) = opts.link_delay else {
        return;
    };
    let slot = opts.fault_phase_ms / u64::from(opts.rounds.max(1));
    let net = NetSim::current();
    for _ in 0..opts.rounds {
        let calm = rng.gen_range(0..slot.max(2) / 2);
        sleep_ms(calm).await;
        let max = rng.gen_range(10..=max_ms.max(10));
        net.update_config(|c| {
            c.send_latency = Duration::from_millis(1)..Duration::from_millis(max);
            c.packet_loss_rate = loss;
        });
        ctx.trace
            .event(format!("LINKS SLOW latency 1..{max} ms, loss {loss:.3}"));
        sleep_ms(slot.saturating_sub(calm)).await;
        net.update_config(|c| {
            c.send_latency = CALM;
            c.packet_loss_rate = 0.0;
        });
        ctx.trace.event("LINKS CALM");
    }
}
