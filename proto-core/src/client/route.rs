//! A topic's queues as a client sees them (protocol reference §20.1, §20.2): the writable queues
//! of master brokers in RocketMQ's order with round-robin selection ([`TopicPublishInfo`]), the
//! readable queues ([`TopicSubscribeInfo`]), and the brokers a producer currently avoids
//! ([`BrokerFaults`]).
//!
//! What it leaves out: static-topic mappings (`topicQueueMappingByBroker`) and reading from
//! slaves; both send and pull go to the master (broker id 0).

use std::collections::BTreeMap;

use crate::body::{MessageQueue, PermName, TopicRouteData};

/// Broker id of a master (Java `MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// After a failed send, how long a broker is skipped, by observed latency (Java
/// `MQFaultStrategy.latencyMax` / `notAvailableDuration`): a latency of at least
/// `LATENCY_MS_MAX[i]` makes the broker unavailable for `NOT_AVAILABLE_MS[i]`.
const LATENCY_MS_MAX: [u64; 7] = [50, 100, 550, 1_800, 3_000, 5_000, 15_000];
const NOT_AVAILABLE_MS: [u64; 7] = [0, 0, 2_000, 5_000, 6_000, 10_000, 30_000];
/// Java charges a failed (isolated) broker as if it had answered after 10 s.
const ISOLATION_LATENCY_MS: u64 = 10_000;

/// Master address per broker name, from a route's broker data.
fn master_addrs(route: &TopicRouteData) -> BTreeMap<String, String> {
    route
        .broker_datas
        .iter()
        .filter_map(|b| {
            let addr = b.broker_addrs.get(&MASTER_ID)?;
            Some((b.broker_name.clone(), addr.clone()))
        })
        .collect()
}

/// Where a producer may send one topic's messages, and which queue is next.
///
/// Selection is Java's `TopicPublishInfo.selectOneMessageQueue` with latency-fault avoidance on:
/// a counter moves round the queue list, skipping queues of the broker the previous attempt of
/// this send failed on and of brokers in [`BrokerFaults`]; if every queue is skipped, the
/// broker filter alone applies, then none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPublishInfo {
    queues: Vec<MessageQueue>,
    masters: BTreeMap<String, String>,
    order_topic: bool,
    /// Java's `ThreadLocalIndex`, which starts at a random value; the caller seeds it.
    index: u32,
}

impl TopicPublishInfo {
    /// The publish queues of `topic` (Java `topicRouteData2TopicPublishInfo`): for an ordered
    /// topic, the `orderTopicConf` entries (`brokerName:count;...`) in their order; otherwise
    /// queues `0..writeQueueNums` of every writable QueueData with a master, by broker name.
    /// `start_index` seeds the round-robin counter.
    pub fn from_route(topic: &str, route: &TopicRouteData, start_index: u32) -> TopicPublishInfo {
        let masters = master_addrs(route);
        let mut queues = Vec::new();
        let order_conf = route
            .order_topic_conf
            .as_deref()
            .filter(|conf| !conf.is_empty());
        if let Some(conf) = order_conf {
            for (broker, count) in conf.split(';').filter_map(|e| e.split_once(':')) {
                // Java throws on a bad count; skipping the entry keeps the others usable.
                let count = count.trim().parse::<i32>().unwrap_or(0);
                queues.extend((0..count).map(|id| queue(topic, broker, id)));
            }
        } else {
            let mut datas: Vec<_> = route.queue_datas.iter().collect();
            // QueueData.compareTo: by broker name.
            datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
            for qd in datas {
                if PermName::is_writeable(qd.perm) && masters.contains_key(&qd.broker_name) {
                    queues.extend(
                        (0..qd.write_queue_nums).map(|id| queue(topic, &qd.broker_name, id)),
                    );
                }
            }
        }
        TopicPublishInfo {
            queues,
            masters,
            order_topic: order_conf.is_some(),
            index: start_index,
        }
    }

    /// Every publish queue, in selection order.
    pub fn queues(&self) -> &[MessageQueue] {
        &self.queues
    }

    /// True when the route named the queues in `orderTopicConf`.
    pub fn is_order_topic(&self) -> bool {
        self.order_topic
    }

