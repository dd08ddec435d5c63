//! Transaction scenarios on a [`Broker`] over `MemStorage`: half messages stay invisible,
//! END_TRANSACTION commits or rolls back once, back-checks reach a producer connection and
//! stop at `transactionCheckMax`, and crashes between half, commit and op record neither lose
//! a half nor commit one twice.

use bytes::Bytes;
use core::net::SocketAddr;

use store_core::flush::FlushDiskType;
use store_core::format::properties::Properties;
use store_core::format::record::{decode, MessageRecord};
use store_core::format::sys_flag::{
    transaction_type, TRANSACTION_COMMIT_TYPE, TRANSACTION_NOT_TYPE, TRANSACTION_PREPARED_TYPE,
    TRANSACTION_ROLLBACK_TYPE,
};
use store_core::storage::MemStorage;
use store_core::store::AcceptAll;

use super::CID_SYS_RMQ_TRANS;
use crate::broker::test_support::{request, sent_to, small_store};
use crate::broker::topic_config::{
    RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC, RMQ_SYS_TRANS_HALF_TOPIC, RMQ_SYS_TRANS_OP_HALF_TOPIC,
};
use crate::broker::{Broker, BrokerConfig};
use crate::role::{ConnId, Role, Transmit};
use crate::{RemotingCommand, RequestCode, ResponseCode};

const T0: u64 = 1_700_000_000_000;
const TIMEOUT_MS: u64 = 6_000;
const INTERVAL_MS: u64 = 10_000;

/// The producer's connection; conn 2 is a second producer of the same group.
const PRODUCER: u64 = 1;

struct Harness {
    broker: Broker<MemStorage>,
    disk: MemStorage,
    config: BrokerConfig,
    now_ms: u64,
    opaque: i32,
}

/// What the producer keeps of a half send: END_TRANSACTION's offsets.
#[derive(Clone, Debug)]
struct HalfSent {
    queue_offset: i64,
    commit_log_offset: i64,
    uniq: String,
}

impl Harness {
    fn new(tweak: impl FnOnce(&mut BrokerConfig)) -> Harness {
        let mut config = BrokerConfig {
            store: small_store(),
            transaction_timeout_ms: TIMEOUT_MS,
            transaction_check_interval_ms: INTERVAL_MS,
            ..BrokerConfig::default()
        };
        config.store.flush.flush_disk_type = FlushDiskType::SyncFlush;
        tweak(&mut config);
        let disk = MemStorage::new();
        let broker = open(&config, &disk, T0);
        let mut h = Harness {
            broker,
            disk,
            config,
            now_ms: T0,
            opaque: 0,
        };
        h.connect_producer(PRODUCER);
        h
    }

    /// Power loss (`tear_keep` as `MemStorage::crash`), then a fresh broker on the same disk.
    fn crash_and_restart(&mut self, tear_keep: Option<u64>) {
        self.disk.crash(tear_keep);
        self.broker = open(&self.config, &self.disk, self.now_ms);
        self.connect_producer(PRODUCER);
    }

    /// A clean stop (config files written), then a fresh broker.
    fn restart(&mut self) {
        self.broker.shutdown(self.now_ms).unwrap();
        self.broker = open(&self.config, &self.disk, self.now_ms);
        self.connect_producer(PRODUCER);
    }

    fn connect_producer(&mut self, conn: u64) {
        let remote: SocketAddr = format!("127.0.0.1:{}", 40_000 + conn).parse().unwrap();
        self.broker
            .handle_connected(ConnId(conn), remote, None, self.now_ms);
        let body = format!(
            r#"{{"clientID":"client-{conn}","consumerDataSet":[],"producerDataSet":[{{"groupName":"pg"}}]}}"#
        );
        let r = self.ask(
            conn,
            RemotingCommand::request(RequestCode::HeartBeat.value(), 0)
                .with_body(body.into_bytes()),
        );
        assert_eq!(r.code, ResponseCode::Success.value());
    }

