//! Tests of the store's controller-mode parts over `MemStorage`: the epoch file's wiring,
//! `truncate_to` (including a crash at every write it makes) and reads limited by the confirm
//! offset.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::epoch::{EpochEntry, EPOCH_FILE};
use crate::format::record::{self, MessageRecord};
use crate::status::GetMessageStatus;
use crate::storage::MemStorage;

const SEGMENT: u64 = 4096;
const TOPICS: [&str; 2] = ["TopicA", "TopicB"];

fn config() -> StoreConfig {
    StoreConfig {
        consume_queue: crate::consume_queue::ConsumeQueueConfig { units_per_file: 8 },
        ..StoreConfig::compact(SEGMENT)
    }
}

fn open(disk: &MemStorage, cfg: StoreConfig) -> MessageStore<MemStorage> {
    MessageStore::open(disk.clone(), cfg, 1_000).unwrap().0
}

fn msg(topic: &str, queue_id: i32, body_len: usize, key: &str) -> MessageRecord {
    MessageRecord {
        queue_id,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: 1,
        born_host: "192.168.0.9:5555".parse().unwrap(),
        store_timestamp: 0,
        store_host: "10.0.0.1:10911".parse().unwrap(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: Bytes::from(vec![b'x'; body_len]),
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        properties: Bytes::from(format!("KEYS\u{1}{key}\u{2}")),
    }
}

/// What the test wrote: per message its queue, key and commit-log span.
#[derive(Debug, Clone)]
struct Sent {
    topic: &'static str,
    queue_id: i32,
    key: String,
    phys: u64,
    end: u64,
}

/// Puts `n` messages (numbered from `first`) over two topics and three queues.
fn put_n(store: &mut MessageStore<MemStorage>, first: usize, n: usize) -> Vec<Sent> {
    (first..first + n)
        .map(|i| {
            let topic = TOPICS[i % 2];
            let queue_id = (i % 3) as i32;
            let key = format!("k{i}");
            let r = store.put(
                &msg(topic, queue_id, 40 + (i * 53) % 250, &key),
                2_000 + i as u64,
            );
            assert!(r.status.is_stored(), "{r:?}");
            let w = r.wrote.unwrap();
            Sent {
                topic,
                queue_id,
                key,
                phys: w.phys_offset,
                end: w.phys_offset + u64::from(w.wrote_bytes),
            }
        })
        .collect()
}

/// Every record a consumer of `topic`/`queue_id` reads from offset 0, as commit-log offsets.
fn read_all(store: &MessageStore<MemStorage>, topic: &str, queue_id: i32) -> Vec<u64> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let r = store.get_messages(topic, queue_id, at, 32, u64::MAX, &AcceptAll);
        if r.status != GetMessageStatus::Found {
            return out;
        }
        for rec in &r.records {
            out.push(u64::try_from(record::decode(rec).unwrap().0.physical_offset).unwrap());
        }
        at = r.next_begin_offset;
    }
}

/// The commit log's bytes from its min to its max offset.
fn log_bytes(store: &MessageStore<MemStorage>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = store.commit_log_min_offset();
    while let Some(chunk) = store.commit_log_data(at) {
        at += chunk.len() as u64;
        out.extend_from_slice(&chunk);
    }
    out
}

/// The store holds exactly the messages of `sent` that end at or below its commit-log end:
/// in their queues, by key, and nothing else.
fn assert_holds_prefix(store: &MessageStore<MemStorage>, sent: &[Sent]) {
    let max = store.commit_log_max_offset();
    for topic in TOPICS {
        for queue_id in 0..3 {
            let want: Vec<u64> = sent
                .iter()
                .filter(|s| s.topic == topic && s.queue_id == queue_id && s.end <= max)
                .map(|s| s.phys)
                .collect();
            assert_eq!(read_all(store, topic, queue_id), want, "{topic}/{queue_id}");
            assert_eq!(
                store.max_offset_in_queue(topic, queue_id),
                want.len() as u64
            );
        }
    }
    for s in sent {
        let found = store.query_by_key(s.topic, &s.key, 4, 0, u64::MAX);
        assert_eq!(
            !found.records.is_empty(),
            s.end <= max,
            "key {} at {} with the log ending at {max}",
            s.key,
            s.phys
        );
    }
}

/// Drains flush requests inline.
fn drive_flush(store: &mut MessageStore<MemStorage>, now: u64) {
    while let Some(req) = store.poll_flush(now) {
        req.run(store.storage()).unwrap();
        store.handle_flushed(req.up_to);
    }
}

