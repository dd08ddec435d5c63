//! Starting the real `node` binary on loopback for integration tests, with ephemeral ports
//! learned from what it prints, and killing it when the test ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `node standalone`.
pub struct Standalone {
    pub child: Child,
    pub namesrv: String,
    pub broker: String,
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
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node binary starts");
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
        }
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
