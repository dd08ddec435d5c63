//! Offset reset seen by a client we did not write: the Apache RocketMQ C++ client's push
//! consumer (through the compat harness's `rocketmq` Python binding) consumes every message of
//! a topic against the real `node standalone`; `node admin resetOffsetByTime -s 0` then moves
//! the group back to the start while the consumer runs, and the consumer receives every message
//! a second time. The reset reaches it as RESET_CONSUMER_CLIENT_OFFSET (list form, the only one
//! the C++ client reads) and, should it miss that, as PULL_OFFSET_MOVED on its next pull.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use support::{compat_command, compat_python, Standalone};

/// Sends 20 messages, consumes them, prints READY, then waits (on stdin's "go") for every one
/// to arrive a second time. Prints one JSON line.
const CPP_SCRIPT: &str = r#"
import json, sys, threading, time
from rocketmq.client import Producer, PushConsumer, Message
ns, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
count = 20
text = lambda v: v.decode() if isinstance(v, bytes) else v
p = Producer("reset_pg"); p.set_namesrv_addr(ns); p.start()
for i in range(count):
    m = Message(topic); m.set_keys("r%d" % i); m.set_body("r:%d" % i); p.send_sync(m)
p.shutdown()
lock = threading.Lock()
seen = {}
def on_msg(msg):
    with lock:
        body = text(msg.body)
        seen[body] = seen.get(body, 0) + 1
c = PushConsumer(group); c.set_namesrv_addr(ns); c.subscribe(topic, on_msg); c.start()
def wait(times, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        with lock:
            if len(seen) == count and all(n >= times for n in seen.values()): return True
        time.sleep(0.2)
    return False
first = wait(1, 60)
# Let the consumer commit what it consumed, so the reset has something to undo.
time.sleep(6)
print("READY", flush=True)
sys.stdin.readline()
second = wait(2, 90)
c.shutdown()
print(json.dumps({"first": first, "second": second, "counts": sorted(set(seen.values()))}), flush=True)
"#;

#[test]
fn cpp_push_consumer_reconsumes_after_reset_to_the_start() {
    let Some(python) = compat_python() else {
        eprintln!("skipping: the compat venv (rocketmq==0.4.4) is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let (topic, group) = ("ResetTopic", "ResetGroup");
    let mut client = compat_command(&python, dir.path())
        .args(["-c", CPP_SCRIPT, &node.namesrv, topic, group])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(client.stdout.take().expect("piped")).lines();
    let ready = lines.next().expect("a line").expect("readable");
    assert_eq!(ready, "READY");

    let out = Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["admin", "resetOffsetByTime", "-n", &node.namesrv])
        .args(["-g", group, "-t", topic, "-s", "0"])
        .output()
        .expect("node admin runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert!(node
        .wait_for_log("offsets reset", std::time::Duration::from_secs(5))
        .is_some());

    let mut stdin = client.stdin.take().expect("piped");
    writeln!(stdin, "go").expect("client reads");
    let result = lines.next().expect("a result line").expect("readable");
    assert!(client.wait().expect("client exits").success());
    println!("{result}");
    assert!(result.contains("\"first\": true"), "{result}");
    assert!(result.contains("\"second\": true"), "{result}");
    assert!(node.stop().success());
}