    /// Feeds one command and ends the turn; returns every transmit.
    fn feed(&mut self, conn: u64, mut cmd: RemotingCommand) -> Vec<Transmit> {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        self.broker.handle_command(ConnId(conn), cmd, self.now_ms);
        self.turn()
    }

    fn turn(&mut self) -> Vec<Transmit> {
        self.broker.handle_turn_end(self.now_ms);
        std::iter::from_fn(|| self.broker.poll_transmit()).collect()
    }

    /// One request that must get exactly one response.
    fn ask(&mut self, conn: u64, cmd: RemotingCommand) -> RemotingCommand {
        let mut responses: Vec<RemotingCommand> = sent_to(&self.feed(conn, cmd), conn)
            .into_iter()
            .filter(RemotingCommand::is_response)
            .collect();
        assert_eq!(responses.len(), 1, "one response expected: {responses:?}");
        responses.remove(0)
    }

    /// Moves the clock and runs the timers; returns the CHECK_TRANSACTION_STATE requests.
    fn advance(&mut self, ms: u64) -> Vec<(ConnId, RemotingCommand)> {
        self.now_ms += ms;
        self.broker.handle_timeout(self.now_ms);
        checks(&self.turn())
    }

    /// Sends a transactional message for `Orders` queue 1.
    fn send_half(&mut self, body: &'static [u8]) -> HalfSent {
        // Clients make the UNIQ_KEY; the body names the transaction in these tests.
        let props = format!(
            "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}pg\u{2}TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}\
             UNIQ_KEY\u{1}U-{}\u{2}",
            String::from_utf8_lossy(body)
        );
        let sys_flag = TRANSACTION_PREPARED_TYPE.to_string();
        let born = (self.now_ms).to_string();
        let cmd = request(
            RequestCode::SendMessage,
            &[
                ("producerGroup", "pg"),
                ("topic", "Orders"),
                ("defaultTopic", "TBW102"),
                ("defaultTopicQueueNums", "4"),
                ("queueId", "1"),
                ("sysFlag", &sys_flag),
                ("bornTimestamp", &born),
                ("flag", "0"),
                ("properties", &props),
            ],
        )
        .with_body(Bytes::from_static(body));
        let r = self.ask(PRODUCER, cmd);
        assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
        assert_eq!(r.ext("queueId"), Some("1"), "the real queue is reported");
        let msg_id = r.ext("msgId").unwrap();
        HalfSent {
            queue_offset: r.ext("queueOffset").unwrap().parse().unwrap(),
            commit_log_offset: i64::from_str_radix(&msg_id[16..], 16).unwrap(),
            uniq: r.ext("transactionId").unwrap().to_string(),
        }
    }

    /// END_TRANSACTION as a request (clients send it oneway; the answer is what we check).
    fn end(&mut self, half: &HalfSent, verdict: i32, from_check: bool) -> Option<RemotingCommand> {
        let cmd = end_transaction(half, "pg", verdict, from_check);
        let mut responses = sent_to(&self.feed(PRODUCER, cmd), PRODUCER);
        assert!(responses.len() <= 1);
        responses.pop()
    }

    fn commit(&mut self, half: &HalfSent) -> RemotingCommand {
        self.end(half, TRANSACTION_COMMIT_TYPE, false).unwrap()
    }

    fn queue(&self, topic: &str, queue_id: i32) -> Vec<MessageRecord> {
        let got = self
            .broker
            .store()
            .get_messages(topic, queue_id, 0, 1_000, u64::MAX, &AcceptAll);
        got.records.iter().map(|b| decode(b).unwrap().0).collect()
    }

    fn delivered(&self) -> Vec<String> {
        self.queue("Orders", 1)
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect()
    }

    fn pending(&self) -> usize {
        self.broker.transactions.len()
    }
}

fn open(config: &BrokerConfig, disk: &MemStorage, now_ms: u64) -> Broker<MemStorage> {
    let (mut broker, _) = Broker::new(config.clone(), disk.clone(), now_ms).unwrap();
    broker.handle_timeout(now_ms);
    broker.handle_turn_end(now_ms);
    while broker.poll_transmit().is_some() {}
    broker
}