    /// The master address of `broker_name`, if the route has one.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.masters.get(broker_name).map(String::as_str)
    }

    /// The queue for the next send attempt; `None` only when there are no queues.
    /// `last_failed` is the broker the previous attempt of the same send failed on.
    pub fn select(
        &mut self,
        last_failed: Option<&str>,
        faults: &BrokerFaults,
        now_ms: u64,
    ) -> Option<MessageQueue> {
        if self.queues.is_empty() {
            return None;
        }
        let not_last = |mq: &MessageQueue| Some(mq.broker_name.as_str()) != last_failed;
        let available =
            |mq: &MessageQueue| not_last(mq) && faults.is_available(&mq.broker_name, now_ms);
        if let Some(mq) = self.next_matching(available) {
            return Some(mq);
        }
        if let Some(mq) = self.next_matching(not_last) {
            return Some(mq);
        }
        self.next_matching(|_| true)
    }

    /// Advances the counter up to one lap, returning the first queue `keep` accepts.
    fn next_matching(&mut self, keep: impl Fn(&MessageQueue) -> bool) -> Option<MessageQueue> {
        let len = self.queues.len();
        for _ in 0..len {
            self.index = self.index.wrapping_add(1);
            let mq = self.queues.get(self.index as usize % len)?;
            if keep(mq) {
                return Some(mq.clone());
            }
        }
        None
    }
}

/// Where a consumer may pull one topic's messages: every queue of a readable QueueData
/// (Java `topicRouteData2TopicSubscribeInfo`), sorted as rebalancing wants them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSubscribeInfo {
    queues: Vec<MessageQueue>,
    masters: BTreeMap<String, String>,
}

impl TopicSubscribeInfo {
    pub fn from_route(topic: &str, route: &TopicRouteData) -> TopicSubscribeInfo {
        let mut queues: Vec<MessageQueue> = route
            .queue_datas
            .iter()
            .filter(|qd| PermName::is_readable(qd.perm))
            .flat_map(|qd| (0..qd.read_queue_nums).map(|id| queue(topic, &qd.broker_name, id)))
            .collect();
        queues.sort();
        queues.dedup();
        TopicSubscribeInfo {
            queues,
            masters: master_addrs(route),
        }
    }

    /// Every readable queue, sorted by topic, broker name, queue id.
    pub fn queues(&self) -> &[MessageQueue] {
        &self.queues
    }

    /// The master address of `broker_name`, if the route has one.
    pub fn master_addr(&self, broker_name: &str) -> Option<&str> {
        self.masters.get(broker_name).map(String::as_str)
    }

    /// Every master address, one per broker name.
    pub fn master_addrs(&self) -> impl Iterator<Item = &str> {
        self.masters.values().map(String::as_str)
    }
}

/// Brokers a producer skips for a while after slow or failed sends (Java
/// `LatencyFaultToleranceImpl`, reduced to one deadline per broker name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerFaults {
    unavailable_until_ms: BTreeMap<String, u64>,
}

impl BrokerFaults {
    /// Records the outcome of a send to `broker_name` that took `latency_ms`; `failed` charges
    /// it as an isolation (Java's 10 s latency). A fast success clears the broker.
    pub fn record(&mut self, broker_name: &str, latency_ms: u64, failed: bool, now_ms: u64) {
        let latency = if failed {
            ISOLATION_LATENCY_MS
        } else {
            latency_ms
        };
        let duration = LATENCY_MS_MAX
            .iter()
            .zip(NOT_AVAILABLE_MS)
            .rev()
            .find(|(max, _)| latency >= **max)
            .map_or(0, |(_, d)| d);
        if duration == 0 {
            self.unavailable_until_ms.remove(broker_name);
        } else {
            self.unavailable_until_ms
                .insert(broker_name.to_string(), now_ms.saturating_add(duration));
        }
    }

    pub fn is_available(&self, broker_name: &str, now_ms: u64) -> bool {
        self.unavailable_until_ms
            .get(broker_name)
            .is_none_or(|until| now_ms >= *until)
    }
}

