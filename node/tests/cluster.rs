//! Two name servers and two brokers (broker-a, broker-b) as separate `node` processes on
//! loopback, used through our own client (`io_adapters::producer` / `consumer` over
//! `proto_core::client`): sends spread over both brokers, a group of two consumers splits the
//! eight queues and together reads every message exactly once, and a second group reads them
//! all again.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use io_adapters::client::RemotingClient;
use io_adapters::consumer::GroupConsumer;
use io_adapters::producer::Producer;
use proto_core::body::{ConsumeFromWhere, MessageQueue, TopicRouteData};
use proto_core::client::{parse_route, route_request};
use proto_core::message::properties::{find_property, UNIQ_KEY};
use proto_core::message::record::MessageRecord;
use proto_core::ResponseCode;
use support::Node;

const TOPIC: &str = "ClusterTopic";
const MESSAGES: usize = 200;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Every wait in this test ends within this.
const WAIT_MAX: Duration = Duration::from_secs(30);

/// Starts `node <args>` and waits for it to print `<what> listening on ADDR`.
fn start(args: &[&str], what: &str) -> Node {
    Node::start(args, what, "warn", WAIT_MAX)
}

fn namesrv() -> Node {
    start(&["namesrv", "--listen", "127.0.0.1:0"], "name server")
}

fn broker(name: &str, namesrv: &str, dir: &Path) -> Node {
    let name_set = format!("brokerName={name}");
    let store_set = format!("storePathRootDir={}", dir.display());
    let mut args = vec!["broker", "-n", namesrv];
    for set in [
        name_set.as_str(),
        store_set.as_str(),
        "listenPort=0",
        "bindAddress=127.0.0.1",
        "brokerIP1=127.0.0.1",
        "mappedFileSizeCommitLog=1048576",
    ] {
        args.extend(["--set", set]);
    }
    start(&args, "broker")
}

async fn create_topic(broker: &str) {
    let client = RemotingClient::connect(broker)
        .await
        .expect("broker accepts");
    let cmd = support::create_topic_request(TOPIC, 4);
    let resp = client.invoke(cmd, TIMEOUT).await.expect("broker answers");
    assert_eq!(resp.code, ResponseCode::Success.value(), "{resp:?}");
}