fn end_transaction(
    half: &HalfSent,
    group: &str,
    verdict: i32,
    from_check: bool,
) -> RemotingCommand {
    request(
        RequestCode::EndTransaction,
        &[
            ("producerGroup", group),
            ("tranStateTableOffset", &half.queue_offset.to_string()),
            ("commitLogOffset", &half.commit_log_offset.to_string()),
            ("commitOrRollback", &verdict.to_string()),
            ("fromTransactionCheck", &from_check.to_string()),
            ("msgId", &half.uniq),
            ("transactionId", &half.uniq),
        ],
    )
}

fn checks(transmits: &[Transmit]) -> Vec<(ConnId, RemotingCommand)> {
    transmits
        .iter()
        .filter_map(|t| match t {
            Transmit::Send { conn, cmd }
                if cmd.code == RequestCode::CheckTransactionState.value() =>
            {
                Some((*conn, cmd.clone()))
            }
            _ => None,
        })
        .collect()
}

/// What a producer answering `check` puts into its END_TRANSACTION.
fn answer_of(check: &RemotingCommand) -> HalfSent {
    HalfSent {
        queue_offset: check.ext("tranStateTableOffset").unwrap().parse().unwrap(),
        commit_log_offset: check.ext("commitLogOffset").unwrap().parse().unwrap(),
        uniq: check.ext("msgId").unwrap().to_string(),
    }
}

#[test]
fn half_is_invisible_until_commit_and_a_second_commit_changes_nothing() {
    let mut h = Harness::new(|_| {});
    let half = h.send_half(b"pay");
    assert_eq!(half.queue_offset, 0);
    assert!(
        h.delivered().is_empty(),
        "a half message is not in its topic"
    );
    let stored = h.queue(RMQ_SYS_TRANS_HALF_TOPIC, 0);
    assert_eq!(stored.len(), 1);
    let props = Properties::parse_bytes(&stored[0].properties);
    assert_eq!(props.get("REAL_TOPIC"), Some("Orders"));
    assert_eq!(props.get("REAL_QID"), Some("1"));
    assert_eq!(props.get("__transactionId__"), Some(half.uniq.as_str()));
    assert_eq!(transaction_type(stored[0].sys_flag), TRANSACTION_NOT_TYPE);

    let r = h.commit(&half);
    assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
    assert_eq!(h.delivered(), vec!["pay"]);
    let real = &h.queue("Orders", 1)[0];
    assert_eq!(transaction_type(real.sys_flag), TRANSACTION_COMMIT_TYPE);
    assert_eq!(real.prepared_transaction_offset, half.commit_log_offset);
    let props = Properties::parse_bytes(&real.properties);
    assert_eq!(props.get("TRAN_MSG"), None);
    assert_eq!(props.get("REAL_TOPIC"), None);
    assert_eq!(props.get("UNIQ_KEY"), Some(half.uniq.as_str()));
    assert_eq!(props.get("TAGS"), Some("TagA"));
    let ops = h.queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, 0);
    assert_eq!(ops.len(), 1);
    assert_eq!(&ops[0].body[..], b"0,");
    assert_eq!(
        Properties::parse_bytes(&ops[0].properties).get("TAGS"),
        Some("d")
    );

    // Duplicates of either verdict are answered and change nothing.
    assert_eq!(h.commit(&half).code, ResponseCode::Success.value());
    let r = h.end(&half, TRANSACTION_ROLLBACK_TYPE, true).unwrap();
    assert_eq!(r.code, ResponseCode::Success.value());
    assert_eq!(h.delivered(), vec!["pay"]);
    assert_eq!(h.queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, 0).len(), 1);
    assert_eq!(h.pending(), 0);
}

#[test]
fn rollback_stores_only_the_op_record() {
    let mut h = Harness::new(|_| {});
    let _first = h.send_half(b"one");
    let second = h.send_half(b"two");
    assert_eq!(second.queue_offset, 1);
    let r = h.end(&second, TRANSACTION_ROLLBACK_TYPE, false).unwrap();
    assert_eq!(r.code, ResponseCode::Success.value());
    assert!(h.delivered().is_empty());
    let ops = h.queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, 0);
    assert_eq!(&ops[0].body[..], b"1,");
    assert_eq!(h.pending(), 1);
    // A later commit of the rolled-back one is a no-op.
    assert_eq!(h.commit(&second).code, ResponseCode::Success.value());
    assert!(h.delivered().is_empty());
}

