//! Scenario tests of the message store over `MemStorage`: write and read paths, flush, crash
//! recovery, corruption, disk full and retention.

use bytes::Bytes;
use core::net::SocketAddr;

use super::*;
use crate::flush::FlushDiskType;
use crate::format::record::{self, MessageRecord};
use crate::format::tag::tag_hash_code;
use crate::recovery::CorruptionReason;
use crate::status::{BoundaryType, GetMessageStatus, PutMessageStatus};
use crate::storage::MemStorage;

const SEGMENT: u64 = 4096;
const HOUR: u64 = 3_600_000;

fn host() -> SocketAddr {
    "10.0.0.1:10911".parse().unwrap()
}

/// A record as a producer would hand it to the store (shared by the store's test modules).
pub(super) fn msg(topic: &str, queue_id: i32, body: &[u8], props: &str) -> MessageRecord {
    MessageRecord {
        queue_id,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "192.168.0.9:5555".parse().unwrap(),
        store_timestamp: 0,
        store_host: host(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::copy_from_slice(body),
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        properties: Bytes::copy_from_slice(props.as_bytes()),
    }
}

fn config(flush: FlushDiskType) -> StoreConfig {
    let mut cfg = StoreConfig {
        consume_queue: crate::consume_queue::ConsumeQueueConfig { units_per_file: 16 },
        ..StoreConfig::compact(SEGMENT)
    };
    cfg.flush.flush_disk_type = flush;
    cfg
}

fn open(disk: &MemStorage, cfg: StoreConfig) -> (MessageStore<MemStorage>, RecoveryReport) {
    MessageStore::open(disk.clone(), cfg, 1_000).unwrap()
}

/// Appends and asserts the message was stored.
fn put_ok(
    store: &mut MessageStore<MemStorage>,
    m: &MessageRecord,
    now: u64,
) -> crate::status::AppendInfo {
    let r = store.put(m, now);
    assert!(r.status.is_stored(), "put failed: {r:?}");
    r.wrote.unwrap()
}

/// The driver's flush loop, inline.
fn drive_flush(store: &mut MessageStore<MemStorage>, now: u64) {
    while let Some(req) = store.poll_flush(now) {
        req.run(store.storage()).unwrap();
        store.handle_flushed(req.up_to);
    }
}

fn body_of(record: &Bytes) -> Bytes {
    record::decode(record).unwrap().0.body
}

#[test]
fn put_then_get_round_trips_with_dense_queue_offsets() {
    let disk = MemStorage::new();
    let (mut store, report) = open(&disk, config(FlushDiskType::AsyncFlush));
    assert!(report.clean_shutdown);
    for i in 0..5u64 {
        let r = store.put(&msg("T", 1, format!("m{i}").as_bytes(), ""), 2_000 + i);
        assert_eq!(r.status, PutMessageStatus::PutOk);
        let info = r.wrote.unwrap();
        assert_eq!(info.queue_offset, i);
        assert_eq!(info.store_timestamp, 2_000 + i);
        assert_eq!(info.msg_id().len(), 32);
        assert!(info
            .msg_id()
            .ends_with(&format!("{:016X}", info.phys_offset)));
        assert_eq!(r.flush_needed, None, "async flush never holds the reply");
    }
    assert_eq!(
        store
            .put(&msg("T", 2, b"x", ""), 3_000)
            .wrote
            .unwrap()
            .queue_offset,
        0
    );
    let got = store.get_messages("T", 1, 1, 32, 1 << 20, &AcceptAll);
    assert_eq!(got.status, GetMessageStatus::Found);
    assert_eq!(got.queue_offsets, vec![1, 2, 3, 4]);
    assert_eq!(got.next_begin_offset, 5);
    assert_eq!((got.min_offset, got.max_offset), (0, 5));
    let decoded = record::decode(&got.records[0]).unwrap().0;
    assert_eq!(&decoded.body[..], b"m1");
    assert_eq!(decoded.queue_offset, 1);
    assert_eq!(decoded.store_timestamp, 2_001);
    assert_eq!(
        store
            .get_messages("T", 1, 5, 32, 1 << 20, &AcceptAll)
            .status,
        GetMessageStatus::OffsetOverflowOne
    );
    let bad = store.get_messages("T", 1, 9, 32, 1 << 20, &AcceptAll);
    assert_eq!(
        (bad.status, bad.next_begin_offset),
        (GetMessageStatus::OffsetOverflowBadly, 5)
    );
    let missing = store.get_messages("U", 0, 3, 32, 1 << 20, &AcceptAll);
    assert_eq!(
        (missing.status, missing.next_begin_offset),
        (GetMessageStatus::NoMatchedLogicQueue, 0)
    );
}

#[test]
fn records_roll_over_segments_with_blank_markers() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    let body = vec![7u8; 900];
    let mut sizes = Vec::new();
    for i in 0..12 {
        sizes.push(put_ok(&mut store, &msg("Roll", 0, &body, ""), 10 + i).wrote_bytes);
    }
    // 91 bytes of overhead + 900 body + 4 topic.
    assert_eq!(sizes[0], 995);
    assert!(store.commit_log_max_offset() > 2 * SEGMENT);
    let seg0 = disk
        .read_at("commitlog/00000000000000000000", 0, SEGMENT)
        .unwrap();
    // Four records fill 3980 bytes; the fifth would need 995 + 8 > 116: blank marker.
    let blank = record::peek(&seg0[3980..]).unwrap();
    assert_eq!(blank.kind(), record::SlotKind::Blank);
    assert_eq!(blank.total_size, 116);
    let got = store.get_messages("Roll", 0, 0, 32, 1 << 20, &AcceptAll);
    assert_eq!(got.records.len(), 12);
    assert_eq!(
        record::decode(&got.records[4]).unwrap().0.physical_offset,
        4096
    );
    assert_eq!(store.lookup_by_offset(4096).unwrap(), got.records[4]);
    assert_eq!(store.lookup_by_offset(4097), None);
}

