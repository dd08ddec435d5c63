//! Scenario tests for delay levels and the retry ladder: a [`Broker`] over `MemStorage`, fed
//! sends and CONSUMER_SEND_MSG_BACK as clients send them, with time moved by hand; and a seeded
//! crash test over MemStorage's crash model proving that what was durably sent is delivered,
//! never before its time, and that `delayOffset.json` never runs ahead of the flushed copies.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use store_core::config;
use store_core::dispatch::SCHEDULE_TOPIC;
use store_core::flush::FlushDiskType;
use store_core::format::properties::Properties;
use store_core::format::record::{decode_with, CrcCheck, MessageRecord};
use store_core::storage::MemStorage;
use store_core::store::{AcceptAll, StoreConfig};

use super::schedule::{DelayOffsetSerializeWrapper, DELIVER_MAX_PER_TICK};
use super::test_support::{ask_conn1, open_with_client, read_queue, request, send_message};
use super::*;

const T0: u64 = 1_700_000_000_000;
/// Level `l` waits `l` seconds: every rung of the ladder is told apart by its delay.
const LEVELS: usize = 20;

fn level_ms(level: i32) -> u64 {
    u64::try_from(level).unwrap() * 1000
}

/// One broker, its disk and its clock.
struct Node {
    disk: MemStorage,
    config: BrokerConfig,
    broker: Broker<MemStorage>,
    now_ms: u64,
    opaque: i32,
}

impl Node {
    fn new(tweak: impl FnOnce(&mut BrokerConfig)) -> Node {
        let mut config = BrokerConfig {
            store: StoreConfig::compact(1 << 20),
            ..BrokerConfig::default()
        };
        config.store.message_delay_level_ms = (1..=LEVELS as u64).map(|l| l * 1000).collect();
        tweak(&mut config);
        let disk = MemStorage::new();
        let broker = open_with_client(&disk, &config, T0);
        Node {
            disk,
            config,
            broker,
            now_ms: T0,
            opaque: 0,
        }
    }

    /// One request, one turn; the response.
    fn ask(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        ask_conn1(&mut self.broker, &mut self.opaque, self.now_ms, cmd)
    }

    /// Moves the clock by `ms` and runs the timers once.
    fn tick(&mut self, ms: u64) {
        self.now_ms += ms;
        self.broker.handle_timeout(self.now_ms);
        self.broker.handle_turn_end(self.now_ms);
        while self.broker.poll_transmit().is_some() {}
    }

    /// Power loss, then a restart on what the disk kept.
    fn crash(&mut self) {
        self.disk.crash(None);
        self.broker = open_with_client(&self.disk, &self.config, self.now_ms);
    }

    fn send(&mut self, topic: &str, queue_id: i32, props: &str, body: &[u8]) -> RemotingCommand {
        self.ask(send_message(
            topic,
            queue_id,
            props,
            Bytes::copy_from_slice(body),
        ))
    }

    fn send_back(&mut self, offset: i64, delay_level: i32, max: Option<i32>) -> RemotingCommand {
        let offset = offset.to_string();
        let delay_level = delay_level.to_string();
        let max = max.map(|m| m.to_string());
        let mut fields = vec![
            ("offset", offset.as_str()),
            ("group", "cg"),
            ("delayLevel", delay_level.as_str()),
            ("originTopic", "Work"),
        ];
        if let Some(max) = &max {
            fields.push(("maxReconsumeTimes", max.as_str()));
        }
        let mut cmd = request(RequestCode::ConsumerSendMsgBack, &fields);
        // A client of V4_9_4: the header's maxReconsumeTimes counts.
        cmd.version = 433;
        self.ask(cmd)
    }

    /// Every record of a queue, in order.
    fn read(&self, topic: &str, queue_id: i32) -> Vec<MessageRecord> {
        read_queue(&self.broker, topic, queue_id)
    }

    fn delay_file(&self) -> BTreeMap<i32, i64> {
        config::load::<DelayOffsetSerializeWrapper, _>(&self.disk)
            .unwrap()
            .map(|w| w.offset_table)
            .unwrap_or_default()
    }
}

fn props(record: &MessageRecord) -> Properties {
    Properties::parse_bytes(&record.properties)
}

fn delayed(level: i32, key: &str) -> String {
    format!("DELAY\u{1}{level}\u{2}UNIQ_KEY\u{1}{key}\u{2}TAGS\u{1}TagA\u{2}")
}

