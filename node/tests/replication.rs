//! Master/slave replication with the real `node` binary on loopback: a name server, a
//! SYNC_MASTER and a SLAVE of the same broker set as separate processes. The slave learns the
//! master's HA address from the name server, copies the commit log over the HA port and the
//! topic configs and consumer offsets over the remoting port. Every send the master
//! acknowledged SEND_OK must be readable from the slave after the master is killed with
//! SIGKILL; the slave refuses sends.
//! Without a slave, a SYNC_MASTER answers SLAVE_NOT_AVAILABLE (the message is still stored).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::body::MessageQueue;
use proto_core::client::{
    parse_pull, parse_query_consumer_offset, pull_request, query_consumer_offset_request,
    send_message_v2_request, subscription, update_consumer_offset_request, OutgoingMessage,
    PullArgs, PullStatus,
};
use proto_core::ResponseCode;
use support::Node;

const TOPIC: &str = "ReplicatedTopic";
const BROKER_NAME: &str = "broker-r";
const QUEUES: i32 = 4;
const MESSAGES: usize = 300;
const TIMEOUT: Duration = Duration::from_secs(10);
/// Every wait in this test ends within this.
const WAIT_MAX: Duration = Duration::from_secs(40);

/// Starts `node <args>` and waits for it to print `<what> listening on ADDR`.
fn start(args: &[&str], what: &str) -> Node {
    Node::start(args, what, "info", WAIT_MAX)
}

fn namesrv() -> Node {
    start(&["namesrv", "--listen", "127.0.0.1:0"], "name server")
}

fn broker(namesrv: &str, dir: &Path, id: u8, role: &str) -> Node {
    let id_set = format!("brokerId={id}");
    let role_set = format!("brokerRole={role}");
    let store_set = format!("storePathRootDir={}", dir.display());
    let name_set = format!("brokerName={BROKER_NAME}");
    let mut args = vec!["broker", "-n", namesrv];
    for set in [
        name_set.as_str(),
        id_set.as_str(),
        role_set.as_str(),
        store_set.as_str(),
        "listenPort=0",
        "bindAddress=127.0.0.1",
        "brokerIP1=127.0.0.1",
        "mappedFileSizeCommitLog=1048576",
        "registerNameServerPeriod=10000",
        "syncFlushTimeout=3000",
    ] {
        args.extend(["--set", set]);
    }
    start(&args, "broker")
}

fn queue(queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: TOPIC.to_string(),
        broker_name: BROKER_NAME.to_string(),
        queue_id,
    }
}

async fn create_topic(client: &RemotingClient) {
    let cmd = support::create_topic_request(TOPIC, QUEUES);
    let resp = client.invoke(cmd, TIMEOUT).await.expect("broker answers");
    assert_eq!(resp.code, ResponseCode::Success.value(), "{resp:?}");
}

/// Sends `body` to `queue_id`; returns the response code.
async fn send(client: &RemotingClient, queue_id: i32, body: &str) -> i32 {
    let msg = OutgoingMessage {
        topic: TOPIC.to_string(),
        body: Bytes::from(body.to_string()),
        tags: Some("TagA".to_string()),
        keys: vec![body.to_string()],
        flag: 0,
    };
    let cmd = send_message_v2_request("pg", &queue(queue_id), &msg, body, 1);
    client
        .invoke(cmd, TIMEOUT)
        .await
        .expect("broker answers")
        .code
}

