//! The event trace of one run: readable lines stamped with simulated time, and a hash over them
//! so two runs of one seed can be compared byte for byte (FNV-1a, stable across builds, unlike
//! std's seeded hashers).

use std::sync::{Arc, Mutex, MutexGuard};

use madsim::time::Instant;

/// A shared, append-only trace. Cheap to clone: clones share one log.
#[derive(Clone)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    start: Instant,
    lines: Vec<String>,
    /// Print each line as it is recorded (`--trace`).
    echo: bool,
}

impl Trace {
    /// A trace whose clock starts now (call inside the simulation).
    pub fn new(echo: bool) -> Trace {
        Trace {
            inner: Arc::new(Mutex::new(Inner {
                start: Instant::now(),
                lines: Vec::new(),
                echo,
            })),
        }
    }

    /// Records one event, stamped with simulated milliseconds since the start.
    pub fn event(&self, what: impl AsRef<str>) {
        let mut inner = self.lock();
        let ms = inner.start.elapsed().as_millis();
        let line = format!("{ms:>9} ms  {}", what.as_ref());
        if inner.echo {
            println!("{line}");
        }
        inner.lines.push(line);
    }

    /// FNV-1a over every line so far (with its newline).
    pub fn hash(&self) -> u64 {
        let inner = self.lock();
        fnv1a(inner.lines.iter().flat_map(|l| l.bytes().chain([b'\n'])))
    }

    pub fn len(&self) -> usize {
        self.lock().lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last `n` lines, for a failure report.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let inner = self.lock();
        let from = inner.lines.len().saturating_sub(n);
        inner.lines.get(from..).unwrap_or_default().to_vec()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
