//! Transactional messages against the real `node standalone` binary, spoken in raw remoting
//! commands the way RocketMQ's producers send them: a half message is invisible until
//! END_TRANSACTION commits it, a rollback never shows, a producer that stays silent gets
//! CHECK_TRANSACTION_STATE on its connection and its answer commits, and after `kill -9` the
//! broker still checks a half sent before the crash and commits it exactly once.
//!
//! What it leaves out: the real C++ client (its Python binding 0.4.4 has no transactional
//! producer), and timing assertions (only "eventually", within generous bounds).

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use store_core::format::record::decode_all;
use support::{request, Standalone};
use tokio::sync::mpsc::UnboundedReceiver;

const TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC: &str = "TxTopic";
const GROUP: &str = "tx_pg";
/// Checks every second for halves older than a second, so the test waits seconds, not minutes.
const FAST_CHECKS: [&str; 2] = ["transactionCheckInterval=1000", "transactionTimeOut=1000"];
const COMMIT: i32 = 8;
const ROLLBACK: i32 = 12;

/// The offsets END_TRANSACTION names, from a send result or a check.
#[derive(Clone, Debug)]
struct Half {
    queue_offset: String,
    commit_log_offset: String,
    msg_id: String,
}

/// A connected producer of [`GROUP`] with the stream of requests the broker sends it.
struct Producer {
    client: RemotingClient,
    checks: UnboundedReceiver<RemotingCommand>,
}

impl Producer {
    async fn connect(addr: &str) -> Producer {
        let client = RemotingClient::connect(addr).await.expect("broker accepts");
        let checks = client.take_server_requests().expect("taken once");
        let body = format!(
            r#"{{"clientID":"127.0.0.1@tx","consumerDataSet":[],"producerDataSet":[{{"groupName":"{GROUP}"}}]}}"#
        );
        let hb = RemotingCommand::request(RequestCode::HeartBeat.value(), 0)
            .with_body(body.into_bytes());
        let r = client
            .invoke(hb, TIMEOUT)
            .await
            .expect("heartbeat answered");
        assert_eq!(r.code, ResponseCode::Success.value(), "{r:?}");
        Producer { client, checks }
    }

    async fn send_half(&self, body: &'static str) -> Half {
        let props = format!("TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{GROUP}\u{2}WAIT\u{1}true\u{2}");
        let born = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis()
            .to_string();
        let cmd = request(
            RequestCode::SendMessage,
            &[
                ("producerGroup", GROUP),
                ("topic", TOPIC),
                ("defaultTopic", "TBW102"),
                ("defaultTopicQueueNums", "1"),
                ("queueId", "0"),
                ("sysFlag", "4"),
                ("bornTimestamp", &born),
                ("flag", "0"),
                ("properties", &props),
            ],
        )
        .with_body(Bytes::from_static(body.as_bytes()));
        let r = self
            .client
            .invoke(cmd, TIMEOUT)
            .await
            .expect("send answered");
        assert_eq!(r.code, ResponseCode::Success.value(), "{r:?}");
        let offset_msg_id = r.ext("msgId").expect("send result has msgId");
        Half {
            queue_offset: r
                .ext("queueOffset")
                .expect("send result has queueOffset")
                .to_string(),
            commit_log_offset: u64::from_str_radix(&offset_msg_id[16..], 16)
                .expect("offset msg id ends in the hex offset")
                .to_string(),
            msg_id: r
                .ext("transactionId")
                .expect("send result has transactionId")
                .to_string(),
        }
    }

    /// END_TRANSACTION, oneway as clients send it.
    fn end(&self, half: &Half, verdict: i32, from_check: bool) {
        let cmd = request(
            RequestCode::EndTransaction,
            &[
                ("producerGroup", GROUP),
                ("tranStateTableOffset", &half.queue_offset),
                ("commitLogOffset", &half.commit_log_offset),
                ("commitOrRollback", &verdict.to_string()),
                ("fromTransactionCheck", &from_check.to_string()),
                ("msgId", &half.msg_id),
                ("transactionId", &half.msg_id),
            ],
        );
        self.client.invoke_oneway(cmd).expect("connection open");
    }