#[test]
fn truncate_cuts_log_queues_index_and_epochs_and_the_store_grows_again() {
    let disk = MemStorage::new();
    let mut store = open(&disk, config());
    store.append_epoch(1, 0).unwrap();
    let mut sent = put_n(&mut store, 0, 40);
    let cut = sent[25].phys;
    store.append_epoch(2, sent[20].phys).unwrap();
    store.append_epoch(3, cut).unwrap();
    store.append_epoch(4, sent[30].phys).unwrap();
    assert!(
        store.commit_log_max_offset() > 2 * SEGMENT,
        "spans segments"
    );
    // A segment created ahead of need must go too, or the next open finds a gap.
    let ahead = store
        .poll_preallocate()
        .expect("the last segment is half full");
    disk.create(&ahead.name, ahead.len).unwrap();
    store.set_slave(true);
    assert_eq!(store.truncate_to(cut), Ok(cut));
    assert_eq!(store.commit_log_max_offset(), cut);
    sent.truncate(25);
    assert_holds_prefix(&store, &sent);
    assert_eq!(
        store.epochs().entries(),
        &[
            EpochEntry {
                epoch: 1,
                start_offset: 0
            },
            EpochEntry {
                epoch: 2,
                start_offset: sent[20].phys
            },
        ]
    );
    // Stale epochs stay refused; the next one starts at the cut.
    assert!(matches!(
        store.append_epoch(1, cut),
        Err(TruncateError::Epoch(crate::epoch::EpochError::Stale { .. }))
    ));
    store.set_slave(false);
    store.append_epoch(5, cut).unwrap();
    // New records reuse the cut offsets and queue offsets; the index takes them again.
    sent.extend(put_n(&mut store, 100, 10));
    assert_eq!(sent[25].phys, cut);
    assert_holds_prefix(&store, &sent);
    // And all of it survives a clean restart and a crash.
    store.shutdown().unwrap();
    drop(store);
    let mut store = open(&disk, config());
    assert_holds_prefix(&store, &sent);
    assert_eq!(store.epochs().last_epoch(), Some(5));
    store.flush_all().unwrap();
    drop(store);
    disk.crash(None);
    let store = open(&disk, config());
    assert_holds_prefix(&store, &sent);
}

#[test]
fn truncate_refuses_offsets_inside_records_and_ignores_offsets_past_the_end() {
    let disk = MemStorage::new();
    let mut store = open(&disk, config());
    let sent = put_n(&mut store, 0, 30);
    let before = log_bytes(&store);
    for offset in [sent[3].phys + 1, sent[3].phys + 8, sent[5].end - 1] {
        assert!(
            matches!(
                store.truncate_to(offset),
                Err(TruncateError::NotRecordBoundary { .. })
            ),
            "{offset}"
        );
    }
    // Inside the blank filler at a segment's end.
    let blank_at = sent
        .windows(2)
        .find(|w| w[0].end != w[1].phys)
        .map(|w| w[0].end)
        .unwrap();
    assert_eq!(store.truncate_to(blank_at + 8).ok(), None);
    let max = store.commit_log_max_offset();
    assert_eq!(store.truncate_to(max + 100), Ok(max));
    assert_eq!(log_bytes(&store), before);
    assert_holds_prefix(&store, &sent);
    // A blank marker's start is a boundary: the records before it stay.
    assert_eq!(store.truncate_to(blank_at), Ok(blank_at));
    let kept: Vec<Sent> = sent.iter().filter(|s| s.end <= blank_at).cloned().collect();
    assert_holds_prefix(&store, &kept);
}

#[test]
fn a_flush_in_flight_across_a_truncation_does_not_count() {
    let disk = MemStorage::new();
    let mut store = open(&disk, config());
    let sent = put_n(&mut store, 0, 20);
    let req = store.poll_flush(10_000).expect("a flush is due");
    let cut = sent[5].phys;
    store.truncate_to(cut).unwrap();
    // Nothing new starts while the voided request is out.
    assert!(store.poll_flush(20_000).is_none());
    req.run(&disk).unwrap();
    store.handle_flushed(req.up_to);
    assert!(store.flushed_offset() <= cut);
    let more = put_n(&mut store, 100, 3);
    drive_flush(&mut store, 30_000);
    assert_eq!(store.flushed_offset(), store.commit_log_max_offset());
    drop(store);
    disk.crash(None);
    let store = open(&disk, config());
    let mut all: Vec<Sent> = sent[..5].to_vec();
    all.extend(more);
    assert_holds_prefix(&store, &all);
}