#[test]
fn sync_flush_group_commit_makes_acked_records_survive_a_crash() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    let a = store.put(&msg("S", 0, b"a", ""), 5);
    let b = store.put(&msg("S", 0, b"b", ""), 6);
    let c = store.put(&msg("S", 0, b"c", "WAIT\u{1}false\u{2}"), 7);
    assert!(a.flush_needed.unwrap() < b.flush_needed.unwrap());
    assert_eq!(c.flush_needed, None, "WAIT=false is not held");
    // One request covers all three appends.
    let req = store.poll_flush(8).unwrap();
    assert_eq!(req.up_to, store.commit_log_max_offset());
    assert!(store.poll_flush(8).is_none(), "one request in flight");
    let d = store.put(&msg("S", 0, b"d", ""), 9);
    req.run(&disk).unwrap();
    store.handle_flushed(req.up_to);
    assert!(store.flushed_offset() >= b.flush_needed.unwrap());
    assert!(store.flushed_offset() < d.flush_needed.unwrap());
    // Crash before d is flushed: a, b, c survive, d is gone.
    drop(store);
    disk.crash(Some(u64::MAX));
    let (store, report) = open(&disk, config(FlushDiskType::SyncFlush));
    assert!(!report.clean_shutdown);
    let got = store.get_messages("S", 0, 0, 32, 1 << 20, &AcceptAll);
    let bodies: Vec<Bytes> = got.records.iter().map(body_of).collect();
    assert_eq!(bodies, vec!["a", "b", "c"]);
    assert_eq!(store.max_offset_in_queue("S", 0), 3);
}

