//! Times SQL92 filters: compiling a selector, and evaluating it per message the way the pull
//! path does (the stored record copied and decoded, then the selector run over its encoded
//! properties), for a few selectors from trivial to busy. Prints ns per message.
//!
//! A plain loop over `Instant` and `black_box` rather than a framework, like `frame.rs`: the
//! figures are for spotting regressions by eye. Run with
//! `cargo bench -p proto-core --bench sql92`; `SQL92_BENCH_ROUNDS=1` for a single round.

use core::net::SocketAddr;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto_core::filter::Sql92Filter;
use store_core::format::properties::Properties;
use store_core::format::record::{decode_with, CrcCheck, MessageRecord};

/// Messages per round: a realistic spread of property values.
const MESSAGES: usize = 1024;
/// Each figure is the best of this many rounds after one warm-up round.
const ROUNDS: usize = 25;

/// The selectors timed, from a single comparison to a busy one.
const SELECTORS: [(&str, &str); 5] = [
    ("one comparison", "price > 50"),
    ("tag equality", "TAGS = 'TagA'"),
    (
        "typical",
        "(TAGS = 'TagA' OR TAGS = 'TagB') AND price BETWEEN 10 AND 100 AND region IN ('eu', 'us')",
    ),
    (
        "string tests",
        "KEYS STARTSWITH 'order-' AND region NOT CONTAINS 'x' AND vip IS NOT NULL",
    ),
    ("missing property", "absent = 'x' OR other > 3"),
];

fn rounds() -> usize {
    std::env::var("SQL92_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

fn main() {
    let records = stored_records();
    let avg_len = records.iter().map(Bytes::len).sum::<usize>() / records.len();
    println!(
        "{MESSAGES} stored records, {avg_len} bytes on average, properties like a Java client's"
    );
    for (name, selector) in SELECTORS {
        let compile = best_of(1, || {
            let start = Instant::now();
            for _ in 0..MESSAGES {
                black_box(Sql92Filter::compile(black_box(selector)).expect("valid selector"));
            }
            start.elapsed()
        });
        let filter = Sql92Filter::compile(selector).expect("valid selector");
        let matched = records
            .iter()
            .filter(|r| matches_record(&filter, r))
            .count();
        let props: Vec<Bytes> = records.iter().map(|r| decode(r).properties).collect();
        let eval = best_of(1, || {
            let start = Instant::now();
            for p in &props {
                black_box(filter.matches_encoded(black_box(p)));
            }
            start.elapsed()
        });
        let pull_path = best_of(1, || {
            let start = Instant::now();
            for r in &records {
                black_box(matches_record(&filter, black_box(r)));
            }
            start.elapsed()
        });
        println!("{name} ({matched}/{MESSAGES} match): {selector}");
        report("compile", compile);
        report("evaluate", eval);
        report("record+evaluate", pull_path);
    }
}

/// What the pull filter does per record: copy, decode without CRC, evaluate.
fn matches_record(filter: &Sql92Filter, record: &[u8]) -> bool {
    match decode_with(&Bytes::copy_from_slice(record), CrcCheck::Skip) {
        Ok((record, _)) => filter.matches_encoded(&record.properties),
        Err(_) => true,
    }
}

fn decode(record: &Bytes) -> MessageRecord {
    decode_with(record, CrcCheck::Skip)
        .expect("the bench encodes valid records")
        .0
}

/// Records as a Java producer's messages are stored: KEYS, UNIQ_KEY, WAIT, TAGS plus user
/// properties, a 256-byte body.
fn stored_records() -> Vec<Bytes> {
    let host: SocketAddr = "10.0.0.1:10911".parse().expect("literal address");
    (0..MESSAGES)
        .map(|i| {
            let mut props = Properties::new();
            props.insert("KEYS", format!("order-{i}"));
            props.insert("UNIQ_KEY", format!("7F0000014C5C18B4AAC27E3F8A8C{i:04X}"));
            props.insert("WAIT", "true");
            props.insert("TAGS", ["TagA", "TagB", "TagC"][i % 3]);
            props.insert("price", (i % 150).to_string());
            props.insert("region", ["eu", "us", "apac"][i % 3]);
            if i % 4 == 0 {
                props.insert("vip", "1");
            }
            let record = MessageRecord {
                queue_id: 0,
                flag: 0,
                queue_offset: i as i64,
                physical_offset: 0,
                sys_flag: 0,
                born_timestamp: 1_700_000_000_000,
                born_host: host,
                store_timestamp: 1_700_000_000_001,
                store_host: host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: Bytes::from(vec![b'x'; 256]),
                topic: Bytes::from_static(b"BenchTopic"),
                properties: Bytes::from(props.encode()),
            };
            let mut out = Vec::new();
            record.encode_into(&mut out);
            Bytes::from(out)
        })
        .collect()
}

fn best_of(per_round: usize, mut round: impl FnMut() -> Duration) -> Duration {
    round();
    let best = (0..rounds()).map(|_| round()).min().unwrap_or_default();
    best / (MESSAGES * per_round) as u32
}

fn report(what: &str, per_message: Duration) {
    let ns = per_message.as_secs_f64() * 1e9;
    println!("  {what:<16} {ns:>8.1} ns/message");
}
