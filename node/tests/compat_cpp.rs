//! Compatibility shown by a client we did not write: the Apache RocketMQ C++ client
//! (`../shared/compat/`, PyPI `rocketmq==0.4.4`) sends, then consumes with a push consumer and
//! a pull consumer, and filters by tag, against the real `node standalone`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::Standalone;

fn harness() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/compat/run-cpp-client.sh")
}

fn run_client(namesrv: &str, topic: &str, mode: &str) {
    let out = Command::new("bash")
        .arg(harness())
        .args([
            "--namesrv",
            namesrv,
            "--topic",
            topic,
            "--count",
            "50",
            "--mode",
            mode,
        ])
        .args(["--timeout", "60", "--deadline", "200"])
        .output()
        .expect("compat harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "C++ client {mode} failed:\n{stdout}\n{stderr}"
    );
    println!("{mode}: {stdout}");
}

#[test]
fn cpp_client_sends_and_consumes_push_and_pull() {
    // The harness lives beside the checkout; CI has it. Without it there is nothing to run.
    if !harness().exists() {
        eprintln!("skipping: {} not found", harness().display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    run_client(&node.namesrv, "CompatPush", "push");
    run_client(&node.namesrv, "CompatPull", "pull");
    assert!(node.stop().success());
}
