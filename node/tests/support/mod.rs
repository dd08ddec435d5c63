//! Starting the real `node` binary on loopback for integration tests, with ephemeral ports
//! learned from what it prints, and killing it when the test ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto_core::body::PermName;
use proto_core::header::{encode_header, CreateTopicRequestHeader};
use proto_core::{RemotingCommand, RequestCode};

/// A running `node standalone`.
pub struct Standalone {
    pub child: Child,
    pub namesrv: String,
    pub broker: String,
    /// Every line the node wrote to stderr (its `tracing` log) so far; echoed as it arrives.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Standalone {
    /// Starts `node standalone` on ephemeral loopback ports with its store in `dir`.
    pub fn start(dir: &Path, extra: &[&str]) -> Standalone {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_node"));
        cmd.arg("standalone")
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--set",
                "namesrvListen=127.0.0.1:0",
                "--set",
                "listenPort=0",
                "--set",
                "bindAddress=127.0.0.1",
            ])
            .args(["--set", "mappedFileSizeCommitLog=1048576"]);
        for e in extra {
            cmd.args(["--set", e]);
        }
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let log_in = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[node] {line}");
                log_in.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[node] {line}");
                let _ = tx.send(line);
            }
        });
        let mut namesrv = None;
        let mut broker = None;
        while namesrv.is_none() || broker.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("node prints its addresses");
            if let Some(a) = line.strip_prefix("name server listening on ") {
                namesrv = Some(a.trim().to_string());
            }
            if let Some(a) = line.strip_prefix("broker listening on ") {
                broker = Some(a.trim().to_string());
            }
        }
        Standalone {
            child,
            namesrv: namesrv.expect("loop ends once both are known"),
            broker: broker.expect("loop ends once both are known"),
            log,
        }
    }

    /// The first stderr line containing `needle`, waiting up to `timeout` for it to appear.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if found.is_some() || Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL (no flush, no checkpoint, abort marker left) and reaps it.
    pub fn kill9(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let status = self.child.wait().expect("node exits");
        std::mem::forget(self);
        status
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().expect("node exits");
        std::mem::forget(self);
        status
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `node` process of a multi-process test (a name server or a broker), killed when
/// dropped.
pub struct Node {
    pub child: Child,
    /// The address it printed after `<what> listening on `.
    pub addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Starts `node <args>` with `RUST_LOG=<rust_log>` and waits up to `wait_max` for it to
    /// print `<what> listening on ADDR`. Its stdout is echoed with a `[<what>]` prefix.
    pub fn start(args: &[&str], what: &str, rust_log: &str, wait_max: Duration) -> Node {
        let child = Command::new(env!("CARGO_BIN_EXE_node"))
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node binary starts");
        let mut node = Node {
            child,
            addr: String::new(),
        };
        let stdout = node.child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        let tag = what.to_string();
        std::thread::spawn(move || {
            // Reads to the end, so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[{tag}] {line}");
                let _ = tx.send(line);
            }
        });
        let prefix = format!("{what} listening on ");
        let deadline = Instant::now() + wait_max;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("node prints its address");
            if let Some(addr) = line.strip_prefix(&prefix) {
                node.addr = addr.trim().to_string();
                return node;
            }
        }
    }
}

/// A request with these ext fields (opaque 0: the client numbers its requests).
pub fn request(code: RequestCode, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code.value(), 0);
    for (k, v) in fields {
        cmd.ext_fields_mut().insert(*k, *v);
    }
    cmd
}

/// SEND_MESSAGE_V2 with its one-letter header keys, as the Java and C++ clients send it:
/// producer group, topic, default topic queue count `queue_nums`, `queue_id`, properties
/// `props`, not a batch, not a unit mode or retry send.
pub fn send_v2_request(
    group: &str,
    topic: &str,
    queue_nums: &str,
    queue_id: &str,
    props: &str,
    body: Bytes,
) -> RemotingCommand {
    request(
        RequestCode::SendMessageV2,
        &[
            ("a", group),
            ("b", topic),
            ("c", "TBW102"),
            ("d", queue_nums),
            ("e", queue_id),
            ("f", "0"),
            ("g", "1700000000000"),
            ("h", "0"),
            ("i", props),
            ("j", "0"),
            ("k", "false"),
            ("m", "false"),
        ],
    )
    .with_body(body)
}

/// PULL_MESSAGE of up to 32 records without waiting, carrying its own `*` TAG subscription
/// (sys flag bit 2, as the C++ pull consumer sends it), so no heartbeat is needed.
pub fn pull_request(group: &str, topic: &str, queue_id: &str, offset: &str) -> RemotingCommand {
    request(
        RequestCode::PullMessage,
        &[
            ("consumerGroup", group),
            ("topic", topic),
            ("queueId", queue_id),
            ("queueOffset", offset),
            ("maxMsgNums", "32"),
            ("sysFlag", "4"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subVersion", "0"),
            ("subscription", "*"),
            ("expressionType", "TAG"),
        ],
    )
}

/// The compat harness's venv Python (`COMPAT_VENV` or `~/.cache/rocketmq-compat-venv`).
pub fn compat_python() -> Option<PathBuf> {
    let venv = std::env::var_os("COMPAT_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/rocketmq-compat-venv"))
        })?;
    let python = venv.join("bin/python");
    python.exists().then_some(python)
}

/// `python` ready to run a compat-harness script: the C++ client logs under
/// `$HOME/logs/rocketmq-cpp/`, so HOME is a fresh `cpp-home` inside the test's `dir`.
pub fn compat_command(python: &Path, dir: &Path) -> Command {
    let home = dir.join("cpp-home");
    std::fs::create_dir_all(&home).expect("a HOME for the C++ client's logs");
    let mut cmd = Command::new(python);
    cmd.env("HOME", home);
    cmd
}

/// UPDATE_AND_CREATE_TOPIC for a read/write `topic` with `queues` queues, as mqadmin sends it.
pub fn create_topic_request(topic: &str, queues: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::UpdateAndCreateTopic.value(), 0);
    encode_header(
        &mut cmd,
        &CreateTopicRequestHeader {
            topic: topic.to_string(),
            default_topic: "TBW102".to_string(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: PermName::PERM_READ | PermName::PERM_WRITE,
            topic_filter_type: "SINGLE_TAG".to_string(),
            topic_sys_flag: None,
            order: false,
            attributes: None,
            force: false,
        },
    );
    cmd
}

/// Calls `f` every 200 ms until it returns `Some`; fails the test, naming `what`, after
/// `wait_max`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    wait_max: Duration,
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + wait_max;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
