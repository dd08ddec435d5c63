//! CONSUMER_SEND_MSG_BACK (36, protocol reference §6.7, §11.2): a consumer that failed to
//! consume a message hands it back by commit-log offset; the broker re-stores it in the
//! group's `%RETRY%` topic, or in its `%DLQ%` topic once reconsumed `maxReconsumeTimes` times
//! (or when asked with a negative delay level).
//!
//! What it leaves out: the delay itself. Java parks the retry in `SCHEDULE_TOPIC_XXXX` for the
//! level's delay; this broker has no schedule service yet, so the `DELAY` property is recorded
//! and the retry is delivered at once.

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
            // Java drops the message silently: the group wants no retries.
            return Ok(success(cmd));
        }
        let max_reconsume = match h.max_reconsume_times {
            Some(max) if cmd.version >= VERSION_WITH_MAX_RECONSUME_TIMES => max,
            _ => group_config.retry_max_times,
        };
        let Some(original) = u64::try_from(h.offset)
            .ok()
            .and_then(|offset| self.store.lookup_by_offset(offset))
            .and_then(|bytes| decode_with(&bytes, CrcCheck::Skip).ok())
            .map(|(record, _)| record)
        else {
            let remark = format!("look message by offset failed, {}", h.offset);
            return Ok(reply(cmd, ResponseCode::SystemError, remark));
        };
        let rw = PermName::PERM_READ | PermName::PERM_WRITE;
        let to_dlq = original.reconsume_times >= max_reconsume || h.delay_level < 0;
        let (topic, queue_nums) = if to_dlq {
            (dlq_topic(group), DLQ_NUMS_PER_GROUP)
        } else {
            (retry_topic(group), retry_queue_nums)
        };
        self.topics
            .create_in_send_back(&topic, queue_nums, rw, false, 0, now_ms);
        let queue_id = self.rng.below(queue_nums.max(1));
        let mut props = Properties::parse_bytes(&original.properties);
        if props.get(properties::RETRY_TOPIC).is_none() {
            if let Some(origin) = original.topic_str() {
                props.insert(properties::RETRY_TOPIC, origin);
            }
        }
        if props.get(properties::ORIGIN_MESSAGE_ID).is_none() {
            let origin = h.origin_msg_id.clone().unwrap_or_else(|| original.msg_id());
            props.insert(properties::ORIGIN_MESSAGE_ID, origin);
        }
        props.insert(properties::WAIT, "false");
        if !to_dlq {
            let level = if h.delay_level == 0 {
                3 + original.reconsume_times
            } else {
                h.delay_level
            };
            props.insert(properties::DELAY, level.to_string());
        }
        let record = MessageRecord {
            queue_id,
            queue_offset: 0,
            physical_offset: 0,
            store_timestamp: 0,
            store_host: self.config.store_host(),
            reconsume_times: original.reconsume_times.saturating_add(1),
            topic: Bytes::from(topic.clone().into_bytes()),
            properties: Bytes::from(props.encode().into_bytes()),
            ..original
        };
        let put = self.store.put(&record, now_ms);
        if !put.status.is_stored() {
            let remark = put.status.name().to_string();
            return Ok(reply(cmd, ResponseCode::SystemError, remark));
        }
        tracing::debug!(group, %topic, to_dlq, "message sent back");
        let max_offset = self.store.max_offset_in_queue(&topic, queue_id);
        self.wake_held_pulls(&topic, queue_id, max_offset, None, now_ms);
        Ok(success(cmd))
    }
}
