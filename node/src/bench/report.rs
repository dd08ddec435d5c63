//! What a bench run measured and how it is shown: a shared [`Meter`] the workers count into,
//! a once-a-second progress line in the shape of RocketMQ's own benchmark tool (TPS, max RT,
//! average RT, failures), and the final [`Summary`] as text or as one JSON line.
//!
//! Latencies are kept in microseconds in an hdrhistogram (3 significant digits); workers keep
//! their own histogram and merge it once at the end, so the hot path takes no lock.
//! What it leaves out: per-queue breakdowns and histogram export files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Largest latency a histogram holds: one hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Bytes per MB in the MB/s figures (decimal, as disk and network figures are usually given).
const BYTES_PER_MB: f64 = 1_000_000.0;

/// A fresh latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds 1..=1 h with 3 digits are valid constants; hdrhistogram only refuses
    // low < 1, high < 2 * low or more than 5 digits.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant bounds are valid")
}

/// Counters shared by every worker of one run.
pub struct Meter {
    /// Messages done (sent and acknowledged, or received).
    messages: AtomicU64,
    /// Body bytes of those messages.
    bytes: AtomicU64,
    /// Failed requests.
    failures: AtomicU64,
    /// Sum and count of request latencies since the last progress line, and their maximum.
    rt_sum_us: AtomicU64,
    rt_count: AtomicU64,
    rt_max_us: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rt_sum_us: AtomicU64::new(0),
            rt_count: AtomicU64::new(0),
            rt_max_us: AtomicU64::new(0),
            histogram: Mutex::new(new_histogram()),
            errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Meter {
    /// `messages` messages of `bytes` body bytes done.
    pub fn done(&self, messages: u64, bytes: u64) {
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One latency for the progress line (the worker records it in its own histogram too).
    pub fn latency(&self, us: u64) {
        self.rt_sum_us.fetch_add(us, Ordering::Relaxed);
        self.rt_count.fetch_add(1, Ordering::Relaxed);
        self.rt_max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// One failed request, counted under `kind`.
    pub fn failed(&self, kind: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *lock(&self.errors).entry(kind).or_insert(0) += 1;
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Adds a worker's histogram to the run's.
    pub fn merge(&self, local: &Histogram<u64>) {
        // Same bounds on both sides, so adding cannot go out of range.
        let _ = lock(&self.histogram).add(local);
    }

    /// The final figures over `elapsed`.
    pub fn summary(&self, kind: &'static str, elapsed: Duration) -> Summary {
        let h = lock(&self.histogram);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let messages = self.messages.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            kind,
            messages,
            bytes,
            errors: self.failures.load(Ordering::Relaxed),
            elapsed_s: secs,
            msgs_per_sec: messages as f64 / secs,
            mb_per_sec: bytes as f64 / BYTES_PER_MB / secs,
            samples: h.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
            error_kinds: lock(&self.errors).clone(),
        }
    }
}

/// Prints one progress line per second until dropped (the task is aborted with it).
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// `label` names the rate (`Send`, `Consume`); lines go to stderr so stdout stays parseable.
    pub fn start(label: &'static str, meter: Arc<Meter>) -> Progress {
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (0u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let messages = meter.messages.load(Ordering::Relaxed);
                let failures = meter.failures.load(Ordering::Relaxed);
                let rt_sum = meter.rt_sum_us.swap(0, Ordering::Relaxed);
                let rt_count = meter.rt_count.swap(0, Ordering::Relaxed);
                let rt_max = meter.rt_max_us.swap(0, Ordering::Relaxed);
                let avg_ms = if rt_count == 0 {
                    0.0
                } else {
                    rt_sum as f64 / rt_count as f64 / 1000.0
                };
                eprintln!(
                    "[{:>4}s] {label} TPS: {} | Max RT(ms): {:.3} | Average RT(ms): {:.3} | \
                     Failed: {}",
                    start.elapsed().as_secs(),
                    messages - last.0,
                    rt_max as f64 / 1000.0,
                    avg_ms,
                    failures - last.1,
                );
                last = (messages, failures);
            }
        });
        Progress { task }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A run's final figures.
#[derive(Clone, Debug)]
pub struct Summary {
    /// `produce`, `consume` or `e2e`.
    pub kind: &'static str,
    pub messages: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub msgs_per_sec: f64,
    pub mb_per_sec: f64,
    /// How many latencies the percentiles come from.
    pub samples: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub error_kinds: BTreeMap<String, u64>,
}

impl Summary {
    /// Human-readable, several lines.
    pub fn text(&self, latency_name: &str) -> String {
        let mut s = format!(
            "{}: {} messages in {:.2} s = {:.0} msg/s, {:.2} MB/s, {} errors\n\
             {latency_name} (ms, {} samples): p50 {:.3} | p90 {:.3} | p99 {:.3} | p99.9 {:.3} | max {:.3}",
            self.kind,
            self.messages,
            self.elapsed_s,
            self.msgs_per_sec,
            self.mb_per_sec,
            self.errors,
            self.samples,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
        );
        for (kind, n) in &self.error_kinds {
            let _ = write!(s, "\n  error {kind}: {n}");
        }
        s
    }

    /// One JSON object, no newline.
    pub fn json(&self) -> String {
        let mut errors = String::from("{");
        for (i, (kind, n)) in self.error_kinds.iter().enumerate() {
            if i > 0 {
                errors.push(',');
            }
            let _ = write!(errors, "\"{}\":{n}", escape(kind));
        }
        errors.push('}');
        format!(
            "{{\"kind\":\"{}\",\"messages\":{},\"bytes\":{},\"errors\":{},\"elapsed_s\":{:.3},\
             \"msgs_per_sec\":{:.1},\"mb_per_sec\":{:.3},\"samples\":{},\"p50_ms\":{:.3},\
             \"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\
             \"error_kinds\":{errors}}}",
            self.kind,
            self.messages,
            self.bytes,
            self.errors,
            self.elapsed_s,
            self.msgs_per_sec,
            self.mb_per_sec,
            self.samples,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
        )
    }
}

/// JSON string escaping for error kinds (which come from remarks a server chose).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_has_the_keys_scripts_read() {
        let meter = Meter::default();
        meter.done(10, 1280);
        let mut h = new_histogram();
        h.record(1500).unwrap();
        meter.merge(&h);
        meter.failed("timeout \"x\"".to_string());
        let json = meter.summary("produce", Duration::from_secs(2)).json();
        for key in [
            "\"messages\":10",
            "\"errors\":1",
            "\"msgs_per_sec\":5.0",
            "\"mb_per_sec\":",
            "\"p50_ms\":1.5",
            "\"p90_ms\":",
            "\"p99_ms\":",
            "\"p999_ms\":",
            "\"max_ms\":1.5",
            "\"timeout \\\"x\\\"\":1",
        ] {
            assert!(json.contains(key), "{key} missing in {json}");
        }
        assert!(!json.contains('\n'));
    }
}