/// Leaves the disk's pending injected write failure, if any, used up.
fn disarm(disk: &MemStorage) {
    disk.create("scratch", 1).unwrap();
    while disk.write_at("scratch", 0, b"x").is_ok() {}
    disk.delete("scratch").unwrap();
}

#[test]
fn a_crash_at_any_write_of_a_truncation_recovers_the_old_log_or_its_prefix() {
    let mut completed = false;
    for n in 1..400u64 {
        let disk = MemStorage::new();
        let mut store = open(&disk, config());
        store.append_epoch(1, 0).unwrap();
        let sent = put_n(&mut store, 0, 45);
        let cut = sent[12].phys;
        store.append_epoch(2, cut).unwrap();
        store.append_epoch(3, sent[30].phys).unwrap();
        // Half the log durable, the rest in the page cache only.
        store.flush_all().unwrap();
        let sent_more = put_n(&mut store, 45, 5);
        let old_bytes = log_bytes(&store);
        let old_max = store.commit_log_max_offset();
        let mut all = sent.clone();
        all.extend(sent_more);
        store.set_slave(true);
        disk.fail_write_after(n);
        let result = store.truncate_to(cut);
        drop(store);
        if result.is_ok() {
            disarm(&disk);
        }
        disk.crash(Some(n * 13));
        let store = open(&disk, config());
        let max = store.commit_log_max_offset();
        // The unsynced tail may be gone; what is left is the old log or the prefix.
        assert!(
            max == cut || (max > cut && max <= old_max),
            "write {n}: end {max}"
        );
        let bytes = log_bytes(&store);
        assert_eq!(bytes[..], old_bytes[..bytes.len()], "write {n}");
        if result.is_ok() {
            assert_eq!(max, cut, "a completed truncation is durable");
        }
        assert_holds_prefix(&store, &all);
        assert!(
            store
                .epochs()
                .entries()
                .iter()
                .all(|e| e.start_offset <= max),
            "write {n}: {:?}",
            store.epochs().entries()
        );
        assert_eq!(store.epochs().entries()[0].epoch, 1);
        if result.is_ok() {
            completed = true;
            break;
        }
    }
    assert!(completed, "the truncation never ran to completion");
}

#[test]
fn epoch_entries_past_the_recovered_end_are_dropped_at_open() {
    let disk = MemStorage::new();
    let mut store = open(&disk, config());
    store.append_epoch(3, 0).unwrap();
    let sent = put_n(&mut store, 0, 5);
    let end = store.commit_log_max_offset();
    store.append_epoch(4, end).unwrap();
    store.shutdown().unwrap();
    drop(store);
    // An entry beyond the log, as a crash mid-truncation leaves it.
    let text = crate::epoch::encode(&[
        EpochEntry {
            epoch: 3,
            start_offset: 0,
        },
        EpochEntry {
            epoch: 4,
            start_offset: end,
        },
        EpochEntry {
            epoch: 6,
            start_offset: end + 10,
        },
    ]);
    disk.delete(EPOCH_FILE).unwrap();
    disk.create(EPOCH_FILE, text.len() as u64).unwrap();
    disk.write_at(EPOCH_FILE, 0, text.as_bytes()).unwrap();
    disk.sync(EPOCH_FILE, 0, text.len() as u64).unwrap();
    let store = open(&disk, config());
    assert_eq!(store.epochs().last_epoch(), Some(4));
    assert_holds_prefix(&store, &sent);
    drop(store);
    // A damaged file with a damaged backup refuses the open, naming the file.
    disk.corrupt_byte(EPOCH_FILE, 0).unwrap();
    disk.corrupt_byte(&format!("{EPOCH_FILE}.bak"), 0).unwrap();
    match MessageStore::open(disk.clone(), config(), 1_000) {
        Err(OpenError::Epoch(crate::epoch::EpochError::Corrupt { name, .. })) => {
            assert_eq!(name, EPOCH_FILE)
        }
        other => panic!("expected an epoch error, got {:?}", other.map(|_| ())),
    }
}

fn limited() -> StoreConfig {
    StoreConfig {
        limit_reads_to_confirm_offset: true,
        ..config()
    }
}

