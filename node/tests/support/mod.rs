//! Starting the real `node` binary on loopback for integration tests, with ephemeral ports
//! learned from what it prints, and killing it when the test ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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
