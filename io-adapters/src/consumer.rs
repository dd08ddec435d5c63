//! A clustering consumer of one topic over [`RemotingClient`] connections, driving
//! `proto_core::client`: it heartbeats its subscription to every broker of the topic, asks a
//! broker for the group's members, takes its share of the queues by
//! [`allocate_averagely`], pulls each owned queue from the group's committed offset, and commits
//! offsets (piggy-backed on pulls, explicitly with [`GroupConsumer::commit`], and for queues it
//! gives up in a rebalance).
//!
//! The caller runs the loop: [`GroupConsumer::poll`] pulls every owned queue once (in parallel,
//! long polling up to the given time) and rebalances first when a broker announced a membership
//! change. Messages count as consumed once `poll` returns them.
//!
//! What it leaves out: broadcasting, orderly consumption (queue locks), retry topics and
//! send-back, flow control, several topics per consumer, and the 20 s / 30 s timers (the caller
//! calls [`GroupConsumer::heartbeat`] and [`GroupConsumer::rebalance`] when it wants).
//!
//! [`RemotingClient`]: crate::client::RemotingClient
//! [`allocate_averagely`]: proto_core::client::allocate_averagely

use std::collections::BTreeMap;
use std::time::Duration;

use proto_core::body::{ConsumeFromWhere, MessageQueue, SubscriptionData};
use proto_core::client::{
    allocate_averagely, consumer_heartbeat, consumer_list_request, get_max_offset_request,
    heartbeat_request, parse_consumer_list, parse_heartbeat, parse_max_offset, parse_pull,
    parse_query_consumer_offset, parse_update_consumer_offset, pull_request,
    query_consumer_offset_request, subscription, update_consumer_offset_request, PullArgs,
    PullStatus, TopicSubscribeInfo,
};
use proto_core::message::record::MessageRecord;

use crate::clock;
pub use crate::peers::MqClientError;
use crate::peers::{client_id, Peers, REQUEST_TIMEOUT};

/// Java's push consumer pulls 32 messages at a time.
const PULL_BATCH: i32 = 32;

/// One member of a consumer group reading one topic.
pub struct GroupConsumer {
    peers: Peers,
    group: String,
    client_id: String,
    topic: String,
    subscription: SubscriptionData,
    consume_from: ConsumeFromWhere,
    route: TopicSubscribeInfo,
    /// Owned queues and the next offset to pull from each.
    owned: BTreeMap<MessageQueue, i64>,
    /// The offset each owned queue started from. Explicit commits report only progress past
    /// it: a member that took a queue over may have read a committed offset its previous owner
    /// has passed since, and committing it back would move the group backwards (found by the
    /// simulator's consumer-churn scenario).
    started: BTreeMap<MessageQueue, i64>,
}