#[test]
fn end_transaction_refuses_what_does_not_match_the_half() {
    let mut h = Harness::new(|_| {});
    let half = h.send_half(b"x");
    let r = h
        .feed_one(end_transaction(
            &half,
            "other",
            TRANSACTION_COMMIT_TYPE,
            false,
        ))
        .unwrap();
    assert_eq!(r.code, ResponseCode::SystemError.value());
    assert_eq!(r.remark.as_deref(), Some("The producer group wrong"));
    let wrong_queue = HalfSent {
        queue_offset: 5,
        ..half.clone()
    };
    let r = h.commit(&wrong_queue);
    assert_eq!(
        r.remark.as_deref(),
        Some("The transaction state table offset wrong")
    );
    let nowhere = HalfSent {
        commit_log_offset: 999_999,
        ..half.clone()
    };
    let r = h.commit(&nowhere);
    assert_eq!(
        r.remark.as_deref(),
        Some("Find prepared transaction message failed")
    );
    // "Unknown" gets no answer and ends nothing.
    assert!(h.end(&half, TRANSACTION_NOT_TYPE, false).is_none());
    assert_eq!(h.pending(), 1);
    assert!(h.delivered().is_empty());
    // A header missing its fields is a SYSTEM_ERROR, not a panic.
    let r = h
        .feed_one(request(
            RequestCode::EndTransaction,
            &[("producerGroup", "pg")],
        ))
        .unwrap();
    assert_eq!(r.code, ResponseCode::SystemError.value());
}

impl Harness {
    fn feed_one(&mut self, cmd: RemotingCommand) -> Option<RemotingCommand> {
        sent_to(&self.feed(PRODUCER, cmd), PRODUCER).pop()
    }
}

#[test]
fn unresolved_half_is_checked_on_a_producer_connection_then_committed() {
    let mut h = Harness::new(|_| {});
    assert!(h.advance(5_000).is_empty());
    let half = h.send_half(b"maybe");
    assert!(
        h.advance(5_000).is_empty(),
        "5 s old at the first run: younger than the timeout"
    );
    let checked = h.advance(INTERVAL_MS);
    assert_eq!(checked.len(), 1, "{checked:?}");
    let (conn, check) = &checked[0];
    assert_eq!(*conn, ConnId(PRODUCER));
    assert!(check.is_oneway());
    assert!(!check.is_response());
    assert_eq!(
        check.ext("tranStateTableOffset"),
        Some("1"),
        "the re-appended copy"
    );
    assert_eq!(check.ext("msgId"), Some(half.uniq.as_str()));
    assert_eq!(check.ext("transactionId"), Some(half.uniq.as_str()));
    assert_eq!(check.ext("bname"), Some("broker-a"));
    let (body, _) = decode(&check.body).unwrap();
    assert_eq!(body.topic_str(), Some("Orders"));
    assert_eq!(body.queue_id, 1);
    assert_eq!(&body.body[..], b"maybe");
    let props = Properties::parse_bytes(&body.properties);
    assert_eq!(props.get("TRANSACTION_CHECK_TIMES"), Some("1"));
    assert_eq!(props.get("PGROUP"), Some("pg"));

    let answer = answer_of(check);
    let r = h.end(&answer, TRANSACTION_COMMIT_TYPE, true).unwrap();
    assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
    assert_eq!(h.delivered(), vec!["maybe"]);
    assert_eq!(
        &h.queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, 0)[0].body[..],
        b"0,1,"
    );
    // The producer's own late commit of the first half changes nothing.
    assert_eq!(h.commit(&half).code, ResponseCode::Success.value());
    assert_eq!(h.delivered(), vec!["maybe"]);
    assert!(h.advance(INTERVAL_MS).is_empty());
}

