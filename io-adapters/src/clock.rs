//! The system clock, read here and nowhere in the cores. Under madsim, `SystemTime` is the
//! simulator's virtual time, so the same code is deterministic in simulation.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