#[test]
fn a_delayed_send_waits_in_its_level_queue_until_due() {
    let mut n = Node::new(|_| {});
    let r = n.send("Late", 2, &delayed(4, "U1"), b"later");
    assert_eq!(r.code, 0, "{:?}", r.remark);
    assert_eq!(r.ext("queueId"), Some("2"));
    assert!(n.read("Late", 2).is_empty());
    let parked = n.read(SCHEDULE_TOPIC, 3);
    assert_eq!(parked.len(), 1);
    let p = props(&parked[0]);
    assert_eq!(p.get("REAL_TOPIC"), Some("Late"));
    assert_eq!(p.get("REAL_QID"), Some("2"));
    assert_eq!(p.get("DELAY"), Some("4"));
    assert_eq!(n.broker.schedule().next_wake(), Some(T0 + 4000));

    n.tick(3999);
    assert!(n.read("Late", 2).is_empty(), "delivered early");
    n.tick(1);
    let got = n.read("Late", 2);
    assert_eq!(got.len(), 1);
    let p = props(&got[0]);
    assert_eq!(&got[0].body[..], b"later");
    assert_eq!(p.get("DELAY"), None);
    assert_eq!(p.get("UNIQ_KEY"), Some("U1"));
    assert_eq!(p.get("TAGS"), Some("TagA"));
    assert_eq!(p.get("REAL_TOPIC"), Some("Late"));
    assert_eq!(u64::try_from(got[0].store_timestamp).unwrap(), T0 + 4000);
    // The level is idle again: no timer for it.
    assert_eq!(n.broker.schedule().next_wake(), None);
    // Progress reaches the file once the copy is flushed.
    n.broker.shutdown(n.now_ms).unwrap();
    assert_eq!(n.delay_file().get(&4), Some(&1));
}

#[test]
fn levels_above_the_last_are_clamped_and_batches_cannot_be_delayed() {
    let mut n = Node::new(|c| c.store.message_delay_level_ms = vec![1000, 2000]);
    assert_eq!(n.send("T", 0, &delayed(99, "U"), b"x").code, 0);
    assert_eq!(props(&n.read(SCHEDULE_TOPIC, 1)[0]).get("DELAY"), Some("2"));
    n.tick(2000);
    assert_eq!(n.read("T", 0).len(), 1);
    // A negative or zero level is not a delay.
    assert_eq!(n.send("T", 0, "DELAY\u{1}0\u{2}", b"y").code, 0);
    assert_eq!(n.send("T", 0, "DELAY\u{1}-1\u{2}", b"z").code, 0);
    assert_eq!(n.read("T", 0).len(), 3);

    let mut cmd = request(
        RequestCode::SendMessage,
        &[
            ("producerGroup", "pg"),
            ("topic", "T"),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", "0"),
            ("sysFlag", "0"),
            ("bornTimestamp", "1"),
            ("flag", "0"),
            ("properties", "DELAY\u{1}1\u{2}"),
            ("batch", "true"),
        ],
    );
    cmd.body = Bytes::new();
    let r = n.ask(cmd);
    assert_eq!(
        r.code,
        ResponseCode::MessageIllegal.value(),
        "{:?}",
        r.remark
    );
}

#[test]
fn one_tick_delivers_a_bounded_batch_and_comes_back_for_the_rest() {
    let mut n = Node::new(|_| {});
    let total = DELIVER_MAX_PER_TICK * 2 + 5;
    for i in 0..total {
        let r = n.send(
            "Busy",
            0,
            &delayed(1 + (i % 2) as i32, &format!("U{i}")),
            b"m",
        );
        assert_eq!(r.code, 0);
    }
    n.now_ms += 5000;
    n.broker.handle_timeout(n.now_ms);
    assert_eq!(n.read("Busy", 0).len(), DELIVER_MAX_PER_TICK);
    // The rest is due now: the broker asks to be called again at once.
    assert!(n
        .broker
        .schedule()
        .next_wake()
        .is_some_and(|at| at <= n.now_ms));
    n.tick(0);
    n.tick(0);
    n.tick(0);
    let got = n.read("Busy", 0);
    assert_eq!(got.len(), total);
    let keys: BTreeSet<String> = got
        .iter()
        .map(|r| props(r).get("UNIQ_KEY").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), total);
}