#[test]
fn checks_rotate_over_group_connections_and_stop_at_check_max() {
    let mut h = Harness::new(|c| c.transaction_check_max = 3);
    h.connect_producer(2);
    let _half = h.send_half(b"lost");
    h.now_ms += TIMEOUT_MS;
    let mut conns = Vec::new();
    let mut times = Vec::new();
    for _ in 0..6 {
        for (conn, check) in h.advance(INTERVAL_MS) {
            conns.push(conn);
            let (record, _) = decode(&check.body).unwrap();
            let props = Properties::parse_bytes(&record.properties);
            times.push(props.get("TRANSACTION_CHECK_TIMES").unwrap().to_string());
        }
    }
    assert_eq!(times, vec!["1", "2", "3"]);
    assert!(conns.contains(&ConnId(1)) && conns.contains(&ConnId(2)));
    assert_eq!(h.pending(), 0);
    let discarded = h.queue(RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC, 0);
    assert_eq!(discarded.len(), 1);
    assert_eq!(&discarded[0].body[..], b"lost");
    assert!(h
        .broker
        .topics()
        .select(RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC)
        .is_some());
    assert!(h.delivered().is_empty());
}

#[test]
fn with_no_producer_online_checks_still_count_up() {
    let mut h = Harness::new(|c| c.transaction_check_max = 2);
    let _half = h.send_half(b"orphan");
    h.broker.handle_closed(ConnId(PRODUCER), h.now_ms);
    h.now_ms += TIMEOUT_MS;
    for _ in 0..4 {
        assert!(h.advance(INTERVAL_MS).is_empty());
    }
    assert_eq!(h.pending(), 0);
    assert_eq!(h.queue(RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC, 0).len(), 1);
}

#[test]
fn crash_between_half_and_commit_keeps_the_half() {
    let mut h = Harness::new(|_| {});
    let half = h.send_half(b"a");
    h.crash_and_restart(None);
    assert_eq!(h.pending(), 1);
    let r = h.commit(&half);
    assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
    assert_eq!(h.delivered(), vec!["a"]);
    h.crash_and_restart(None);
    assert_eq!(h.pending(), 0);
    assert_eq!(h.commit(&half).code, ResponseCode::Success.value());
    assert_eq!(h.delivered(), vec!["a"]);
}

#[test]
fn crash_after_the_commit_record_but_before_its_op_record_commits_once() {
    let mut h = Harness::new(|_| {});
    let half = h.send_half(b"torn");
    // The commit's batch is written but not synced (no turn end), then torn after the real
    // message: the op record's last byte never lands.
    h.opaque += 1;
    let mut cmd = end_transaction(&half, "pg", TRANSACTION_COMMIT_TYPE, false);
    cmd.opaque = h.opaque;
    let before = h.broker.store().commit_log_max_offset();
    h.broker.handle_command(ConnId(PRODUCER), cmd, h.now_ms);
    let written = h.broker.store().commit_log_max_offset() - before;
    h.crash_and_restart(Some(written - 1));
    assert_eq!(h.delivered(), vec!["torn"], "the real message survived");
    assert_eq!(h.pending(), 0, "its op record was written at restart");
    assert_eq!(h.queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, 0).len(), 1);
    assert_eq!(h.commit(&half).code, ResponseCode::Success.value());
    h.now_ms += TIMEOUT_MS;
    assert!(h.advance(INTERVAL_MS).is_empty(), "nothing left to check");
    assert_eq!(h.delivered(), vec!["torn"]);
}

#[test]
fn crash_tearing_the_commit_record_leaves_the_half_pending() {
    let mut h = Harness::new(|_| {});
    let half = h.send_half(b"again");
    h.opaque += 1;
    let mut cmd = end_transaction(&half, "pg", TRANSACTION_COMMIT_TYPE, false);
    cmd.opaque = h.opaque;
    h.broker.handle_command(ConnId(PRODUCER), cmd, h.now_ms);
    h.crash_and_restart(Some(10));
    assert!(h.delivered().is_empty());
    assert_eq!(h.pending(), 1);
    assert_eq!(h.commit(&half).code, ResponseCode::Success.value());
    assert_eq!(h.delivered(), vec!["again"]);
}

