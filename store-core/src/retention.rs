//! Retention and disk-full decisions, as RocketMQ's `CleanCommitLogService` makes them, as pure
//! functions of the segments' ages, the disk usage and the hour of day.
//!
//! - Whole segments only, oldest first, never the segment being written.
//! - A segment expires `fileReservedTime` hours after its last record was stored. RocketMQ
//!   uses the file's modification time; we use the store timestamp of the first record of the
//!   *next* segment, which is at or just after the last write into this one and survives
//!   copies and restarts.
//! - Expired segments go at the `deleteWhen` hour, or at any hour once disk use passes
//!   `diskMaxUsedSpaceRatio`; past `diskSpaceCleanForciblyRatio` the oldest segments go even
//!   unexpired (with `cleanFileForciblyEnable`). At most `deleteFileBatchMax` per round.
//! - Writes are refused past `diskSpaceWarningLevelRatio` (90 %) and accepted again once use
//!   falls back to it. `diskMaxUsedSpaceRatio` (75 %) only starts deleting expired segments,
//!   as in RocketMQ, so a busy shared disk does not stop a broker with room to spare.
//!
//! Left out: the deleting itself (the store does it and then moves the consume queues' and the
//! index's minimum).

/// Retention settings (RocketMQ names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Hours a segment is kept after its last write (`fileReservedTime`, 72).
    pub file_reserved_time_hours: u64,
    /// Hours of the day at which expired segments are deleted (`deleteWhen`, "04"; several
    /// hours are written "04;16").
    pub delete_when: Vec<u8>,
    /// Disk use, in percent, above which expired segments are deleted at any hour
    /// (`diskMaxUsedSpaceRatio`, 75).
    pub disk_max_used_space_ratio: u32,
    /// Disk use above which writes are refused (`diskSpaceWarningLevelRatio`, 90).
    pub disk_space_warning_level_ratio: u32,
    /// Disk use above which the oldest segments are deleted even if unexpired
    /// (`diskSpaceCleanForciblyRatio`, 85).
    pub disk_space_clean_forcibly_ratio: u32,
    /// Whether forced deletion is allowed (`cleanFileForciblyEnable`, true).
    pub clean_file_forcibly_enable: bool,
    /// Segments deleted per round at most (`deleteFileBatchMax`, 10).
    pub delete_file_batch_max: usize,
    /// How often disk use is checked and retention runs (`cleanResourceInterval`, 10 s).
    pub clean_resource_interval_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            file_reserved_time_hours: 72,
            delete_when: vec![4],
            disk_max_used_space_ratio: 75,
            disk_space_warning_level_ratio: 90,
            disk_space_clean_forcibly_ratio: 85,
            clean_file_forcibly_enable: true,
            delete_file_batch_max: 10,
            clean_resource_interval_ms: 10_000,
        }
    }
}

impl RetentionConfig {
    /// Parses RocketMQ's `deleteWhen` ("04", "04;16"); `None` if an entry is not an hour.
    #[must_use]
    pub fn parse_delete_when(text: &str) -> Option<Vec<u8>> {
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<u8>().ok().filter(|&h| h < 24))
            .collect()
    }
}

/// One deletable segment: every segment but the one being written, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentAge {
    pub base: u64,
    /// Store time of the last write into it (see the module docs), if known.
    pub last_write_ms: Option<u64>,
}

/// Disk use in percent (0..=100) from a used ratio.
#[must_use]
pub fn percent(used_ratio: f64) -> u32 {
    if used_ratio.is_nan() {
        return 100;
    }
    (used_ratio.clamp(0.0, 1.0) * 100.0).round() as u32
}

/// How many of the oldest `segments` to delete now.
#[must_use]
pub fn segments_to_delete(
    cfg: &RetentionConfig,
    segments: &[SegmentAge],
    now_ms: u64,
    hour_of_day: u8,
    used_percent: u32,
) -> usize {
    let time_up = cfg.delete_when.contains(&hour_of_day);
    let space_low = used_percent > cfg.disk_max_used_space_ratio;
    let force =
        cfg.clean_file_forcibly_enable && used_percent > cfg.disk_space_clean_forcibly_ratio;
    if !(time_up || space_low || force) {
        return 0;
    }
    let reserved_ms = cfg.file_reserved_time_hours.saturating_mul(3_600_000);
    segments
        .iter()
        .take(cfg.delete_file_batch_max)
        .take_while(|s| {
            // A segment whose age is unknown is not expired: only force removes it.
            let expired = s
                .last_write_ms
                .is_some_and(|t| t.saturating_add(reserved_ms) <= now_ms);
            expired || force
        })
        .count()
}

/// Whether writes must be refused at this disk use.
#[must_use]
pub fn refuse_writes(cfg: &RetentionConfig, used_percent: u32) -> bool {
    used_percent > cfg.disk_space_warning_level_ratio
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn ages(times: &[u64]) -> Vec<SegmentAge> {
        times
            .iter()
            .enumerate()
            .map(|(i, &t)| SegmentAge {
                base: i as u64 * 1000,
                last_write_ms: Some(t),
            })
            .collect()
    }

    #[test]
    fn expired_segments_go_only_at_the_delete_hour() {
        let cfg = RetentionConfig::default();
        let segs = ages(&[0, HOUR, 100 * HOUR]);
        let now = 74 * HOUR;
        assert_eq!(segments_to_delete(&cfg, &segs, now, 3, 10), 0);
        assert_eq!(segments_to_delete(&cfg, &segs, now, 4, 10), 2);
        // Past the max used ratio: any hour.
        assert_eq!(segments_to_delete(&cfg, &segs, now, 3, 80), 2);
    }

    #[test]
    fn forced_cleaning_takes_unexpired_segments_in_batches() {
        let cfg = RetentionConfig {
            delete_file_batch_max: 2,
            ..RetentionConfig::default()
        };
        let segs = ages(&[10 * HOUR, 11 * HOUR, 12 * HOUR]);
        assert_eq!(segments_to_delete(&cfg, &segs, 12 * HOUR, 3, 80), 0);
        assert_eq!(segments_to_delete(&cfg, &segs, 12 * HOUR, 3, 90), 2);
        let no_force = RetentionConfig {
            clean_file_forcibly_enable: false,
            ..cfg
        };
        assert_eq!(segments_to_delete(&no_force, &segs, 12 * HOUR, 3, 90), 0);
    }

    #[test]
    fn deletion_stops_at_the_first_young_segment() {
        let cfg = RetentionConfig::default();
        let segs = ages(&[0, 50 * HOUR, 0]);
        assert_eq!(segments_to_delete(&cfg, &segs, 73 * HOUR, 4, 10), 1);
    }

    #[test]
    fn delete_when_parses_like_rocketmq() {
        assert_eq!(RetentionConfig::parse_delete_when("04"), Some(vec![4]));
        assert_eq!(
            RetentionConfig::parse_delete_when("04;16"),
            Some(vec![4, 16])
        );
        assert_eq!(RetentionConfig::parse_delete_when("25"), None);
        assert_eq!(percent(0.755), 76);
    }

    #[test]
    fn writes_are_refused_only_past_the_warning_level() {
        // Past diskMaxUsedSpaceRatio (75) expired segments go, but writes go on: RocketMQ
        // refuses them only past diskSpaceWarningLevelRatio (90).
        let cfg = RetentionConfig::default();
        assert!(!refuse_writes(&cfg, 76));
        assert!(!refuse_writes(&cfg, 90));
        assert!(refuse_writes(&cfg, 91));
    }
}