/// Every message body in `queue_id` from offset 0, or the response code that refused the pull.
async fn read_queue(client: &RemotingClient, queue_id: i32) -> Result<Vec<String>, i32> {
    let sub = subscription(TOPIC, "*", 0);
    let mq = queue(queue_id);
    let mut bodies = Vec::new();
    let mut offset = 0;
    loop {
        let cmd = pull_request(&PullArgs {
            group: "replication-reader",
            mq: &mq,
            subscription: &sub,
            queue_offset: offset,
            commit_offset: None,
            max_msg_nums: 32,
            suspend_timeout_ms: 0,
            with_subscription: true,
        });
        let resp = client.invoke(cmd, TIMEOUT).await.expect("broker answers");
        let Ok(pulled) = parse_pull(&resp, &sub) else {
            return Err(resp.code);
        };
        if pulled.status != PullStatus::Found {
            return Ok(bodies);
        }
        for m in &pulled.messages {
            bodies.push(String::from_utf8_lossy(&m.body).into_owned());
        }
        offset = pulled.next_begin_offset;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_acknowledged_by_a_sync_master_is_read_from_its_slave_after_sigkill() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ns = namesrv();
    let mut master = broker(&ns.addr, dirs[0].path(), 0, "SYNC_MASTER");
    let master_client = RemotingClient::connect(&master.addr).await.unwrap();
    create_topic(&master_client).await;
    let slave = broker(&ns.addr, dirs[1].path(), 1, "SLAVE");
    let slave_client = RemotingClient::connect(&slave.addr).await.unwrap();

    // The slave found its master (HA port from the name server) once a send is acknowledged
    // SEND_OK rather than SLAVE_NOT_AVAILABLE, and copied the topic once it serves pulls.
    let mut acked = BTreeSet::new();
    let mut probe = 0;
    support::eventually(WAIT_MAX, "the slave to acknowledge", || {
        probe += 1;
        let body = format!("probe-{probe}");
        let client = &master_client;
        async move {
            let code = send(client, 0, &body).await;
            assert!(
                code == ResponseCode::Success.value()
                    || code == ResponseCode::SlaveNotAvailable.value(),
                "probe answered {code}"
            );
            (code == ResponseCode::Success.value()).then_some(body)
        }
    })
    .await;
    support::eventually(WAIT_MAX, "the slave to know the topic", || {
        let client = &slave_client;
        async move { read_queue(client, 0).await.ok() }
    })
    .await;

    for i in 0..MESSAGES {
        let body = format!("m-{i}");
        let code = send(&master_client, (i % QUEUES as usize) as i32, &body).await;
        assert_eq!(code, ResponseCode::Success.value(), "send {i} not SEND_OK");
        acked.insert(body);
    }
    // A consumer group's committed offset reaches the slave too (copied every 10 s).
    let resp = master_client
        .invoke(update_consumer_offset_request("cg", &queue(1), 10), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resp.code, ResponseCode::Success.value());
    support::eventually(WAIT_MAX, "the slave to copy the consumer offset", || {
        let client = &slave_client;
        async move {
            let cmd = query_consumer_offset_request("cg", &queue(1));
            let resp = client.invoke(cmd, TIMEOUT).await.ok()?;
            (parse_query_consumer_offset(&resp).ok()?? == 10).then_some(())
        }
    })
    .await;
    // SIGKILL: nothing more leaves the master.
    master.child.kill().unwrap();
    master.child.wait().unwrap();

    let mut read = BTreeSet::new();
    for queue_id in 0..QUEUES {
        let bodies = read_queue(&slave_client, queue_id)
            .await
            .expect("slave serves pulls");
        read.extend(bodies.into_iter().filter(|b| b.starts_with("m-")));
    }
    let lost: Vec<&String> = acked.difference(&read).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not on the slave: {lost:?}"
    );
    assert_eq!(read.len(), MESSAGES);

    // A slave takes no sends.
    let code = send(&slave_client, 0, "to-the-slave").await;
    assert_eq!(code, ResponseCode::ServiceNotAvailable.value());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_master_without_a_slave_answers_slave_not_available_but_stores() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv();
    let master = broker(&ns.addr, dir.path(), 0, "SYNC_MASTER");
    let client = RemotingClient::connect(&master.addr).await.unwrap();
    create_topic(&client).await;
    for i in 0..5 {
        let code = send(&client, 1, &format!("lonely-{i}")).await;
        assert_eq!(code, ResponseCode::SlaveNotAvailable.value());
    }
    let bodies = read_queue(&client, 1).await.expect("master serves pulls");
    assert_eq!(bodies.len(), 5, "stored despite SLAVE_NOT_AVAILABLE");
}