#[test]
fn copies_made_by_checks_still_end_their_transaction_after_a_restart() {
    let mut h = Harness::new(|_| {});
    let first = h.send_half(b"first");
    let second = h.send_half(b"second");
    h.now_ms += TIMEOUT_MS;
    let checked = h.advance(INTERVAL_MS);
    assert_eq!(checked.len(), 2);
    let answer = answer_of(&checked[0].1);
    // Progress is saved only after a run has seen the log durable: run once more.
    h.now_ms += 1;
    let checked_again = h.advance(INTERVAL_MS);
    assert_eq!(checked_again.len(), 2);
    h.restart();
    assert_eq!(h.pending(), 2);
    let saved = h
        .broker
        .consumer_offsets()
        .query(CID_SYS_RMQ_TRANS, RMQ_SYS_TRANS_HALF_TOPIC, 0);
    assert_eq!(saved, Some(2), "both origins were superseded by copies");
    // An answer to the first check commits; the origin and the later copy are duplicates.
    assert_eq!(
        h.end(&answer, TRANSACTION_COMMIT_TYPE, true).unwrap().code,
        ResponseCode::Success.value()
    );
    h.crash_and_restart(None);
    assert_eq!(h.pending(), 1);
    assert_eq!(h.commit(&first).code, ResponseCode::Success.value());
    let later = answer_of(&checked_again[0].1);
    assert_eq!(
        h.end(&later, TRANSACTION_COMMIT_TYPE, true).unwrap().code,
        ResponseCode::Success.value()
    );
    assert_eq!(h.delivered(), vec!["first"]);
    // The second transaction is still pending and still checked.
    assert_eq!(h.commit(&second).code, ResponseCode::Success.value());
    assert_eq!(h.delivered(), vec!["first", "second"]);
    assert_eq!(h.pending(), 0);
}

#[test]
fn saved_progress_skips_what_is_done_and_reads_what_is_not() {
    let mut h = Harness::new(|c| c.transaction_timeout_ms = 3_600_000);
    let done = h.send_half(b"done");
    let open = h.send_half(b"open");
    assert_eq!(h.commit(&done).code, ResponseCode::Success.value());
    h.advance(INTERVAL_MS);
    h.advance(INTERVAL_MS);
    let offsets = h.broker.consumer_offsets();
    assert_eq!(
        offsets.query(CID_SYS_RMQ_TRANS, RMQ_SYS_TRANS_HALF_TOPIC, 0),
        Some(1)
    );
    assert_eq!(
        offsets.query(CID_SYS_RMQ_TRANS, RMQ_SYS_TRANS_OP_HALF_TOPIC, 0),
        Some(1)
    );
    h.restart();
    assert_eq!(h.pending(), 1);
    assert_eq!(h.commit(&open).code, ResponseCode::Success.value());
    assert_eq!(h.delivered(), vec!["done", "open"]);
}

#[test]
fn reject_transaction_message_refuses_halves() {
    let mut h = Harness::new(|c| c.reject_transaction_message = true);
    let props = "TRAN_MSG\u{1}true\u{2}PGROUP\u{1}pg\u{2}";
    let cmd = request(
        RequestCode::SendMessage,
        &[
            ("producerGroup", "pg"),
            ("topic", "Orders"),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", "1"),
            ("sysFlag", "4"),
            ("bornTimestamp", "0"),
            ("flag", "0"),
            ("properties", props),
        ],
    );
    let r = h.ask(PRODUCER, cmd);
    assert_eq!(r.code, ResponseCode::NoPermission.value());
    assert_eq!(h.pending(), 0);
}

/// A tiny seeded generator for the random walk below (style T5).
struct Walk(u64);

