//! The check run after every broker recovery, before the broker serves anything: every
//! consume-queue unit on disk must point at a valid commit-log record of its own topic, queue
//! and queue offset, inside the recovered log.
//!
//! It reads the files through the `Storage` handle the harness keeps (recovery syncs all it
//! rebuilds, so what is there is what the broker will serve), decoding units with
//! [`CqUnit::decode`] and records with [`decode_with`] (body CRC verified). Per queue, units
//! must be dense from the first file to the first zero unit (the end), with no valid unit after
//! it, and point at strictly increasing commit-log offsets. Blank units (the filler before a
//! queue's first unit) are skipped. What it leaves out: units below the commit log's minimum
//! (retention never runs in these short runs, so it checks them all).

use bytes::Bytes;
use store_core::commit_log::{parse_segment_name, segment_name, COMMIT_LOG_DIR};
use store_core::consume_queue::{CqUnit, CONSUME_QUEUE_DIR, CQ_UNIT_SIZE};
use store_core::format::record::{decode_with, CrcCheck};
use store_core::storage::Storage;

/// Checks every unit of every consume queue against the commit log, which recovery says ends
/// at `log_end`. Returns one line per problem (empty when all is well).
pub fn check_consume_queues<S: Storage>(disk: &S, segment_size: u64, log_end: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let segments: Vec<u64> = match disk.list(COMMIT_LOG_DIR) {
        Ok(names) => names.iter().filter_map(|n| parse_segment_name(n)).collect(),
        Err(e) => return vec![format!("cannot list the commit log: {e}")],
    };
    let log_min = segments.first().copied().unwrap_or(0);
    let topics = disk.list_dirs(CONSUME_QUEUE_DIR).unwrap_or_default();
    for topic in topics {
        let queues = disk
            .list_dirs(&format!("{CONSUME_QUEUE_DIR}/{topic}"))
            .unwrap_or_default();
        for queue in queues {
            let Ok(queue_id) = queue.parse::<i32>() else {
                problems.push(format!(
                    "consume queue dir {topic}/{queue} is not a queue id"
                ));
                continue;
            };
            check_queue(
                disk,
                &topic,
                queue_id,
                segment_size,
                (log_min, log_end),
                &mut problems,
            );
        }
    }
    problems
}

fn check_queue<S: Storage>(
    disk: &S,
    topic: &str,
    queue_id: i32,
    segment_size: u64,
    (log_min, log_end): (u64, u64),
    problems: &mut Vec<String>,
) {
    let dir = format!("{CONSUME_QUEUE_DIR}/{topic}/{queue_id}");
    let files = disk.list(&dir).unwrap_or_default();
    let mut ended_at: Option<i64> = None;
    let mut last_phys: Option<i64> = None;
    let mut expected_file: Option<u64> = None;
    for file in files {
        let name = format!("{dir}/{file}");
        let Ok(start) = file.parse::<u64>() else {
            problems.push(format!("{name}: not a consume-queue file name"));
            continue;
        };
        if expected_file.is_some_and(|e| e != start) {
            problems.push(format!(
                "{name}: files not contiguous (expected {expected_file:?})"
            ));
        }
        let bytes = match disk
            .len(&name)
            .and_then(|len| disk.read_at(&name, 0, len.unwrap_or(0)))
        {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{name}: unreadable: {e}"));
                continue;
            }
        };
        expected_file = Some(start + bytes.len() as u64);
        for (i, chunk) in bytes.chunks_exact(CQ_UNIT_SIZE as usize).enumerate() {
            let Ok(raw) = <&[u8; 20]>::try_from(chunk) else {
                continue;
            };
            let unit = CqUnit::decode(raw);
            let queue_offset = (start / CQ_UNIT_SIZE + i as u64) as i64;
            if let Some(end) = ended_at {
                if unit.is_valid() && !unit.is_blank() {
                    problems.push(format!(
                        "{topic}/{queue_id} offset {queue_offset}: unit {unit:?} after the queue's end at {end}"
                    ));
                }
                continue;
            }
            if !unit.is_valid() {
                ended_at = Some(queue_offset);
                continue;
            }
            if unit.is_blank() {
                continue;
            }
            let at = format!(
                "{topic}/{queue_id} offset {queue_offset} -> phys {}",
                unit.phys_offset
            );
            if last_phys.is_some_and(|p| unit.phys_offset <= p) {
                problems.push(format!(
                    "{at}: commit-log offsets not increasing (previous {last_phys:?})"
                ));
            }
            last_phys = Some(unit.phys_offset);
            if let Err(why) = check_unit(
                disk,
                topic,
                queue_id,
                queue_offset,
                unit,
                segment_size,
                (log_min, log_end),
            ) {
                problems.push(format!("{at} size {}: {why}", unit.size));
            }
        }
    }
}