#[test]
fn reads_stop_at_the_confirm_offset_and_follow_it() {
    let disk = MemStorage::new();
    let mut store = open(&disk, limited());
    let sent = put_n(&mut store, 0, 30);
    let q0: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.topic == "TopicA" && s.queue_id == 0)
        .collect();
    assert!(q0.len() >= 4);
    // Nothing confirmed: the queue looks empty and a pull waits.
    let r = store.get_messages("TopicA", 0, 0, 32, u64::MAX, &AcceptAll);
    assert_eq!(r.status, GetMessageStatus::OffsetOverflowOne);
    assert_eq!((r.next_begin_offset, r.max_offset), (0, 0));
    assert_eq!(store.max_offset_in_queue("TopicA", 0), 0);
    // Confirmed through the third message of the queue, and one byte into the fourth.
    for confirm in [q0[2].end, q0[3].phys + 1] {
        store.set_confirm_offset(confirm);
        assert_eq!(store.confirm_offset(), confirm);
        let r = store.get_messages("TopicA", 0, 0, 32, u64::MAX, &AcceptAll);
        assert_eq!(r.status, GetMessageStatus::Found);
        assert_eq!(r.records.len(), 3);
        assert_eq!((r.next_begin_offset, r.max_offset), (3, 3));
        assert_eq!(store.max_offset_in_queue("TopicA", 0), 3);
        let late = crate::status::BoundaryType::Lower;
        assert_eq!(store.offset_by_timestamp("TopicA", 0, 99_000, late), 3);
        // At stored but unconfirmed messages: wait, do not skip.
        let r = store.get_messages("TopicA", 0, 3, 32, u64::MAX, &AcceptAll);
        assert_eq!(r.status, GetMessageStatus::OffsetOverflowOne);
        assert_eq!(r.next_begin_offset, 3);
        let past = q0.len() as u64 + 5;
        let r = store.get_messages("TopicA", 0, past, 32, u64::MAX, &AcceptAll);
        assert_eq!(r.status, GetMessageStatus::OffsetOverflowBadly);
        assert_eq!(r.next_begin_offset, 3);
    }
    // Everything confirmed, and past the end (a slave behind its master): all visible.
    store.set_confirm_offset(u64::MAX);
    assert_holds_prefix(&store, &sent);
    let listed = store.queues();
    assert!(listed
        .iter()
        .any(|(t, q, _, max)| t == "TopicA" && *q == 0 && *max == q0.len() as u64));
    // The confirm offset survives a restart, capped at the recovered end.
    store.set_confirm_offset(sent[10].end);
    store.shutdown().unwrap();
    drop(store);
    let store = open(&disk, limited());
    assert_eq!(store.confirm_offset(), sent[10].end);
    let visible: Vec<Sent> = sent
        .iter()
        .filter(|s| s.end <= sent[10].end)
        .cloned()
        .collect();
    for topic in TOPICS {
        for queue_id in 0..3 {
            let want: Vec<u64> = visible
                .iter()
                .filter(|s| s.topic == topic && s.queue_id == queue_id)
                .map(|s| s.phys)
                .collect();
            assert_eq!(read_all(&store, topic, queue_id), want);
        }
    }
}

#[test]
fn without_the_limit_the_confirm_offset_changes_nothing() {
    let disk = MemStorage::new();
    let mut store = open(&disk, config());
    let sent = put_n(&mut store, 0, 20);
    store.set_confirm_offset(0);
    assert_holds_prefix(&store, &sent);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Whatever the confirm offset, each queue shows exactly its messages ending at or below
    /// it (and below the log's end), in order.
    #[test]
    fn each_queue_shows_exactly_its_confirmed_messages(
        n in 1usize..60,
        confirms in proptest::collection::vec(0u64..20_000, 1..6),
    ) {
        let disk = MemStorage::new();
        let mut store = open(&disk, limited());
        let sent = put_n(&mut store, 0, n);
        for confirm in confirms {
            store.set_confirm_offset(confirm);
            for topic in TOPICS {
                for queue_id in 0..3 {
                    let want: Vec<u64> = sent
                        .iter()
                        .filter(|s| s.topic == topic && s.queue_id == queue_id && s.end <= confirm)
                        .map(|s| s.phys)
                        .collect();
                    prop_assert_eq!(store.max_offset_in_queue(topic, queue_id), want.len() as u64);
                    prop_assert_eq!(read_all(&store, topic, queue_id), want);
                }
            }
        }
    }
}