impl Walk {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// What the producer side of the walk knows of one transaction.
struct Tx {
    body: &'static [u8],
    /// The send result and every check received since: any of them may name it.
    handles: Vec<HalfSent>,
    /// A rollback was applied (answered, and synced at the turn end) before any commit was
    /// sent: the message must never be delivered.
    rolled_back_first: bool,
    commit_sent: bool,
}

/// Random sends, verdicts on any copy (duplicates included), check runs, clean crashes and
/// crashes tearing a verdict's write; then every transaction is committed once more. Nothing
/// is delivered twice, nothing rolled back is delivered, and every other half is delivered.
#[test]
fn random_walks_of_verdicts_checks_and_crashes_commit_each_transaction_at_most_once() {
    const BODIES: [&[u8]; 8] = [b"t0", b"t1", b"t2", b"t3", b"t4", b"t5", b"t6", b"t7"];
    for seed in 1..=48_u64 {
        let mut walk = Walk(seed);
        let mut h = Harness::new(|c| c.transaction_check_max = 1_000);
        let mut txs: Vec<Tx> = Vec::new();
        for _ in 0..60 {
            match walk.below(6) {
                0 if txs.len() < BODIES.len() => {
                    let body = BODIES[txs.len()];
                    let half = h.send_half(body);
                    txs.push(Tx {
                        body,
                        handles: vec![half],
                        rolled_back_first: false,
                        commit_sent: false,
                    });
                }
                1 | 2 if !txs.is_empty() => {
                    let i = walk.below(txs.len() as u64) as usize;
                    let j = walk.below(txs[i].handles.len() as u64) as usize;
                    let handle = txs[i].handles[j].clone();
                    let commit = walk.below(2) == 0;
                    let verdict = if commit {
                        TRANSACTION_COMMIT_TYPE
                    } else {
                        TRANSACTION_ROLLBACK_TYPE
                    };
                    let r = h.end(&handle, verdict, j > 0).unwrap();
                    assert_eq!(r.code, ResponseCode::Success.value(), "seed {seed}: {r:?}");
                    let tx = &mut txs[i];
                    if commit {
                        tx.commit_sent = true;
                    } else if !tx.commit_sent {
                        tx.rolled_back_first = true;
                    }
                }
                3 => {
                    for (_, check) in h.advance(INTERVAL_MS) {
                        let copy = answer_of(&check);
                        let tx = txs
                            .iter_mut()
                            .find(|t| t.handles[0].uniq == copy.uniq)
                            .expect("checks name our transactions");
                        tx.handles.push(copy);
                    }
                }
                4 => h.crash_and_restart(None),
                5 if !txs.is_empty() => {
                    // A commit written but not synced, torn somewhere by the crash.
                    let i = walk.below(txs.len() as u64) as usize;
                    let handle = txs[i].handles[0].clone();
                    let mut cmd = end_transaction(&handle, "pg", TRANSACTION_COMMIT_TYPE, false);
                    h.opaque += 1;
                    cmd.opaque = h.opaque;
                    h.broker.handle_command(ConnId(PRODUCER), cmd, h.now_ms);
                    h.crash_and_restart(Some(walk.below(1_000)));
                    // Whether the commit survived shows in the topic.
                    let body = String::from_utf8_lossy(txs[i].body).into_owned();
                    if h.delivered().contains(&body) {
                        txs[i].commit_sent = true;
                    }
                }
                _ => {}
            }
            let delivered = h.delivered();
            for tx in &txs {
                let body = String::from_utf8_lossy(tx.body);
                let n = delivered.iter().filter(|d| **d == body).count();
                assert!(n <= 1, "seed {seed}: {body} delivered {n} times");
            }
        }
        for tx in &txs {
            let r = h
                .end(&tx.handles[0], TRANSACTION_COMMIT_TYPE, true)
                .unwrap();
            assert_eq!(r.code, ResponseCode::Success.value(), "seed {seed}");
        }
        let delivered = h.delivered();
        for tx in &txs {
            let body = String::from_utf8_lossy(tx.body).into_owned();
            let n = delivered.iter().filter(|d| **d == body).count();
            let want = usize::from(!tx.rolled_back_first);
            assert_eq!(n, want, "seed {seed}: {body} delivered {n} times");
        }
        assert_eq!(h.pending(), 0, "seed {seed}");
    }
}
