//! `node bench` against a real `node standalone`: a bounded produce run creates its topic
//! through TBW102 and reports every message acknowledged; a consume run then pulls all of them
//! back. Both summaries are read from their one JSON line. The default sync mode shares one
//! connection per broker among the senders: its runs must store every message exactly once and
//! count refusals and a dying broker as errors. Never asserts on speed.

mod support;

use std::process::Command;

use support::Standalone;

/// Runs `node bench <args>` and returns its last stdout line (the JSON summary).
fn bench(args: &[&str]) -> String {
    let out = bench_command(args).output().expect("node bench runs");
    summary_line(args, out)
}

/// `node bench <args>`, not yet started.
fn bench_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_node"));
    cmd.arg("bench").args(args);
    cmd
}

/// The last stdout line of a finished `node bench <args>`, which must have succeeded.
fn summary_line(args: &[&str], out: std::process::Output) -> String {
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

/// The messages of `topic` a fresh consumer group finds in `window` (everything stored, since
/// the run stops only when the window ends).
fn stored(ns: &str, topic: &str, group: &str, window: &str) -> f64 {
    let consumed = bench(&[
        "consume",
        "-n",
        ns,
        "-t",
        topic,
        "-g",
        group,
        "--duration",
        window,
        "--json",
    ]);
    assert_eq!(number(&consumed, "errors"), 0.0, "{consumed}");
    number(&consumed, "messages")
}

/// 16 sync senders on one connection (the default) and 5 on two: every answer reaches its
/// own sender (a mismatched one would leave a sender waiting into a timeout error), every
/// claimed message is sent once (the broker stores exactly the count), with templates (tags)
/// and with freshly encoded requests (keys), single and batched.
#[test]
fn senders_sharing_a_connection_store_every_message_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Standalone::start(dir.path(), &[]);
    let ns = node.namesrv.clone();
    let runs: [(&str, &[&str], f64, f64); 4] = [
        (
            "Shared1",
            &["--connections", "1", "--threads", "16", "--tags"],
            3001.0,
            3001.0,
        ),
        ("Shared1", &["--threads", "16", "--keys"], 999.0, 999.0),
        (
            "Shared2",
            &["--connections", "2", "--threads", "5"],
            2000.0,
            2000.0,
        ),
        // 1000 messages as 62 batches of 16 and one of 8.
        (
            "Shared2",
            &["--threads", "16", "--batch", "16"],
            1000.0,
            63.0,
        ),
    ];
    for (topic, extra, count, samples) in runs {
        let count_text = count.to_string();
        let mut args = vec![
            "produce",
            "-n",
            &ns,
            "-t",
            topic,
            "--count",
            &count_text,
            "--json",
        ];
        args.extend_from_slice(extra);
        let produced = bench(&args);
        assert_eq!(number(&produced, "messages"), count, "{args:?}: {produced}");
        assert_eq!(
            number(&produced, "samples"),
            samples,
            "{args:?}: {produced}"
        );
        assert_eq!(number(&produced, "errors"), 0.0, "{args:?}: {produced}");
    }
    assert_eq!(stored(&ns, "Shared1", "shared_check_1", "3s"), 4000.0);
    assert_eq!(stored(&ns, "Shared2", "shared_check_2", "3s"), 3000.0);
    node.stop();
}

/// A topic name the broker refuses: every request on the shared connection is answered with
/// an error code and counted under it, none as sent.
#[test]
fn refused_sends_on_a_shared_connection_are_counted_by_code() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Standalone::start(dir.path(), &[]);
    let ns = node.namesrv.clone();
    let refused = bench(&[
        "produce",
        "-n",
        &ns,
        "-t",
        "No.Dots",
        "--count",
        "200",
        "--threads",
        "16",
        "--json",
    ]);
    assert_eq!(number(&refused, "messages"), 0.0, "{refused}");
    assert_eq!(number(&refused, "errors"), 200.0, "{refused}");
    let kinds = &refused[refused.find("\"error_kinds\":").expect("kinds")..];
    assert!(
        !kinds.contains("timeout") && !kinds.contains("connection closed"),
        "{refused}"
    );
    node.stop();
}

/// The broker dies mid-run: the requests waiting on the shared connection and the reconnects
/// after it fail and are counted, the run still ends on time with what was sent before.
#[test]
fn a_broker_killed_mid_run_fails_the_shared_connection_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Standalone::start(dir.path(), &[]);
    let ns = node.namesrv.clone();
    let args = [
        "produce",
        "-n",
        &ns,
        "-t",
        "Killed",
        "--duration",
        "4s",
        "--threads",
        "16",
        "--timeout-ms",
        "1000",
        "--json",
    ];
    let run = bench_command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node bench starts");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    node.kill9();
    let summary = summary_line(&args, run.wait_with_output().expect("bench ends"));
    assert!(number(&summary, "messages") > 0.0, "{summary}");
    assert!(number(&summary, "errors") > 0.0, "{summary}");
    assert!(number(&summary, "elapsed_s") < 10.0, "{summary}");
    assert!(
        summary.contains("\"connection closed\"") || summary.contains("\"connect\""),
        "{summary}"
    );
}