#[test]
fn a_torn_tail_is_cut_and_zeroed_then_appends_continue() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    put_ok(&mut store, &msg("T", 0, b"durable", ""), 1);
    drive_flush(&mut store, 1);
    put_ok(&mut store, &msg("T", 0, &[9u8; 300], ""), 2);
    let end_before = store.commit_log_max_offset();
    drop(store);
    // Half of the last record reaches the disk.
    disk.crash(Some(150));
    let (mut store, report) = open(&disk, config(FlushDiskType::SyncFlush));
    let torn = report.stopped_at.clone().unwrap();
    assert!(matches!(
        torn.reason,
        CorruptionReason::Overrun { .. } | CorruptionReason::Record(_)
    ));
    assert!(report.end_offset < end_before);
    assert!(report.bytes_zeroed > 0);
    assert_eq!(store.max_offset_in_queue("T", 0), 1);
    let r = store.put(&msg("T", 0, b"after", ""), 3);
    assert_eq!(r.wrote.unwrap().queue_offset, 1);
    drive_flush(&mut store, 3);
    drop(store);
    disk.crash(None);
    let (store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    let got = store.get_messages("T", 0, 0, 32, 1 << 20, &AcceptAll);
    let bodies: Vec<Bytes> = got.records.iter().map(body_of).collect();
    assert_eq!(bodies, vec!["durable", "after"]);
}

#[test]
fn corruption_in_durable_data_is_reported_precisely_and_refused() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    let first = store.put(&msg("C", 0, b"first", ""), 1).wrote.unwrap();
    let second = store.put(&msg("C", 0, b"second", ""), 2).wrote.unwrap();
    put_ok(&mut store, &msg("C", 0, b"third", ""), 3);
    store.shutdown().unwrap();
    drop(store);
    // Flip a body byte of the second record (bit rot under durable data).
    let body_at = second.phys_offset + u64::from(second.wrote_bytes) - 2 - 1 - 6;
    disk.corrupt_byte("commitlog/00000000000000000000", body_at)
        .unwrap();
    let Err(OpenError::Recovery(RecoveryError::Corrupt {
        corruption,
        durable_offset,
    })) = MessageStore::open(disk.clone(), config(FlushDiskType::SyncFlush), 5)
    else {
        panic!("expected a corruption error");
    };
    assert_eq!(corruption.file, "commitlog/00000000000000000000");
    assert_eq!(corruption.offset, second.phys_offset);
    assert!(matches!(
        corruption.reason,
        CorruptionReason::Record(record::RecordError::BadCrc { .. })
    ));
    assert!(durable_offset > second.phys_offset);
    assert!(first.phys_offset < corruption.offset);
    // Told to truncate, the store opens with what precedes the damage.
    let mut cfg = config(FlushDiskType::SyncFlush);
    cfg.truncate_on_corruption = true;
    let (store, report) = open(&disk, cfg);
    assert_eq!(report.end_offset, second.phys_offset);
    assert_eq!(store.max_offset_in_queue("C", 0), 1);
}

#[test]
fn a_clean_shutdown_is_trusted_and_scans_nothing() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    for i in 0..20 {
        put_ok(
            &mut store,
            &msg("Q", i % 3, b"payload", "TAGS\u{1}a\u{2}"),
            100 + u64::from(i.unsigned_abs()),
        );
    }
    store.shutdown().unwrap();
    assert_eq!(
        store.put(&msg("Q", 0, b"late", ""), 200).refusal,
        Some(NotWritable::ShutDown)
    );
    drop(store);
    disk.crash(None);
    // By default the newest segment is verified all the same...
    let (mut store, report) = open(&disk, config(FlushDiskType::AsyncFlush));
    assert!(report.clean_shutdown && report.checkpoint_trusted);
    assert_eq!(report.bytes_scanned, store.commit_log_max_offset());
    store.shutdown().unwrap();
    drop(store);
    // ...and without that, nothing is walked.
    let mut cfg = config(FlushDiskType::AsyncFlush);
    cfg.verify_segments_on_recovery = 0;
    let (store, report) = open(&disk, cfg);
    assert!(report.clean_shutdown && report.checkpoint_trusted);
    assert_eq!(report.bytes_scanned, 0);
    assert_eq!(report.stopped_at, None);
    assert_eq!(store.max_offset_in_queue("Q", 0), 7);
    assert_eq!(store.max_offset_in_queue("Q", 2), 6);
}

