//! Scenario tests for timer messages: a [`Broker`] over `MemStorage` fed sends with
//! `TIMER_*` properties, time moved by hand, and crashes through MemStorage's crash model.

use bytes::Bytes;
use store_core::flush::FlushDiskType;
use store_core::format::properties::{self, Properties};
use store_core::format::record::MessageRecord;
use store_core::storage::MemStorage;
use store_core::store::StoreConfig;
use store_core::timer::{TimerConfig, TIMER_TOPIC};

use super::test_support::{ask_conn1, open_with_client, read_queue, request};
use super::*;

const T0: u64 = 1_700_000_000_000;

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
            // A small wheel and log: 10 s of maximum delay, 2 KiB log segments.
            timer: TimerSettings {
                store: TimerConfig {
                    precision_ms: 1000,
                    max_delay_sec: 10,
                    log_file_size: 2048,
                    slots_total: 64,
                },
                ..TimerSettings::default()
            },
            ..BrokerConfig::default()
        };
        config.store.flush.flush_disk_type = FlushDiskType::SyncFlush;
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

    fn ask(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        ask_conn1(&mut self.broker, &mut self.opaque, self.now_ms, cmd)
    }

    /// Moves the clock to `at` in steps of `step` ms, running the broker's timers as a driver
    /// would.
    fn run_until(&mut self, at: u64, step: u64) {
        while self.now_ms < at {
            self.now_ms = (self.now_ms + step).min(at);
            let mut rounds = 0;
            while self.broker.next_timeout().is_some_and(|t| t <= self.now_ms) && rounds < 100 {
                self.broker.handle_timeout(self.now_ms);
                self.broker.handle_turn_end(self.now_ms);
                rounds += 1;
            }
            while self.broker.poll_transmit().is_some() {}
        }
    }

    fn crash(&mut self, tear: Option<u64>) {
        self.disk.crash(tear);
        self.broker = open_with_client(&self.disk, &self.config, self.now_ms);
    }

    fn send(&mut self, topic: &str, props: &str, body: &[u8]) -> RemotingCommand {
        let cmd = request(
            RequestCode::SendMessage,
            &[
                ("producerGroup", "pg"),
                ("topic", topic),
                ("defaultTopic", "TBW102"),
                ("defaultTopicQueueNums", "4"),
                ("queueId", "1"),
                ("sysFlag", "0"),
                ("bornTimestamp", "1700000000000"),
                ("flag", "3"),
                ("properties", props),
            ],
        )
        .with_body(Bytes::copy_from_slice(body));
        self.ask(cmd)
    }

    fn read(&self, topic: &str, queue_id: i32) -> Vec<MessageRecord> {
        read_queue(&self.broker, topic, queue_id)
    }
}

fn props(pairs: &[(&str, &str)]) -> String {
    let mut p = Properties::new();
    for (k, v) in pairs {
        p.insert(*k, *v);
    }
    p.encode()
}

fn get<'a>(p: &'a Properties, key: &str) -> Option<&'a str> {
    p.get(key)
}

#[test]
fn a_timer_message_waits_in_the_wheel_topic_and_comes_out_whole_when_due() {
    let mut n = Node::new(|_| {});
    let p = props(&[
        (properties::TIMER_DELAY_SEC, "3"),
        (properties::TAGS, "TagA"),
        (properties::KEYS, "k1 k2"),
        ("user", "u1"),
    ]);
    let r = n.send("Work", &p, b"payload");
    assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
    assert!(n.read("Work", 1).is_empty());
    let parked = n.read(TIMER_TOPIC, 0);
    assert_eq!(parked.len(), 1);
    let parked_props = Properties::parse_bytes(&parked[0].properties);
    // 3 s after T0 is a slot boundary: Java files it one slot earlier.
    let out = T0 + 2_000;
    assert_eq!(
        get(&parked_props, properties::TIMER_OUT_MS),
        Some(out.to_string().as_str())
    );
    assert_eq!(get(&parked_props, properties::REAL_TOPIC), Some("Work"));
    assert_eq!(get(&parked_props, properties::REAL_QID), Some("1"));

    n.run_until(T0 + 2_990, 10);
    assert!(n.read("Work", 1).is_empty(), "delivered before its time");
    n.run_until(T0 + 3_010, 10);
    let got = n.read("Work", 1);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert!(u64::try_from(m.store_timestamp).unwrap() >= T0 + 3_000);
    assert_eq!((m.body.as_ref(), m.flag), (&b"payload"[..], 3));
    let mp = Properties::parse_bytes(&m.properties);
    assert_eq!(get(&mp, properties::TAGS), Some("TagA"));
    assert_eq!(get(&mp, properties::KEYS), Some("k1 k2"));
    assert_eq!(get(&mp, "user"), Some("u1"));
    assert_eq!(get(&mp, properties::TIMER_DELAY_SEC), Some("3"));
    assert_eq!(get(&mp, properties::REAL_TOPIC), None);
    assert!(get(&mp, properties::TIMER_DEQUEUE_MS).is_some());
    assert_eq!(
        get(&mp, properties::UNIQ_KEY),
        get(&parked_props, properties::UNIQ_KEY)
    );
}

