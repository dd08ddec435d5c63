//! `node bench` against a real `node standalone`: a bounded produce run creates its topic
//! through TBW102 and reports every message acknowledged; a consume run then pulls all of them
//! back. Both summaries are read from their one JSON line. Never asserts on speed.

mod support;

use std::process::Command;

use support::Standalone;

/// Runs `node bench <args>` and returns its last stdout line (the JSON summary).
fn bench(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_node"))
        .arg("bench")
        .args(args)
        .output()
        .expect("node bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "node bench {args:?} failed: {stdout}");
    stdout
        .lines()
        .last()
        .expect("a summary line")
        .trim()
        .to_string()
}

/// The number after `"key":` in a flat JSON object.
fn number(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    let rest = &json[at..];
    let end = rest.find([',', '}']).expect("value ends");
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {json}: {e}"))
}

#[test]
fn produce_then_consume_reports_every_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Standalone::start(dir.path(), &[]);
    let ns = node.namesrv.clone();

    let produced = bench(&[
        "produce",
        "-n",
        &ns,
        "-t",
        "BenchTopic",
        "--count",
        "2000",
        "--threads",
        "4",
        "--tags",
        "--keys",
        "--json",
    ]);
    assert!(
        produced.starts_with('{') && produced.ends_with('}'),
        "{produced}"
    );
    assert_eq!(number(&produced, "messages"), 2000.0, "{produced}");
    assert_eq!(number(&produced, "errors"), 0.0, "{produced}");
    assert!(number(&produced, "msgs_per_sec") > 0.0);
    assert!(number(&produced, "mb_per_sec") > 0.0);
    let (p50, p90, p99, p999, max) = (
        number(&produced, "p50_ms"),
        number(&produced, "p90_ms"),
        number(&produced, "p99_ms"),
        number(&produced, "p999_ms"),
        number(&produced, "max_ms"),
    );
    assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max);

    // A batch run adds 640 more, as 10 SEND_BATCH_MESSAGE requests of 64.
    let batched = bench(&[
        "produce",
        "-n",
        &ns,
        "-t",
        "BenchTopic",
        "--count",
        "640",
        "--batch",
        "64",
        "--threads",
        "2",
        "--json",
    ]);
    assert_eq!(number(&batched, "messages"), 640.0, "{batched}");
    assert_eq!(number(&batched, "samples"), 10.0, "{batched}");

    let consumed = bench(&[
        "consume",
        "-n",
        &ns,
        "-t",
        "BenchTopic",
        "-g",
        "bench_test_group",
        "--count",
        "2640",
        "--duration",
        "60s",
        "--json",
    ]);
    assert!(number(&consumed, "messages") >= 2640.0, "{consumed}");
    assert_eq!(
        number(&consumed, "bytes"),
        number(&consumed, "messages") * 128.0
    );
    assert_eq!(number(&consumed, "errors"), 0.0, "{consumed}");
    node.stop();
}

/// `bench e2e` on a topic that does not exist yet creates it with one untimed message before
/// the consumer takes its start offsets, so the consumer is in place before the timed sends
/// and counts exactly those (it used to start at offset 0 whenever it found the new route,
/// and the messages sent meanwhile waited for it). A consume from the start then finds the
/// timed messages plus that first one.
#[test]
fn e2e_creates_a_new_topic_before_timing_and_consumes_only_the_timed_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Standalone::start(dir.path(), &[]);
    let ns = node.namesrv.clone();

    let e2e = bench(&[
        "e2e",
        "-n",
        &ns,
        "-t",
        "E2eNew",
        "--count",
        "300",
        "--threads",
        "2",
        "--json",
    ]);
    assert_eq!(number(&e2e, "messages"), 300.0, "{e2e}");
    assert_eq!(number(&e2e, "errors"), 0.0, "{e2e}");
    let sent = &e2e[e2e.find("\"send\":").expect("send summary")..];
    assert_eq!(number(sent, "messages"), 300.0, "{e2e}");

    let all = bench(&[
        "consume",
        "-n",
        &ns,
        "-t",
        "E2eNew",
        "-g",
        "bench_e2e_check",
        "--count",
        "301",
        "--duration",
        "10s",
        "--json",
    ]);
    assert_eq!(number(&all, "messages"), 301.0, "{all}");
    node.stop();
}
