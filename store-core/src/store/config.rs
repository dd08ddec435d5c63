//! [`StoreConfig`]: the message store's settings, with RocketMQ's names (`MessageStoreConfig`)
//! and defaults. Parsing them from a broker config file is the node's business.

use crate::consume_queue::ConsumeQueueConfig;
use crate::dispatch::DEFAULT_DELAY_LEVELS_MS;
use crate::flush::FlushPolicy;
use crate::index::IndexConfig;
use crate::retention::RetentionConfig;

/// Settings of a [`crate::store::MessageStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Commit-log segment size (`mappedFileSizeCommitLog`, 1 GiB). Must match the segments
    /// already on disk.
    pub segment_size: u64,
    /// Consume-queue file sizing (`mappedFileSizeConsumeQueue`, 300 000 units).
    pub consume_queue: ConsumeQueueConfig,
    /// Index file sizing (`maxHashSlotNum`, `maxIndexNum`).
    pub index: IndexConfig,
    /// Commit-log flush: type and async thresholds.
    pub flush: FlushPolicy,
    /// How often consume queues, index and checkpoint are synced (`flushIntervalConsumeQueue`,
    /// 1000 ms).
    pub flush_consume_queue_interval_ms: u64,
    /// Retention and disk-full thresholds.
    pub retention: RetentionConfig,
    /// Largest body accepted (`maxMessageSize`, 4 MiB).
    pub max_message_size: u32,
    /// Verify each record's body CRC during recovery (`checkCRCOnRecover`, true).
    pub check_crc_on_recover: bool,
    /// Newest commit-log segments always verified (CRC and all) at open, even when the
    /// checkpoint would allow starting later: where corruption is detected after a clean
    /// shutdown. RocketMQ walks 3 (at 1 GiB each); 1 keeps restarts quick.
    pub verify_segments_on_recovery: usize,
    /// On a corrupt record below the durable end, cut the log there and start instead of
    /// refusing to start. Loses every record after the corruption.
    pub truncate_on_corruption: bool,
    /// Index messages by key and UNIQ_KEY (`messageIndexEnable`, true).
    pub message_index_enable: bool,
    /// Read limits per `get_messages` for data in page cache
    /// (`maxTransferBytesOnMessageInMemory` 256 KiB, `maxTransferCountOnMessageInMemory` 32)...
    pub max_transfer_bytes_in_memory: u64,
    pub max_transfer_count_in_memory: u32,
    /// ...and for data estimated to be on disk only (64 KiB, 8).
    pub max_transfer_bytes_on_disk: u64,
    pub max_transfer_count_on_disk: u32,
    /// Share of RAM, in percent, of the newest commit-log bytes deemed in page cache
    /// (`accessMessageInMemoryMaxRatio`, 40).
    pub access_message_in_memory_max_ratio: u32,
    /// Physical memory of the machine, for the estimate above (given by the driver).
    pub physical_memory_bytes: u64,
    /// Consume-queue bytes a single read may scan while filtering (`maxFilterMessageSize`,
    /// 16 000).
    pub max_filter_message_size: u64,
    /// Delay of each level, level 1 first (`messageDelayLevel`), for the tag code of
    /// `SCHEDULE_TOPIC_XXXX` units.
    pub message_delay_level_ms: Vec<u64>,
    /// Once the segment being written is this full (percent), the store asks for the next
    /// one to be preallocated (see `MessageStore::poll_preallocate`).
    pub preallocate_at_percent: u32,
    /// Reads (`get_messages`, queue max offsets) stop at records ending past the confirm
    /// offset (`MessageStore::set_confirm_offset`). On in controller mode, as RocketMQ's
    /// `readUnCommitted=false` makes it there; off by default: reads go to the end.
    pub limit_reads_to_confirm_offset: bool,
}

/// Largest total a single read returns (RocketMQ's `MAX_PULL_MSG_SIZE`, 128 MiB).
pub const MAX_PULL_MSG_SIZE: u64 = 128 * 1024 * 1024;

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            segment_size: 1024 * 1024 * 1024,
            consume_queue: ConsumeQueueConfig::default(),
            index: IndexConfig::default(),
            flush: FlushPolicy::default(),
            flush_consume_queue_interval_ms: 1000,
            retention: RetentionConfig::default(),
            max_message_size: 4 * 1024 * 1024,
            check_crc_on_recover: true,
            verify_segments_on_recovery: 1,
            truncate_on_corruption: false,
            message_index_enable: true,
            max_transfer_bytes_in_memory: 256 * 1024,
            max_transfer_count_in_memory: 32,
            max_transfer_bytes_on_disk: 64 * 1024,
            max_transfer_count_on_disk: 8,
            access_message_in_memory_max_ratio: 40,
            physical_memory_bytes: 8 * 1024 * 1024 * 1024,
            max_filter_message_size: 16_000,
            message_delay_level_ms: DEFAULT_DELAY_LEVELS_MS.to_vec(),
            preallocate_at_percent: 50,
            limit_reads_to_confirm_offset: false,
        }
    }
}

impl StoreConfig {
    /// RocketMQ's defaults with small files, for simulations and tests over memory: commit-log
    /// segments of `segment_size`, consume-queue files of 1000 units, index files of 1024
    /// slots and 4096 entries (the defaults are 1 GiB, 6 MB and 420 MB).
    #[must_use]
    pub fn compact(segment_size: u64) -> StoreConfig {
        StoreConfig {
            segment_size,
            consume_queue: ConsumeQueueConfig {
                units_per_file: 1000,
            },
            index: IndexConfig {
                max_hash_slot_num: 1024,
                max_index_num: 4096,
            },
            ..StoreConfig::default()
        }
    }

    /// Commit-log bytes behind the write position that count as "in memory".
    #[must_use]
    pub fn in_memory_window(&self) -> u64 {
        self.physical_memory_bytes / 100 * u64::from(self.access_message_in_memory_max_ratio)
    }
}