#[test]
fn send_back_walks_the_retry_ladder_to_the_dlq() {
    let mut n = Node::new(|_| {});
    assert_eq!(
        n.send("Work", 1, "UNIQ_KEY\u{1}U\u{2}KEYS\u{1}k\u{2}", b"job")
            .code,
        0
    );
    let first = n.read("Work", 1).remove(0);
    let first_id = first.msg_id();
    let max = 4;
    let mut current = first.clone();
    for attempt in 0..max {
        let r = n.send_back(current.physical_offset, 0, Some(max));
        assert_eq!(r.code, 0, "{:?}", r.remark);
        assert!(n.broker.topics().contains("%RETRY%cg"));
        // Delay level 3 + reconsumeTimes: here that many seconds.
        let wait = level_ms(3 + attempt);
        let before = n.read("%RETRY%cg", 0).len();
        n.tick(wait - 1);
        assert_eq!(
            n.read("%RETRY%cg", 0).len(),
            before,
            "retry {attempt} early"
        );
        n.tick(1);
        let retries = n.read("%RETRY%cg", 0);
        assert_eq!(retries.len(), before + 1, "retry {attempt} not delivered");
        current = retries[before].clone();
        assert_eq!(current.reconsume_times, attempt + 1);
        assert_eq!(&current.body[..], b"job");
        let p = props(&current);
        assert_eq!(p.get("RETRY_TOPIC"), Some("Work"));
        assert_eq!(p.get("ORIGIN_MESSAGE_ID"), Some(first_id.as_str()));
        assert_eq!(p.get("UNIQ_KEY"), Some("U"));
        assert_eq!(p.get("KEYS"), Some("k"));
        assert_eq!(p.get("DELAY"), None);
        assert_eq!(current.born_host, first.born_host);
    }
    // Reconsumed `max` times: the next send-back goes to the DLQ at once.
    assert_eq!(n.send_back(current.physical_offset, 0, Some(max)).code, 0);
    let dlq = n.broker.topics().select("%DLQ%cg").unwrap();
    assert_eq!(
        (dlq.perm, dlq.read_queue_nums, dlq.write_queue_nums),
        (6, 1, 1)
    );
    let dead = n.read("%DLQ%cg", 0);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reconsume_times, max + 1);
    let p = props(&dead[0]);
    assert_eq!(p.get("RETRY_TOPIC"), Some("Work"));
    assert_eq!(p.get("ORIGIN_MESSAGE_ID"), Some(first_id.as_str()));
    assert_eq!(p.get("DELAY"), Some("0"));
    assert_eq!(&dead[0].body[..], b"job");
}

#[test]
fn a_client_level_is_kept_and_a_negative_one_goes_straight_to_the_dlq() {
    let mut n = Node::new(|_| {});
    assert_eq!(n.send("Work", 0, "", b"a").code, 0);
    let original = n.read("Work", 0).remove(0);
    assert_eq!(n.send_back(original.physical_offset, 7, Some(16)).code, 0);
    n.tick(6999);
    assert!(n.read("%RETRY%cg", 0).is_empty());
    n.tick(1);
    assert_eq!(n.read("%RETRY%cg", 0).len(), 1);

    assert_eq!(n.send_back(original.physical_offset, -1, Some(16)).code, 0);
    assert_eq!(n.read("%DLQ%cg", 0).len(), 1);
    let r = n.send_back(1 << 40, 0, Some(16));
    assert_eq!(r.code, ResponseCode::SystemError.value());
}

#[test]
fn without_the_header_limit_the_group_retry_max_times_counts() {
    let mut n = Node::new(|_| {});
    assert_eq!(n.send("Work", 0, "", b"a").code, 0);
    let mut offset = n.read("Work", 0)[0].physical_offset;
    // The group's default: 16 retries, then the DLQ.
    for attempt in 0..16 {
        assert_eq!(n.send_back(offset, 0, None).code, 0);
        n.tick(level_ms(LEVELS as i32));
        let retries = n.read("%RETRY%cg", 0);
        assert_eq!(retries.len(), attempt + 1);
        offset = retries[attempt].physical_offset;
        assert!(n.read("%DLQ%cg", 0).is_empty());
    }
    assert_eq!(n.send_back(offset, 0, None).code, 0);
    assert_eq!(n.read("%DLQ%cg", 0)[0].reconsume_times, 17);
}

#[test]
fn a_restart_resumes_each_level_where_the_file_says() {
    let mut n = Node::new(|c| c.store.flush.flush_disk_type = FlushDiskType::SyncFlush);
    for i in 0..3 {
        assert_eq!(n.send("R", 0, &delayed(2, &format!("A{i}")), b"a").code, 0);
    }
    n.tick(2000);
    assert_eq!(n.read("R", 0).len(), 3);
    for i in 0..2 {
        assert_eq!(n.send("R", 0, &delayed(5, &format!("B{i}")), b"b").code, 0);
    }
    let sent_b = n.now_ms;
    // The persist timer writes the file; then power fails.
    n.tick(3000);
    assert_eq!(n.delay_file().get(&2), Some(&3));
    n.crash();
    n.tick(1);
    assert_eq!(
        n.read("R", 0).len(),
        3,
        "level 2 delivered again or B early"
    );
    n.now_ms = sent_b + 4999;
    n.tick(0);
    assert_eq!(n.read("R", 0).len(), 3, "B early");
    n.tick(1);
    assert_eq!(n.read("R", 0).len(), 5);
}