#[test]
fn deliver_ms_and_delay_ms_are_honoured() {
    let mut n = Node::new(|_| {});
    let deliver = (T0 + 4_500).to_string();
    n.send(
        "Work",
        &props(&[(properties::TIMER_DELIVER_MS, &deliver)]),
        b"a",
    );
    n.send(
        "Work",
        &props(&[(properties::TIMER_DELAY_MS, "1500")]),
        b"b",
    );
    n.run_until(T0 + 1_990, 10);
    assert!(n.read("Work", 1).is_empty());
    n.run_until(T0 + 2_010, 10);
    assert_eq!(n.read("Work", 1).len(), 1);
    n.run_until(T0 + 4_490, 10);
    assert_eq!(n.read("Work", 1).len(), 1);
    n.run_until(T0 + 5_010, 10);
    let bodies: Vec<_> = n.read("Work", 1).iter().map(|m| m.body.clone()).collect();
    assert_eq!(
        bodies,
        vec![Bytes::from_static(b"b"), Bytes::from_static(b"a")]
    );
}

#[test]
fn bad_timer_properties_are_answered_as_rocketmq_answers_them() {
    let mut n = Node::new(|_| {});
    let too_far = n.send("Work", &props(&[(properties::TIMER_DELAY_SEC, "11")]), b"x");
    assert_eq!(too_far.code, ResponseCode::MessageIllegal.value());
    assert!(too_far.remark.unwrap().contains("max delay 10000ms"));
    let garbage = n.send(
        "Work",
        &props(&[(properties::TIMER_DELAY_MS, "soon")]),
        b"x",
    );
    assert_eq!(garbage.code, ResponseCode::MessageIllegal.value());
    // A delivery time already passed: stored at once as a plain message.
    let past = (T0 - 5).to_string();
    let r = n.send(
        "Work",
        &props(&[(properties::TIMER_DELIVER_MS, &past)]),
        b"now",
    );
    assert_eq!(r.code, ResponseCode::Success.value());
    assert_eq!(n.read("Work", 1).len(), 1);
    assert!(n.read(TIMER_TOPIC, 0).is_empty());

    let mut off = Node::new(|c| c.timer.enable = false);
    let r = off.send("Work", &props(&[(properties::TIMER_DELAY_SEC, "2")]), b"x");
    assert_eq!(r.code, ResponseCode::SystemError.value());
    assert!(r.remark.unwrap().contains("timerWheelEnable"));
}

#[test]
fn a_broker_without_timer_messages_creates_no_wheel() {
    let mut n = Node::new(|_| {});
    n.send("Work", "", b"plain");
    n.run_until(T0 + 3_000, 500);
    assert_eq!(n.disk.len("timerwheel").unwrap(), None);
    n.send("Work", &props(&[(properties::TIMER_DELAY_SEC, "1")]), b"t");
    assert!(n.disk.len("timerwheel").unwrap().is_some());
}

/// Acked timer messages across crashes at random moments (torn tails included): each is
/// delivered at least once, none before its time.
#[test]
fn crashes_lose_no_acked_timer_message_and_deliver_none_early() {
    for seed in 1..=6u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut n = Node::new(|_| {});
        let mut acked: Vec<(String, u64)> = Vec::new();
        for i in 0..40 {
            let delay_ms = 200 + next(8_000);
            let id = format!("m{seed}-{i}");
            let p = props(&[
                (properties::TIMER_DELAY_MS, &delay_ms.to_string()),
                ("id", &id),
            ]);
            let sent_at = n.now_ms;
            if n.send("Work", &p, id.as_bytes()).code == ResponseCode::Success.value() {
                acked.push((id, sent_at + delay_ms));
            }
            n.run_until(n.now_ms + next(700), 50);
            if next(8) == 0 {
                n.crash((next(2) == 0).then(|| next(200)));
            }
        }
        n.run_until(n.now_ms + 15_000, 100);
        let delivered = n.read("Work", 1);
        for (id, due) in &acked {
            let copies: Vec<&MessageRecord> = delivered
                .iter()
                .filter(|m| m.body.as_ref() == id.as_bytes())
                .collect();
            assert!(!copies.is_empty(), "seed {seed}: {id} lost");
            for m in copies {
                let at = u64::try_from(m.store_timestamp).unwrap();
                assert!(at >= *due, "seed {seed}: {id} due {due} delivered at {at}");
            }
        }
    }
}
