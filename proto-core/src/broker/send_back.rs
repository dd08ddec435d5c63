//! CONSUMER_SEND_MSG_BACK (36, protocol reference §6.7, §11.2): a consumer that failed to
//! consume a message hands it back by commit-log offset; the broker stores a copy for the
//! group's `%RETRY%<group>` topic, delayed by a level of RocketMQ's retry ladder, or in its
//! `%DLQ%<group>` topic once the message was reconsumed `maxReconsumeTimes` times (or when the
//! consumer asks with a negative delay level).
//!
//! As Java's `AbstractSendMessageProcessor.consumerSendMsgBack`:
//! - the retry topic is created (read and write, `retryQueueNums` queues) on every send-back,
//!   the DLQ topic (read and write, one queue) when first needed;
//! - the limit is the group's `retryMaxTimes` (16 by default), or the header's
//!   `maxReconsumeTimes` from clients of V3_4_9 on;
//! - the delay level is the client's, or `3 + reconsumeTimes` when it asks for 0 (10 s, 30 s,
//!   1 min, ... with the default levels); the copy goes through `SCHEDULE_TOPIC_XXXX` and
//!   reaches `%RETRY%<group>` when due (`schedule.rs`); a DLQ copy gets `DELAY=0`, so it lands
//!   at once;
//! - the copy keeps body, flag, sys flag, born time and host, and properties; it adds
//!   `RETRY_TOPIC` (the original topic, unless already set by an earlier retry) and
//!   `ORIGIN_MESSAGE_ID` (the first attempt's offset message id, unless already set), and
//!   counts one more reconsume.
//!
//! What it leaves out: unit mode, consume-message hooks and statistics, and sending back to a
//! master from a slave.

use bytes::Bytes;

use store_core::format::properties::{self, Properties};
use store_core::format::record::{decode_with, CrcCheck, MessageRecord};
use store_core::storage::Storage;

use super::topic_config::{dlq_topic, retry_topic, DLQ_NUMS_PER_GROUP};
use super::Broker;
use crate::body::PermName;
use crate::header::{decode_header, ConsumerSendMsgBackRequestHeader};
use crate::reply::{reply, success, RequestError};
use crate::{RemotingCommand, ResponseCode};

/// MQVersion V3_4_9: from this version on the header's `maxReconsumeTimes` is honoured.
const VERSION_WITH_MAX_RECONSUME_TIMES: i32 = 121;
/// The first retry's delay level when the client leaves it to the broker: `3 + reconsumeTimes`.
const RETRY_LEVEL_BASE: i32 = 3;

impl<S: Storage + Clone> Broker<S> {
    pub(super) fn consumer_send_msg_back(
        &mut self,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, RequestError> {
        let h: ConsumerSendMsgBackRequestHeader = decode_header(cmd)?;
        let group = h.group.as_str();
        let Some(group_config) = self.groups.find_or_create(group, now_ms) else {
            let remark = format!("subscription group not exist, {group}");
            return Ok(reply(cmd, ResponseCode::SubscriptionGroupNotExist, remark));
        };
        if !PermName::is_writeable(self.config.broker_permission) {
            let remark = format!(
                "the broker[{}] sending message is forbidden",
                self.config.broker_ip1
            );
            return Ok(reply(cmd, ResponseCode::NoPermission, remark));
        }
        let retry_queue_nums = group_config.retry_queue_nums;
        if retry_queue_nums <= 0 {
            // Java answers success and drops the message: the group wants no retries.
            return Ok(success(cmd));
        }
        let max_reconsume = match h.max_reconsume_times {
            Some(max) if cmd.version >= VERSION_WITH_MAX_RECONSUME_TIMES => max,
            _ => group_config.retry_max_times,
        };
        let rw = PermName::PERM_READ | PermName::PERM_WRITE;
        let retry = retry_topic(group);
        let retry_config =
            self.topics
                .create_in_send_back(&retry, retry_queue_nums, rw, false, 0, now_ms);
        if !PermName::is_writeable(retry_config.perm) {
            let remark = format!("the topic[{retry}] sending message is forbidden");
            return Ok(reply(cmd, ResponseCode::NoPermission, remark));
        }
        let Some(original) = u64::try_from(h.offset)
            .ok()
            .and_then(|offset| self.store.lookup_by_offset(offset))
            .and_then(|bytes| decode_with(&bytes, CrcCheck::Skip).ok())
            .map(|(record, _)| record)
        else {
            let remark = format!("look message by offset failed, {}", h.offset);
            return Ok(reply(cmd, ResponseCode::SystemError, remark));
        };
        let to_dlq = original.reconsume_times >= max_reconsume || h.delay_level < 0;
        let (topic, queue_id, delay_level) = if to_dlq {
            let dlq = dlq_topic(group);
            self.topics
                .create_in_send_back(&dlq, DLQ_NUMS_PER_GROUP, rw, false, 0, now_ms);
            (dlq, self.rng.below(DLQ_NUMS_PER_GROUP), 0)
        } else {
            let level = if h.delay_level == 0 {
                RETRY_LEVEL_BASE.saturating_add(original.reconsume_times)
            } else {
                h.delay_level
            };
            (retry, self.rng.below(retry_queue_nums), level)
        };
        let mut record = self.retry_copy(original, &topic, queue_id, delay_level);
        let put = self.put_message(&mut record, now_ms);
        if !put.status.is_stored() {
            let remark = put.status.name().to_string();
            return Ok(reply(cmd, ResponseCode::SystemError, remark));
        }
        tracing::debug!(group, %topic, to_dlq, delay_level, "message sent back");
        if let Some(stored_in) = record.topic_str().map(str::to_string) {
            let max_offset = self.store.max_offset_in_queue(&stored_in, record.queue_id);
            self.wake_held_pulls(&stored_in, record.queue_id, max_offset, None, now_ms);
        }
        Ok(success(cmd))
    }

    /// The copy of `original` sent back to `topic`/`queue_id` with `DELAY=delay_level`.
    fn retry_copy(
        &self,
        original: MessageRecord,
        topic: &str,
        queue_id: i32,
        delay_level: i32,
    ) -> MessageRecord {
        let mut props = Properties::parse_bytes(&original.properties);
        if props.get(properties::RETRY_TOPIC).is_none() {
            if let Some(origin) = original.topic_str() {
                props.insert(properties::RETRY_TOPIC, origin);
            }
        }
        if props
            .get(properties::ORIGIN_MESSAGE_ID)
            .is_none_or(|id| id.trim().is_empty())
        {
            props.insert(properties::ORIGIN_MESSAGE_ID, original.msg_id());
        }
        props.insert(properties::WAIT, "false");
        props.insert(properties::DELAY, delay_level.to_string());
        MessageRecord {
            queue_id,
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: 0,
            store_host: self.config.store_host(),
            reconsume_times: original.reconsume_times.saturating_add(1),
            topic: Bytes::from(topic.as_bytes().to_vec()),
            properties: Bytes::from(props.encode().into_bytes()),
            ..original
        }
    }
}
