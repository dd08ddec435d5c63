//! The slave's side of replication (RocketMQ's `DefaultHAClient`) apart from the bytes
//! themselves, which the store takes (`MessageStore::append_replicated`): when to report the
//! slave's offset and when to give up on a silent master.
//!
//! Rules as Java's: report after every append that moved the offset, and at least every
//! `haSendHeartbeatInterval` (5 s); drop the connection when nothing was read from the master
//! for `haHousekeepingInterval` (20 s; the master heartbeats every 5 s when idle).

/// One connection from a slave to its master.
#[derive(Debug, Clone)]
pub struct MasterLink {
    heartbeat_ms: u64,
    housekeeping_ms: u64,
    reported: Option<u64>,
    last_report_ms: u64,
    last_read_ms: u64,
}

impl MasterLink {
    /// A link opened at `now_ms`.
    #[must_use]
    pub fn new(heartbeat_ms: u64, housekeeping_ms: u64, now_ms: u64) -> MasterLink {
        MasterLink {
            heartbeat_ms,
            housekeeping_ms,
            reported: None,
            last_report_ms: now_ms,
            last_read_ms: now_ms,
        }
    }

    /// Bytes arrived from the master.
    pub fn handle_read(&mut self, now_ms: u64) {
        self.last_read_ms = self.last_read_ms.max(now_ms);
    }

    /// The offset to report now, if one is due: `end` is the slave's commit-log write position.
    pub fn poll_report(&mut self, end: u64, now_ms: u64) -> Option<u64> {
        let due = self.reported != Some(end)
            || now_ms >= self.last_report_ms.saturating_add(self.heartbeat_ms);
        if !due {
            return None;
        }
        self.reported = Some(end);
        self.last_report_ms = now_ms;
        Some(end)
    }

    /// Whether the master has been silent too long: close and reconnect.
    #[must_use]
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.last_read_ms.saturating_add(self.housekeeping_ms)
    }

    /// When to call `poll_report` / `expired` next.
    #[must_use]
    pub fn next_timeout(&self) -> u64 {
        (self.last_report_ms.saturating_add(self.heartbeat_ms))
            .min(self.last_read_ms.saturating_add(self.housekeeping_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_on_progress_and_on_the_heartbeat_only() {
        let mut link = MasterLink::new(5_000, 20_000, 0);
        assert_eq!(
            link.poll_report(0, 0),
            Some(0),
            "the first report is at once"
        );
        assert_eq!(link.poll_report(0, 100), None);
        assert_eq!(link.poll_report(64, 200), Some(64));
        assert_eq!(link.poll_report(64, 5_199), None);
        assert_eq!(link.next_timeout(), 5_200);
        assert_eq!(link.poll_report(64, 5_200), Some(64));
    }

    #[test]
    fn a_silent_master_expires() {
        let mut link = MasterLink::new(5_000, 20_000, 0);
        link.handle_read(10_000);
        assert!(!link.expired(29_999));
        assert!(link.expired(30_000));
    }
}