#[test]
fn consume_queue_units_lost_in_a_crash_are_rebuilt() {
    let disk = MemStorage::new();
    let mut cfg = config(FlushDiskType::SyncFlush);
    cfg.flush_consume_queue_interval_ms = 1_000_000;
    let (mut store, _) = open(&disk, cfg.clone());
    for i in 0..10 {
        put_ok(
            &mut store,
            &msg("R", 0, format!("r{i}").as_bytes(), ""),
            10 + i,
        );
    }
    // Commit log synced, consume queue not.
    drive_flush(&mut store, 20);
    drop(store);
    disk.crash(None);
    let (store, report) = open(&disk, cfg);
    assert_eq!(report.records_scanned, 10);
    let got = store.get_messages("R", 0, 0, 32, 1 << 20, &AcceptAll);
    assert_eq!(got.records.len(), 10);
    assert_eq!(body_of(&got.records[9]), "r9");
}

#[test]
fn tag_filters_skip_entries_and_advance_the_next_offset() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    put_ok(&mut store, &msg("F", 0, b"1", "TAGS\u{1}a\u{2}"), 1);
    put_ok(&mut store, &msg("F", 0, b"2", "TAGS\u{1}b\u{2}"), 2);
    put_ok(&mut store, &msg("F", 0, b"3", "TAGS\u{1}a\u{2}"), 3);
    let only_b = TagCodeFilter::new([tag_hash_code("b") as i32]);
    let got = store.get_messages("F", 0, 0, 32, 1 << 20, &only_b);
    assert_eq!(got.queue_offsets, vec![1]);
    assert_eq!(got.next_begin_offset, 3);
    let none = TagCodeFilter::new([tag_hash_code("zzz") as i32]);
    let got = store.get_messages("F", 0, 0, 32, 1 << 20, &none);
    assert_eq!(
        (got.status, got.next_begin_offset),
        (GetMessageStatus::NoMatchedMessage, 3)
    );
    // Batch limits: max_count.
    let got = store.get_messages("F", 0, 0, 2, 1 << 20, &AcceptAll);
    assert_eq!((got.records.len(), got.next_begin_offset), (2, 2));
}

#[test]
fn invalid_messages_are_refused_with_their_status() {
    let disk = MemStorage::new();
    let mut cfg = config(FlushDiskType::AsyncFlush);
    cfg.max_message_size = 100;
    let (mut store, _) = open(&disk, cfg);
    assert_eq!(
        store.put(&msg("T", 0, &[0u8; 101], ""), 1).status,
        PutMessageStatus::MessageIllegal
    );
    let long_props = format!("k\u{1}{}\u{2}", "v".repeat(40_000));
    assert_eq!(
        store.put(&msg("T", 0, b"x", &long_props), 1).status,
        PutMessageStatus::PropertiesSizeExceeded
    );
    assert_eq!(
        store.put(&msg(&"t".repeat(128), 0, b"x", ""), 1).status,
        PutMessageStatus::MessageIllegal
    );
    let retry = format!("%RETRY%{}", "g".repeat(150));
    assert_eq!(
        store.put(&msg(&retry, 0, b"x", ""), 1).status,
        PutMessageStatus::PutOk
    );
    assert_eq!(
        store.put(&msg("", 0, b"x", ""), 1).status,
        PutMessageStatus::MessageIllegal
    );
    assert_eq!(
        store.put(&msg("a/b", 0, b"x", ""), 1).status,
        PutMessageStatus::MessageIllegal
    );
    assert_eq!(
        store.commit_log_max_offset(),
        store.lookup_by_offset(0).unwrap().len() as u64
    );
}