fn check_unit<S: Storage>(
    disk: &S,
    topic: &str,
    queue_id: i32,
    queue_offset: i64,
    unit: CqUnit,
    segment_size: u64,
    (log_min, log_end): (u64, u64),
) -> Result<(), String> {
    let (Ok(phys), Ok(size)) = (u64::try_from(unit.phys_offset), u64::try_from(unit.size)) else {
        return Err("negative offset or size".into());
    };
    if phys < log_min || phys + size > log_end {
        return Err(format!("outside the recovered log {log_min}..{log_end}"));
    }
    let base = phys - phys % segment_size;
    if phys - base + size > segment_size {
        return Err("record would cross a segment end".into());
    }
    let bytes: Bytes = disk
        .read_at(&segment_name(base), phys - base, size)
        .map_err(|e| format!("unreadable record: {e}"))?;
    let (rec, len) =
        decode_with(&bytes, CrcCheck::Verify).map_err(|e| format!("invalid record: {e}"))?;
    let fields = (
        rec.physical_offset,
        len as u64,
        &rec.topic[..],
        rec.queue_id,
        rec.queue_offset,
    );
    if fields
        != (
            unit.phys_offset,
            size,
            topic.as_bytes(),
            queue_id,
            queue_offset,
        )
    {
        return Err(format!(
            "record says phys {} size {len} topic {:?} queue {} offset {}",
            rec.physical_offset, rec.topic, rec.queue_id, rec.queue_offset
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use store_core::consume_queue::ConsumeQueueConfig;
    use store_core::format::record::MessageRecord;
    use store_core::storage::MemStorage;
    use store_core::store::{MessageStore, StoreConfig};

    const SEGMENT: u64 = 4096;

    /// A store with `n` messages over two queues of topic T, flushed and shut down.
    fn store_with(n: usize) -> (MemStorage, u64) {
        let disk = MemStorage::new();
        let cfg = StoreConfig {
            consume_queue: ConsumeQueueConfig { units_per_file: 4 },
            ..StoreConfig::compact(SEGMENT)
        };
        let (mut store, _) = MessageStore::open(disk.clone(), cfg, 1_000).unwrap();
        let host = "10.0.0.1:10911".parse().unwrap();
        for i in 0..n {
            let m = MessageRecord {
                queue_id: (i % 2) as i32,
                flag: 0,
                queue_offset: 0,
                physical_offset: 0,
                sys_flag: 0,
                born_timestamp: 1,
                born_host: host,
                store_timestamp: 0,
                store_host: host,
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: Bytes::from(format!("body {i} of the check")),
                topic: Bytes::from_static(b"T"),
                properties: Bytes::from_static(b"K\x01v\x02"),
            };
            assert!(store.put(&m, 1_000).status.is_stored());
        }
        store.shutdown().unwrap();
        let end = store.commit_log_max_offset();
        (disk, end)
    }

    #[test]
    fn a_sound_store_passes() {
        let (disk, end) = store_with(30);
        assert_eq!(
            check_consume_queues(&disk, SEGMENT, end),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_unit_past_the_log_end_is_reported() {
        let (disk, end) = store_with(30);
        // As if recovery cut the log but left the queues alone.
        let problems = check_consume_queues(&disk, SEGMENT, end - 1);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("outside the recovered log"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_unit_pointing_into_a_record_or_at_a_damaged_one_is_reported() {
        let (disk, end) = store_with(30);
        let name = format!("{CONSUME_QUEUE_DIR}/T/1/00000000000000000000");
        let unit = CqUnit::decode(&disk.read_at(&name, 0, 20).unwrap()[..].try_into().unwrap());
        let shifted = CqUnit {
            phys_offset: unit.phys_offset + 4,
            ..unit
        };
        disk.write_at(&name, 0, &shifted.encode()).unwrap();
        let problems = check_consume_queues(&disk, SEGMENT, end);
        assert!(
            problems.iter().any(|p| p.contains("T/1 offset 0")),
            "{problems:?}"
        );

        let (disk, end) = store_with(30);
        let unit = CqUnit::decode(&disk.read_at(&name, 0, 20).unwrap()[..].try_into().unwrap());
        // The last body byte: the CRC no longer matches.
        let at = unit.phys_offset as u64 + unit.size as u64 - 1 - 2 - 4 - 1 - 1;
        disk.corrupt_byte(&segment_name(0), at).unwrap();
        let problems = check_consume_queues(&disk, SEGMENT, end);
        assert!(
            problems.iter().any(|p| p.contains("invalid record")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_unit_after_the_end_is_reported() {
        let (disk, end) = store_with(6);
        let dir = format!("{CONSUME_QUEUE_DIR}/T/0");
        let first = disk
            .read_at(&format!("{dir}/00000000000000000000"), 0, 20)
            .unwrap();
        // Queue 0 holds units 0..=2 and ends at the zero unit 3; a stale unit 5 in the next
        // file must be seen.
        let next = format!("{dir}/00000000000000000080");
        disk.create(&next, 80).unwrap();
        disk.write_at(&next, 20, &first).unwrap();
        let problems = check_consume_queues(&disk, SEGMENT, end);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("after the queue's end at 3"),
            "{problems:?}"
        );
    }
}