    /// The next CHECK_TRANSACTION_STATE, as the offsets to answer with.
    async fn next_check(&mut self, within: Duration) -> Half {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let cmd = tokio::time::timeout(left, self.checks.recv())
                .await
                .expect("a check arrives in time")
                .expect("connection open");
            if cmd.code != RequestCode::CheckTransactionState.value() {
                continue;
            }
            assert!(cmd.is_oneway());
            let records: Vec<_> = decode_all(cmd.body.clone())
                .collect::<Result<_, _>>()
                .expect("check body is one stored message");
            assert_eq!(records.len(), 1);
            assert_eq!(
                records[0].topic_str(),
                Some(TOPIC),
                "the body names the real topic"
            );
            return Half {
                queue_offset: cmd
                    .ext("tranStateTableOffset")
                    .expect("check header")
                    .to_string(),
                commit_log_offset: cmd
                    .ext("commitLogOffset")
                    .expect("check header")
                    .to_string(),
                msg_id: cmd.ext("msgId").expect("check header").to_string(),
            };
        }
    }

    /// Every body in the topic's queue 0 (pulls from offset 0 without waiting).
    async fn delivered(&self) -> Vec<String> {
        let cmd = request(
            RequestCode::PullMessage,
            &[
                ("consumerGroup", "tx_cg"),
                ("topic", TOPIC),
                ("queueId", "0"),
                ("queueOffset", "0"),
                ("maxMsgNums", "64"),
                // The subscription travels with the pull (sys flag bit 2): no heartbeat needed.
                ("sysFlag", "4"),
                ("commitOffset", "0"),
                ("suspendTimeoutMillis", "0"),
                ("subscription", "*"),
                ("subVersion", "0"),
                ("expressionType", "TAG"),
            ],
        );
        let r = self
            .client
            .invoke(cmd, TIMEOUT)
            .await
            .expect("pull answered");
        if r.code != ResponseCode::Success.value() {
            return Vec::new();
        }
        decode_all(r.body.clone())
            .map(|rec| {
                String::from_utf8_lossy(&rec.expect("pulled records decode").body).into_owned()
            })
            .collect()
    }

    /// Waits until the topic holds exactly `want` (bodies, in order).
    async fn wait_delivered(&self, want: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.delivered().await;
            if got == want {
                return;
            }
            assert!(
                got.len() <= want.len() && Instant::now() < deadline,
                "delivered {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_rollback_and_back_check() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &FAST_CHECKS);
    let mut producer = Producer::connect(&node.broker).await;

    let committed = producer.send_half("committed").await;
    let rolled_back = producer.send_half("rolled back").await;
    let unknown = producer.send_half("checked").await;
    assert!(
        producer.delivered().await.is_empty(),
        "halves are invisible"
    );

    producer.end(&committed, COMMIT, false);
    producer.end(&rolled_back, ROLLBACK, false);
    producer.wait_delivered(&["committed"]).await;
    // A duplicate commit is harmless.
    producer.end(&committed, COMMIT, false);

    // The silent one is checked on our connection; answering "commit" delivers it.
    let check = producer.next_check(Duration::from_secs(15)).await;
    assert_eq!(
        check.msg_id, unknown.msg_id,
        "only the unresolved half is checked"
    );
    producer.end(&check, COMMIT, true);
    producer.wait_delivered(&["committed", "checked"]).await;
    // The producer's own late answer on the first half changes nothing.
    producer.end(&unknown, COMMIT, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(producer.delivered().await, vec!["committed", "checked"]);
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_before_kill9_is_checked_and_committed_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &FAST_CHECKS);
    let producer = Producer::connect(&node.broker).await;
    let before = producer.send_half("survivor").await;
    let done = producer.send_half("done before").await;
    producer.end(&done, COMMIT, false);
    producer.wait_delivered(&["done before"]).await;
    drop(producer);
    node.kill9();

    let node = Standalone::start(dir.path(), &FAST_CHECKS);
    let mut producer = Producer::connect(&node.broker).await;
    let check = producer.next_check(Duration::from_secs(15)).await;
    assert_eq!(check.msg_id, before.msg_id);
    producer.end(&check, COMMIT, true);
    producer.wait_delivered(&["done before", "survivor"]).await;
    // Answers naming the original half or the committed one again store nothing.
    producer.end(&before, COMMIT, false);
    producer.end(&done, COMMIT, false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(producer.delivered().await, vec!["done before", "survivor"]);
    assert!(node.stop().success());
}