#[test]
fn prepared_and_rollback_records_get_no_queue_slot() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    let mut half = msg("Tx", 0, b"half", "UNIQ_KEY\u{1}U1\u{2}");
    half.sys_flag = crate::format::sys_flag::TRANSACTION_PREPARED_TYPE;
    let r = store.put(&half, 1).wrote.unwrap();
    assert_eq!(r.queue_offset, 0);
    assert_eq!(store.max_offset_in_queue("Tx", 0), 0);
    assert_eq!(
        store
            .put(&msg("Tx", 0, b"n", ""), 2)
            .wrote
            .unwrap()
            .queue_offset,
        0
    );
    assert_eq!(store.max_offset_in_queue("Tx", 0), 1);
    // The half message is indexed by its UNIQ_KEY all the same.
    assert_eq!(
        store
            .query_by_key("Tx", "U1", 10, 0, u64::MAX)
            .records
            .len(),
        1
    );
}

#[test]
fn batches_are_one_write_with_consecutive_offsets() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    put_ok(&mut store, &msg("B", 0, b"before", ""), 1);
    let batch: Vec<MessageRecord> = (0..4)
        .map(|i| msg("B", 0, format!("b{i}").as_bytes(), ""))
        .collect();
    let r = store.put_batch(&batch, 2);
    assert_eq!(r.status, PutMessageStatus::PutOk);
    let offsets: Vec<u64> = r.wrote.iter().map(|w| w.queue_offset).collect();
    assert_eq!(offsets, vec![1, 2, 3, 4]);
    assert_eq!(r.flush_needed, Some(store.commit_log_max_offset()));
    let too_big: Vec<MessageRecord> = (0..6).map(|_| msg("B", 0, &[1u8; 800], "")).collect();
    assert_eq!(
        store.put_batch(&too_big, 3).status,
        PutMessageStatus::MessageIllegal
    );
    assert_eq!(
        store.put_batch(&[], 3).status,
        PutMessageStatus::MessageIllegal
    );
    assert_eq!(store.max_offset_in_queue("B", 0), 5);
}

#[test]
fn a_failed_write_refuses_writes_until_reopened() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    put_ok(&mut store, &msg("E", 0, b"ok", ""), 1);
    drive_flush(&mut store, 1);
    disk.fail_write_after(1);
    assert_eq!(
        store.put(&msg("E", 0, b"boom", ""), 2).status,
        PutMessageStatus::UnknownError
    );
    let refused = store.put(&msg("E", 0, b"later", ""), 3);
    assert_eq!(refused.status, PutMessageStatus::ServiceNotAvailable);
    assert!(matches!(
        refused.refusal,
        Some(NotWritable::PreviousIo { .. })
    ));
    drop(store);
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    assert_eq!(
        store
            .put(&msg("E", 0, b"again", ""), 4)
            .wrote
            .unwrap()
            .queue_offset,
        1
    );
}

#[test]
fn a_failed_sync_refuses_writes() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    let r = store.put(&msg("E", 0, b"x", ""), 1);
    let req = store.poll_flush(1).unwrap();
    disk.set_fail_io(true);
    let err = req.run(&disk).unwrap_err();
    disk.set_fail_io(false);
    store.handle_flush_failed(&err);
    assert!(store.flushed_offset() < r.flush_needed.unwrap());
    assert_eq!(
        store.put(&msg("E", 0, b"y", ""), 2).status,
        PutMessageStatus::ServiceNotAvailable
    );
}