fn queue(topic: &str, broker_name: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        broker_name: broker_name.to_string(),
        queue_id,
        topic: topic.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{BrokerData, QueueData};

    fn route(brokers: &[(&str, i32, bool)]) -> TopicRouteData {
        TopicRouteData {
            broker_datas: brokers
                .iter()
                .map(|(name, _, has_master)| BrokerData {
                    broker_addrs: if *has_master {
                        BTreeMap::from([(0, format!("{name}:10911")), (1, format!("{name}:1"))])
                    } else {
                        BTreeMap::from([(1, format!("{name}:1"))])
                    },
                    broker_name: name.to_string(),
                    ..BrokerData::default()
                })
                .collect(),
            queue_datas: brokers
                .iter()
                .map(|(name, perm, _)| QueueData {
                    broker_name: name.to_string(),
                    perm: *perm,
                    read_queue_nums: 2,
                    write_queue_nums: 3,
                    topic_sys_flag: 0,
                })
                .collect(),
            ..TopicRouteData::default()
        }
    }

    fn names(queues: &[MessageQueue]) -> Vec<String> {
        queues
            .iter()
            .map(|q| format!("{}/{}", q.broker_name, q.queue_id))
            .collect()
    }

    #[test]
    fn publish_queues_are_writable_masters_by_broker_name() {
        // Route order b, c, a: the publish list is sorted by broker name; c has no master and d
        // is read-only.
        let r = route(&[
            ("b", 6, true),
            ("c", 6, false),
            ("a", 6, true),
            ("d", 4, true),
        ]);
        let info = TopicPublishInfo::from_route("T", &r, 0);
        assert_eq!(
            names(info.queues()),
            ["a/0", "a/1", "a/2", "b/0", "b/1", "b/2"]
        );
        assert_eq!(info.master_addr("a"), Some("a:10911"));
        assert_eq!(info.master_addr("c"), None);
        assert!(!info.is_order_topic());
    }

    #[test]
    fn order_topic_conf_names_the_queues() {
        let mut r = route(&[("a", 6, true), ("b", 6, true)]);
        r.order_topic_conf = Some("b:2;a:1;bad".to_string());
        let info = TopicPublishInfo::from_route("T", &r, 0);
        assert_eq!(names(info.queues()), ["b/0", "b/1", "a/0"]);
        assert!(info.is_order_topic());
    }

    #[test]
    fn subscribe_queues_are_readable_and_sorted() {
        let r = route(&[("b", 4, true), ("a", 2, true), ("c", 6, false)]);
        let info = TopicSubscribeInfo::from_route("T", &r);
        assert_eq!(names(info.queues()), ["b/0", "b/1", "c/0", "c/1"]);
        assert_eq!(
            info.master_addrs().collect::<Vec<_>>(),
            ["a:10911", "b:10911"]
        );
    }

    #[test]
    fn selection_is_round_robin_from_the_seed() {
        let r = route(&[("a", 6, true), ("b", 6, true)]);
        let mut info = TopicPublishInfo::from_route("T", &r, 4);
        let faults = BrokerFaults::default();
        let picked: Vec<_> = (0..7)
            .map(|_| info.select(None, &faults, 0).unwrap())
            .collect();
        // Java increments before use: seed 4 picks index 5 first.
        assert_eq!(
            names(&picked),
            ["b/2", "a/0", "a/1", "a/2", "b/0", "b/1", "b/2"]
        );
    }

    #[test]
    fn selection_avoids_the_last_failed_and_faulty_brokers() {
        let r = route(&[("a", 6, true), ("b", 6, true)]);
        let mut info = TopicPublishInfo::from_route("T", &r, 0);
        let mut faults = BrokerFaults::default();
        for _ in 0..6 {
            assert_eq!(info.select(Some("a"), &faults, 0).unwrap().broker_name, "b");
        }
        faults.record("b", 0, true, 1_000);
        assert!(!faults.is_available("b", 10_999));
        for _ in 0..6 {
            assert_eq!(info.select(None, &faults, 5_000).unwrap().broker_name, "a");
        }
        // Every broker excluded: the last-failed filter alone, then none at all.
        assert_eq!(
            info.select(Some("a"), &faults, 5_000).unwrap().broker_name,
            "b"
        );
        let only_a = route(&[("a", 6, true)]);
        let mut single = TopicPublishInfo::from_route("T", &only_a, 0);
        assert_eq!(
            single.select(Some("a"), &faults, 0).unwrap().broker_name,
            "a"
        );
        // Isolation ends, and a fast success clears it early.
        assert!(faults.is_available("b", 11_000));
        faults.record("b", 0, true, 20_000);
        faults.record("b", 10, false, 20_001);
        assert!(faults.is_available("b", 20_001));
        faults.record("b", 600, false, 0);
        assert!(!faults.is_available("b", 1_999));
        assert!(faults.is_available("b", 2_000));
    }

    #[test]
    fn no_queues_selects_nothing() {
        let mut info = TopicPublishInfo::from_route("T", &TopicRouteData::default(), 0);
        assert_eq!(info.select(None, &BrokerFaults::default(), 0), None);
    }
}