#[test]
fn after_the_clock_went_back_a_message_waits_at_most_its_delay() {
    let mut n = Node::new(|c| c.store.flush.flush_disk_type = FlushDiskType::SyncFlush);
    assert_eq!(n.send("Back", 0, &delayed(4, "U"), b"x").code, 0);
    n.broker.shutdown(n.now_ms).unwrap();
    // Restarted with the wall clock an hour behind: Java's correctDeliverTimestamp delivers
    // rather than hold the message for an hour and four seconds.
    n.now_ms -= 3_600_000;
    n.broker = open_with_client(&n.disk, &n.config, n.now_ms);
    n.tick(0);
    assert_eq!(n.read("Back", 0).len(), 1);
}

/// One message the crash test sent: when, with which delay, and whether the disk kept it.
struct Sent {
    at_ms: u64,
    delay_ms: u64,
    /// Commit-log end of its schedule record: it must arrive once the store flushed this far.
    end: u64,
}

#[test]
fn crashes_lose_no_durable_delayed_message_and_deliver_none_early() {
    for seed in 1..=6_u64 {
        crash_run(seed);
    }
}

fn crash_run(seed: u64) {
    let mut rng = SplitMix64(seed);
    let mut n = Node::new(|c| {
        c.store.message_delay_level_ms = vec![1000, 3000, 7000];
        // Small pages flush often enough that some copies are durable and some are not.
        c.store.flush.least_pages = 1;
        // Persist the delay offsets every second, so crashes land between writes often.
        c.flush_consumer_offset_interval_ms = 1000;
    });
    let mut sent: BTreeMap<String, Sent> = BTreeMap::new();
    let mut lost: BTreeSet<String> = BTreeSet::new();
    let mut crashes = 0;
    for step in 0..400 {
        match rng.below(10) {
            0..=4 => {
                let level = 1 + rng.below(3);
                let key = format!("S{seed}-{step}");
                let body = vec![b'x'; 1 + usize::try_from(rng.below(3000)).unwrap()];
                let r = n.send("Crash", rng.below(2), &delayed(level, &key), &body);
                assert_eq!(r.code, 0, "{:?}", r.remark);
                let delay_ms = n.config.store.message_delay_level_ms[level as usize - 1];
                let end = n.broker.store().commit_log_max_offset();
                sent.insert(
                    key,
                    Sent {
                        at_ms: n.now_ms,
                        delay_ms,
                        end,
                    },
                );
            }
            5..=8 => n.tick(u64::try_from(rng.below(700)).unwrap()),
            _ => {
                let flushed = n.broker.store().flushed_offset();
                let unflushed = sent.iter().filter(|(_, s)| s.end > flushed);
                lost.extend(unflushed.map(|(k, _)| k.clone()));
                n.crash();
                crashes += 1;
            }
        }
        check_file_behind_flushed_copies(&n);
    }
    for _ in 0..20 {
        n.tick(1000);
    }
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for queue_id in 0..2 {
        for copy in n.read("Crash", queue_id) {
            let key = props(&copy).get("UNIQ_KEY").unwrap().to_string();
            let s = &sent[&key];
            let stored = u64::try_from(copy.store_timestamp).unwrap();
            assert!(
                stored >= s.at_ms + s.delay_ms,
                "seed {seed}: {key} delivered early"
            );
            *copies.entry(key).or_default() += 1;
        }
    }
    for key in sent.keys().filter(|k| !lost.contains(*k)) {
        assert!(copies.contains_key(key), "seed {seed}: {key} lost");
    }
    assert!(crashes > 0, "seed {seed} never crashed");
}

/// What `delayOffset.json` claims delivered has a copy in the flushed commit log: a crash now
/// loses nothing the file skips.
fn check_file_behind_flushed_copies(n: &Node) {
    let flushed = n.broker.store().flushed_offset();
    let store = n.broker.store();
    let mut durable_keys = BTreeSet::new();
    for queue_id in 0..2 {
        let mut offset = store.min_offset_in_queue("Crash", queue_id);
        while offset < store.max_offset_in_queue("Crash", queue_id) {
            let got = store.get_messages("Crash", queue_id, offset, 32, 1 << 20, &AcceptAll);
            offset = got.next_begin_offset;
            for bytes in &got.records {
                let (r, size) = decode_with(bytes, CrcCheck::Skip).unwrap();
                let end = u64::try_from(r.physical_offset).unwrap() + size as u64;
                if end <= flushed {
                    durable_keys.insert(props(&r).get("UNIQ_KEY").unwrap().to_string());
                }
            }
        }
    }
    for (level, upto) in n.delay_file() {
        let claimed = n.read(SCHEDULE_TOPIC, level - 1);
        for parked in claimed.iter().take(usize::try_from(upto).unwrap()) {
            let key = props(parked).get("UNIQ_KEY").unwrap().to_string();
            assert!(
                durable_keys.contains(&key),
                "file passed {key} before its copy was durable"
            );
        }
    }
}