#[test]
fn a_full_disk_refuses_writes_without_harming_acked_data_and_recovers() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    let mut acked = Vec::new();
    // Room for exactly the first segment and little else.
    disk.set_capacity(Some(disk.used_bytes() + SEGMENT + 100));
    let body = vec![3u8; 500];
    let mut refused = None;
    for i in 0..20 {
        let r = store.put(&msg("D", 0, &body, ""), 10 + i);
        if r.status.is_stored() {
            drive_flush(&mut store, 10 + i);
            acked.push(r.wrote.unwrap().queue_offset);
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.unwrap();
    assert_eq!(refused.status, PutMessageStatus::ServiceNotAvailable);
    assert!(matches!(refused.refusal, Some(NotWritable::NoSpace { .. })));
    assert!(!acked.is_empty());
    // Still refused while the disk is full, accepted once space returns.
    store.handle_timeout(1_000_000, 12);
    assert_eq!(
        store.put(&msg("D", 0, &body, ""), 40).status,
        PutMessageStatus::ServiceNotAvailable
    );
    disk.set_capacity(None);
    store.handle_timeout(2_000_000, 12);
    let r = store.put(&msg("D", 0, &body, ""), 41);
    assert_eq!(r.status, PutMessageStatus::PutOk);
    assert_eq!(r.wrote.unwrap().queue_offset, acked.len() as u64);
    drive_flush(&mut store, 41);
    drop(store);
    disk.crash(None);
    let (store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    assert_eq!(store.max_offset_in_queue("D", 0), acked.len() as u64 + 1);
}

#[test]
fn disk_use_over_the_warning_level_refuses_writes_with_a_reason() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    put_ok(&mut store, &msg("D", 0, b"x", ""), 1);
    let used = disk.used_bytes();
    // 80 % used: over diskMaxUsedSpaceRatio (75), which only starts deleting expired
    // segments; writes go on as in RocketMQ.
    disk.set_capacity(Some(used * 5 / 4));
    store.handle_timeout(20_000, 12);
    put_ok(&mut store, &msg("D", 0, b"w", ""), 2);
    // 95 % used: over diskSpaceWarningLevelRatio (90).
    let used = disk.used_bytes();
    disk.set_capacity(Some(used * 20 / 19));
    store.handle_timeout(40_000, 12);
    let r = store.put(&msg("D", 0, b"y", ""), 3);
    assert_eq!(r.status, PutMessageStatus::ServiceNotAvailable);
    assert!(matches!(
        r.refusal,
        Some(NotWritable::DiskFull {
            used_percent: 95,
            limit_percent: 90
        })
    ));
    disk.set_capacity(Some(used * 10));
    store.handle_timeout(60_000, 12);
    assert_eq!(
        store.put(&msg("D", 0, b"z", ""), 4).status,
        PutMessageStatus::PutOk
    );
}

#[test]
fn retention_deletes_expired_segments_at_the_delete_hour() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    let body = vec![1u8; 900];
    // Segment 0 written at hour 0, segment 1 at hour 10, segment 2 at hour 80.
    for (i, t) in [
        0,
        0,
        0,
        0,
        10 * HOUR,
        10 * HOUR,
        10 * HOUR,
        10 * HOUR,
        80 * HOUR,
    ]
    .iter()
    .enumerate()
    {
        let r = store.put(&msg("Old", 0, &body, ""), *t + i as u64);
        assert_eq!(r.status, PutMessageStatus::PutOk);
    }
    // Only flushed segments are ever deleted.
    store.handle_timeout(83 * HOUR, 4);
    assert_eq!(store.commit_log_min_offset(), 0);
    drive_flush(&mut store, 83 * HOUR);
    // Wrong hour: nothing happens.
    store.handle_timeout(83 * HOUR + 20_000, 3);
    assert_eq!(store.commit_log_min_offset(), 0);
    // 04:00: segment 0 (last write at hour 10 by the next segment's first record) has expired;
    // segment 1 (last write at hour 80) has not.
    store.handle_timeout(83 * HOUR + 40_000, 4);
    assert_eq!(store.commit_log_min_offset(), SEGMENT);
    assert_eq!(store.min_offset_in_queue("Old", 0), 4);
    let got = store.get_messages("Old", 0, 0, 32, 1 << 20, &AcceptAll);
    assert_eq!(
        (got.status, got.next_begin_offset),
        (GetMessageStatus::OffsetTooSmall, 4)
    );
    assert_eq!(store.earliest_store_time(), Some(10 * HOUR + 4));
    // The deletion sticks across a restart.
    store.shutdown().unwrap();
    drop(store);
    let (store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    assert_eq!(store.min_offset_in_queue("Old", 0), 4);
    assert_eq!(store.max_offset_in_queue("Old", 0), 9);
}

#[test]
fn time_and_key_lookups() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    for i in 0..6u64 {
        let props = format!("KEYS\u{1}order-{} shared\u{2}UNIQ_KEY\u{1}U{i}\u{2}", i % 2);
        put_ok(&mut store, &msg("K", 0, b"v", &props), 1_000 * (i + 1));
    }
    assert_eq!(
        store.offset_by_timestamp("K", 0, 2_500, BoundaryType::Lower),
        2
    );
    assert_eq!(
        store.offset_by_timestamp("K", 0, 2_500, BoundaryType::Upper),
        1
    );
    assert_eq!(
        store.offset_by_timestamp("K", 0, 99_000, BoundaryType::Lower),
        6
    );
    assert_eq!(store.earliest_store_time(), Some(1_000));
    assert_eq!(store.earliest_store_time_in_queue("K", 0), Some(1_000));
    assert_eq!(store.store_time_at("K", 0, 3), Some(4_000));
    assert_eq!(
        store
            .query_by_key("K", "order-1", 10, 0, u64::MAX)
            .records
            .len(),
        3
    );
    assert_eq!(
        store
            .query_by_key("K", "shared", 4, 0, u64::MAX)
            .records
            .len(),
        4
    );
    assert_eq!(
        store.query_by_key("K", "U3", 10, 0, u64::MAX).records.len(),
        1
    );
    assert_eq!(
        store
            .query_by_key("K", "order-1", 10, 3_000, 4_500)
            .records
            .len(),
        1
    );
    assert_eq!(
        store
            .query_by_key("Other", "U3", 10, 0, u64::MAX)
            .records
            .len(),
        0
    );
}

