//! Client logic as RocketMQ's Java client runs it, without I/O (protocol reference §20, §10):
//! which queues a topic offers producers and consumers, which queue the next send goes to, how a
//! consumer group splits the queues, the requests a producer and a consumer send, and what their
//! responses mean.
//!
//! `io-adapters` drives this with real connections (`producer.rs`, `consumer.rs`).
//!
//! # Files
//! - `route.rs`: [`TopicPublishInfo`] (round-robin send queues with broker fault avoidance) and
//!   [`TopicSubscribeInfo`] (readable queues), both from a [`TopicRouteData`].
//! - `allocate.rs`: [`allocate_averagely`], RocketMQ's default rebalance strategy.
//! - `request.rs`: request builders (send, pull, heartbeat, consumer list, offsets, route).
//! - `response.rs`: response parsers ([`SendResult`], [`PullResult`], offsets, lists, routes).
//!
//! What it leaves out: batch, oneway-only, orderly, transactional and delayed sends, body
//! compression, SQL92 filters, broadcasting offsets, queue locks, retry topics and send-back,
//! and the other allocation strategies.
//!
//! [`TopicRouteData`]: crate::body::TopicRouteData

mod allocate;
mod request;
mod response;
mod route;

pub use allocate::allocate_averagely;
pub use request::{
    consumer_heartbeat, consumer_list_request, get_max_offset_request, heartbeat_request,
    producer_heartbeat, pull_request, query_consumer_offset_request, route_request,
    send_message_v2_request, subscription, update_consumer_offset_request, OutgoingMessage,
    PullArgs, PullSysFlag, DEFAULT_TOPIC, DEFAULT_TOPIC_QUEUE_NUMS,
};
pub use response::{
    parse_consumer_list, parse_heartbeat, parse_max_offset, parse_pull,
    parse_query_consumer_offset, parse_route, parse_send, parse_update_consumer_offset, PullResult,
    PullStatus, ResponseError, SendResult, SendStatus,
};
pub use route::{BrokerFaults, TopicPublishInfo, TopicSubscribeInfo, MASTER_ID};