impl GroupConsumer {
    /// Joins `group` on `topic` with a TAG `expression` (`*` for all): fetches the route,
    /// heartbeats to every broker and rebalances once. `consume_from` applies to queues the
    /// group never committed: `ConsumeFromFirstOffset` starts at 0, anything else at the
    /// queue's max offset.
    pub async fn start(
        namesrv_addrs: &str,
        group: &str,
        topic: &str,
        expression: &str,
        consume_from: ConsumeFromWhere,
    ) -> Result<GroupConsumer, MqClientError> {
        let peers = Peers::new(namesrv_addrs)?;
        let route = TopicSubscribeInfo::from_route(topic, &peers.route(topic).await?);
        let mut consumer = GroupConsumer {
            peers,
            group: group.to_string(),
            client_id: client_id(),
            topic: topic.to_string(),
            subscription: subscription(topic, expression, clock::now_ms() as i64),
            consume_from,
            route,
            owned: BTreeMap::new(),
            started: BTreeMap::new(),
        };
        consumer.heartbeat().await?;
        consumer.rebalance().await?;
        Ok(consumer)
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The queues this member owns, sorted.
    pub fn assigned(&self) -> Vec<MessageQueue> {
        self.owned.keys().cloned().collect()
    }

    /// Sends the group's subscription to every master of the topic.
    pub async fn heartbeat(&self) -> Result<(), MqClientError> {
        let data = consumer_heartbeat(
            &self.client_id,
            &self.group,
            vec![self.subscription.clone()],
            self.consume_from,
        );
        for addr in self.route.master_addrs() {
            let resp = self
                .peers
                .invoke(addr, heartbeat_request(&data), REQUEST_TIMEOUT)
                .await?;
            parse_heartbeat(&resp).map_err(MqClientError::response(addr))?;
        }
        Ok(())
    }

    /// Refreshes the route, asks a broker for the group's members and takes this member's
    /// share: queues given up get their offsets committed, new ones start from the group's
    /// committed offset.
    pub async fn rebalance(&mut self) -> Result<(), MqClientError> {
        self.route =
            TopicSubscribeInfo::from_route(&self.topic, &self.peers.route(&self.topic).await?);
        let addr = self
            .route
            .master_addrs()
            .next()
            .ok_or_else(|| MqClientError::NoQueue {
                topic: self.topic.clone(),
                kind: "readable",
            })?
            .to_string();
        let resp = self
            .peers
            .invoke(&addr, consumer_list_request(&self.group), REQUEST_TIMEOUT)
            .await?;
        let ids = parse_consumer_list(&resp).map_err(MqClientError::response(&addr))?;
        let mine = allocate_averagely(&ids, self.route.queues(), &self.client_id);

        let dropped: Vec<MessageQueue> = self
            .owned
            .keys()
            .filter(|mq| !mine.contains(mq))
            .cloned()
            .collect();
        for mq in dropped {
            if let Some(offset) = self.owned.remove(&mq) {
                let started = self.started.remove(&mq);
                if started.is_none_or(|s| offset > s) {
                    self.commit_one(&mq, offset).await?;
                }
            }
        }
        for mq in mine {
            if !self.owned.contains_key(&mq) {
                let offset = self.start_offset(&mq).await?;
                self.started.insert(mq.clone(), offset);
                self.owned.insert(mq, offset);
            }
        }
        Ok(())
    }

    /// Pulls every owned queue once, in parallel; the broker may hold each pull up to
    /// `suspend` when the queue has nothing new. Returns the messages in queue order per queue;
    /// an error only when no pull brought messages (a failed queue is retried next time).
    pub async fn poll(
        &mut self,
        suspend: Duration,
    ) -> Result<Vec<(MessageQueue, MessageRecord)>, MqClientError> {
        if self.peers.take_ids_changed() {
            self.rebalance().await?;
        }
        let mut pulls = Vec::with_capacity(self.owned.len());
        for (mq, &offset) in &self.owned {
            let addr = self.master(mq)?;
            let cmd = pull_request(&PullArgs {
                group: &self.group,
                mq,
                subscription: &self.subscription,
                queue_offset: offset,
                commit_offset: (offset > 0).then_some(offset),
                max_msg_nums: PULL_BATCH,
                suspend_timeout_ms: suspend.as_millis() as i64,
                with_subscription: false,
            });
            let conn = self.peers.conn(&addr).await?;
            let timeout = suspend + REQUEST_TIMEOUT;
            let task = tokio::spawn(async move { conn.invoke(cmd, timeout).await });
            pulls.push((mq.clone(), addr, task));
        }
        // Every answer is taken before any error is returned: a queue whose pull succeeded has
        // moved its offset, so its messages must reach the caller even when another queue's
        // pull failed (returning early lost them, and the moved offset was then committed:
        // found by the simulator's consumer-churn scenario).
        let mut out = Vec::new();
        let mut failed = None;
        for (mq, addr, task) in pulls {
            let Ok(resp) = task.await else {
                // The task only awaits a response; it cannot panic, and is never aborted.
                continue;
            };
            let parsed = resp.map_err(MqClientError::from).and_then(|resp| {
                parse_pull(&resp, &self.subscription).map_err(MqClientError::response(&addr))
            });
            let result = match parsed {
                Ok(result) => result,
                Err(e) => {
                    tracing::warn!(queue = ?mq, error = %e, "pull failed");
                    failed.get_or_insert(e);
                    continue;
                }
            };
            if result.status == PullStatus::OffsetIllegal {
                tracing::info!(queue = ?mq, next = result.next_begin_offset, "offset moved");
            }
            self.owned.insert(mq.clone(), result.next_begin_offset);
            out.extend(result.messages.into_iter().map(|m| (mq.clone(), m)));
        }
        match failed {
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Commits the next offset of every owned queue this member has read from
    /// (UPDATE_CONSUMER_OFFSET, answered).
    pub async fn commit(&self) -> Result<(), MqClientError> {
        for (mq, &offset) in &self.owned {
            if self.started.get(mq).is_none_or(|&s| offset > s) {
                self.commit_one(mq, offset).await?;
            }
        }
        Ok(())
    }

    async fn commit_one(&self, mq: &MessageQueue, offset: i64) -> Result<(), MqClientError> {
        let addr = self.master(mq)?;
        let cmd = update_consumer_offset_request(&self.group, mq, offset);
        let resp = self.peers.invoke(&addr, cmd, REQUEST_TIMEOUT).await?;
        parse_update_consumer_offset(&resp).map_err(MqClientError::response(&addr))
    }

    /// Where a newly owned queue starts: the committed offset, else per `consume_from`.
    async fn start_offset(&self, mq: &MessageQueue) -> Result<i64, MqClientError> {
        let addr = self.master(mq)?;
        let cmd = query_consumer_offset_request(&self.group, mq);
        let resp = self.peers.invoke(&addr, cmd, REQUEST_TIMEOUT).await?;
        if let Some(offset) =
            parse_query_consumer_offset(&resp).map_err(MqClientError::response(&addr))?
        {
            return Ok(offset);
        }
        if self.consume_from == ConsumeFromWhere::ConsumeFromFirstOffset {
            return Ok(0);
        }
        let resp = self
            .peers
            .invoke(&addr, get_max_offset_request(mq), REQUEST_TIMEOUT)
            .await?;
        parse_max_offset(&resp).map_err(MqClientError::response(&addr))
    }

    fn master(&self, mq: &MessageQueue) -> Result<String, MqClientError> {
        self.route
            .master_addr(&mq.broker_name)
            .map(str::to_string)
            .ok_or_else(|| MqClientError::NoMaster(mq.broker_name.clone()))
    }
}