#[test]
fn the_next_segment_is_requested_ahead_of_need() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    put_ok(&mut store, &msg("P", 0, &[0u8; 1000], ""), 1);
    assert_eq!(store.poll_preallocate(), None);
    put_ok(&mut store, &msg("P", 0, &[0u8; 1000], ""), 2);
    let ask = store.poll_preallocate().unwrap();
    assert_eq!(ask.name, "commitlog/00000000000000004096");
    assert_eq!(store.poll_preallocate(), None, "asked once");
    disk.create(&ask.name, ask.len).unwrap();
    for i in 0..4 {
        assert!(store
            .put(&msg("P", 0, &[0u8; 1000], ""), 3 + i)
            .status
            .is_stored());
    }
    assert_eq!(store.commit_log_max_offset() / SEGMENT, 1);
}

#[test]
fn async_flush_is_driven_by_the_timer() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    put_ok(&mut store, &msg("A", 0, b"tiny", ""), 1_000);
    assert!(store.poll_flush(1_100).is_none());
    let due = store.poll_timeout().unwrap();
    assert!(due <= 11_000);
    let req = store.poll_flush(11_000).unwrap();
    req.run(&disk).unwrap();
    store.handle_flushed(req.up_to);
    assert_eq!(store.flushed_offset(), store.commit_log_max_offset());
}

#[test]
fn a_record_torn_inside_its_properties_is_not_taken_for_whole() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::SyncFlush));
    put_ok(&mut store, &msg("T", 0, b"kept", "KEYS\u{1}a\u{2}"), 1);
    drive_flush(&mut store, 1);
    let torn = put_ok(
        &mut store,
        &msg("T", 0, b"torn", "KEYS\u{1}bbbbbbbb\u{2}"),
        2,
    );
    drop(store);
    // Everything but the last three property bytes reaches the disk: the body CRC still
    // matches, the sizes still add up.
    disk.crash(Some(u64::from(torn.wrote_bytes) - 3));
    let (store, report) = open(&disk, config(FlushDiskType::SyncFlush));
    let stop = report.stopped_at.unwrap();
    assert_eq!(stop.reason, CorruptionReason::TornFields);
    assert_eq!(stop.offset, torn.phys_offset);
    assert_eq!(store.max_offset_in_queue("T", 0), 1);
}