/// Waits until `namesrv` routes the topic to both brokers.
async fn wait_for_both_brokers(namesrv: &str) -> TopicRouteData {
    let client = RemotingClient::connect(namesrv)
        .await
        .expect("name server accepts");
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let resp = client
            .invoke(route_request(TOPIC), TIMEOUT)
            .await
            .expect("answers");
        if let Ok(route) = parse_route(&resp) {
            let names: BTreeSet<&str> = route
                .queue_datas
                .iter()
                .map(|q| q.broker_name.as_str())
                .collect();
            if names == BTreeSet::from(["broker-a", "broker-b"]) {
                return route;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{namesrv} never routed {TOPIC} to both brokers"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn uniq_key(record: &MessageRecord) -> String {
    let key = find_property(&record.properties, UNIQ_KEY).expect("every send sets UNIQ_KEY");
    String::from_utf8(key.to_vec()).expect("UNIQ_KEY is hex text")
}

/// Polls every member until `want` distinct messages arrived; returns how often each UNIQ_KEY
/// was seen and from which queues each member read.
async fn drain(
    members: &mut [GroupConsumer],
    want: usize,
) -> (BTreeMap<String, usize>, Vec<BTreeSet<MessageQueue>>) {
    let mut seen = BTreeMap::new();
    let mut queues = vec![BTreeSet::new(); members.len()];
    let deadline = Instant::now() + WAIT_MAX;
    while seen.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} messages arrived",
            seen.len()
        );
        for (i, member) in members.iter_mut().enumerate() {
            for (mq, record) in member.poll(Duration::from_millis(200)).await.expect("poll") {
                assert_eq!(record.topic_str(), Some(TOPIC));
                *seen.entry(uniq_key(&record)).or_insert(0) += 1;
                queues[i].insert(mq);
            }
        }
    }
    // One more round: nothing may arrive twice after the last new message.
    for member in members.iter_mut() {
        for (_, record) in member.poll(Duration::ZERO).await.expect("poll") {
            *seen.entry(uniq_key(&record)).or_insert(0) += 1;
        }
        member.commit().await.expect("commit");
    }
    (seen, queues)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_two_name_servers_two_groups() {
    let ns = [namesrv(), namesrv()];
    let ns_list = format!("{};{}", ns[0].addr, ns[1].addr);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let brokers = [
        broker("broker-a", &ns_list, dirs[0].path()),
        broker("broker-b", &ns_list, dirs[1].path()),
    ];
    for b in &brokers {
        create_topic(&b.addr).await;
    }
    for n in &ns {
        let route = wait_for_both_brokers(&n.addr).await;
        assert_eq!(route.broker_datas.len(), 2, "{route:?}");
    }

    // Produce: the round robin covers both brokers.
    let producer = Producer::new(&ns_list, "cluster_pg").unwrap();
    let mut sent = BTreeSet::new();
    let mut per_broker: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..MESSAGES {
        let body = format!("message {i}");
        let key = format!("k{i}");
        let result = producer
            .send(TOPIC, body.into_bytes(), Some("TagA"), Some(&key))
            .await
            .expect("send succeeds");
        assert!(sent.insert(result.uniq_key.clone()), "UNIQ_KEY repeated");
        *per_broker.entry(result.queue.broker_name).or_default() += 1;
    }
    println!("sent per broker: {per_broker:?}");
    assert_eq!(
        per_broker.keys().collect::<Vec<_>>(),
        ["broker-a", "broker-b"]
    );
    assert!(
        per_broker.values().all(|n| *n >= MESSAGES / 4),
        "{per_broker:?}"
    );

    // Group one: two members split the eight queues 4/4 and read everything exactly once.
    let from = ConsumeFromWhere::ConsumeFromFirstOffset;
    let mut group = Vec::new();
    for _ in 0..2 {
        group.push(
            GroupConsumer::start(&ns_list, "cluster_cg1", TOPIC, "*", from)
                .await
                .unwrap(),
        );
    }
    // The first member rebalanced while alone; both see two members now.
    for member in &mut group {
        member.rebalance().await.unwrap();
    }
    let shares: Vec<Vec<MessageQueue>> = group.iter().map(GroupConsumer::assigned).collect();
    assert_eq!(
        shares.iter().map(Vec::len).collect::<Vec<_>>(),
        [4, 4],
        "{shares:?}"
    );
    let all: BTreeSet<&MessageQueue> = shares.iter().flatten().collect();
    assert_eq!(all.len(), 8);
    let brokers_owned: BTreeSet<&str> = all.iter().map(|q| q.broker_name.as_str()).collect();
    assert_eq!(brokers_owned, BTreeSet::from(["broker-a", "broker-b"]));

    let (seen, queues) = drain(&mut group, MESSAGES).await;
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert!(seen.values().all(|n| *n == 1), "a message arrived twice");
    for (i, read) in queues.iter().enumerate() {
        let owned: BTreeSet<MessageQueue> = shares[i].iter().cloned().collect();
        assert!(
            read.is_subset(&owned),
            "member {i} read a queue it does not own"
        );
    }

    // Group two, one member: every message again.
    let mut second = vec![
        GroupConsumer::start(&ns_list, "cluster_cg2", TOPIC, "*", from)
            .await
            .unwrap(),
    ];
    assert_eq!(second[0].assigned().len(), 8);
    let (seen2, _) = drain(&mut second, MESSAGES).await;
    assert_eq!(seen2.keys().cloned().collect::<BTreeSet<_>>(), sent);
    assert!(
        seen2.values().all(|n| *n == 1),
        "a message arrived twice in group two"
    );

    // Committed offsets hold: a fresh member of group one starts at the end and reads nothing.
    drop(group);
    let mut late = GroupConsumer::start(&ns_list, "cluster_cg1", TOPIC, "*", from)
        .await
        .unwrap();
    let mut again = 0;
    for _ in 0..3 {
        again += late.poll(Duration::ZERO).await.unwrap().len();
    }
    assert_eq!(again, 0, "group one re-read committed messages");
}