#[test]
fn properties_are_stored_with_their_final_separator() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    let info = put_ok(&mut store, &msg("T", 0, b"x", "KEYS\u{1}k"), 1);
    let stored = store.lookup_by_offset(info.phys_offset).unwrap();
    assert_eq!(
        &record::decode(&stored).unwrap().0.properties[..],
        b"KEYS\x01k\x02"
    );
    assert_eq!(
        store.query_by_key("T", "k", 4, 0, u64::MAX).records.len(),
        1
    );
}

#[test]
fn crash_recovery_zeroes_only_up_to_the_written_limit() {
    let disk = MemStorage::new();
    let segment = 16 * 1024 * 1024;
    let cfg = || {
        let mut cfg = config(FlushDiskType::SyncFlush);
        cfg.segment_size = segment;
        cfg
    };
    let (mut store, _) = open(&disk, cfg());
    let a = put_ok(&mut store, &msg("W", 0, b"a", ""), 1);
    drive_flush(&mut store, 1);
    drop(store);
    // Bytes far past anything the store wrote (and past the limit it promised): recovery
    // need not look there. Below the limit, stale bytes are zeroed.
    let name = "commitlog/00000000000000000000";
    disk.write_at(name, 12 * 1024 * 1024, b"far").unwrap();
    disk.write_at(name, 1024, b"near").unwrap();
    disk.sync(name, 0, segment).unwrap();
    let (_store, report) = open(&disk, cfg());
    assert_eq!(report.end_offset, u64::from(a.wrote_bytes));
    assert!(report.bytes_zeroed > 0);
    assert_eq!(&disk.read_at(name, 1024, 4).unwrap()[..], b"\0\0\0\0");
    assert_eq!(
        &disk.read_at(name, 12 * 1024 * 1024, 3).unwrap()[..],
        b"far"
    );
}

#[test]
fn a_deleted_topic_has_no_queues_left() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    put_ok(&mut store, &msg("Gone", 0, b"x", ""), 1);
    put_ok(&mut store, &msg("Kept", 0, b"y", ""), 2);
    store.delete_topic("Gone").unwrap();
    let got = store.get_messages("Gone", 0, 0, 32, 1 << 20, &AcceptAll);
    assert_eq!(got.status, GetMessageStatus::NoMatchedLogicQueue);
    assert_eq!(store.max_offset_in_queue("Kept", 0), 1);
    assert!(disk.list_dirs("consumequeue/Gone").unwrap().is_empty());
}

#[test]
fn the_timer_does_not_spin_while_a_flush_is_in_flight() {
    let disk = MemStorage::new();
    let (mut store, _) = open(&disk, config(FlushDiskType::AsyncFlush));
    put_ok(&mut store, &msg("A", 0, b"x", ""), 1_000);
    store.handle_timeout(50_000, 12);
    let req = store.poll_flush(50_000).unwrap();
    assert!(req
        .ranges
        .iter()
        .any(|(name, _, _)| name.starts_with("consumequeue/A/0/")));
    assert!(
        store.poll_timeout().unwrap() > 50_000,
        "nothing to do until the flush completes"
    );
    req.run(&disk).unwrap();
    store.handle_flushed(req.up_to);
    // The consume-queue part came along with it: the queue's unit survives a crash.
    drop(store);
    disk.crash(None);
    let (_store, report) = open(&disk, config(FlushDiskType::AsyncFlush));
    assert_eq!(report.records_redispatched, 0);
}
