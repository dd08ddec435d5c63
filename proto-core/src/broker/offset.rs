//! Offsets (protocol reference §6.4, §6.5, §10.3): QUERY_CONSUMER_OFFSET,
//! UPDATE_CONSUMER_OFFSET, GET_MAX_OFFSET, GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP and
//! GET_EARLIEST_MSG_STORETIME.
//!
//! What it leaves out: static-topic logic queues (`lo`), and the in-page-cache test of
//! QUERY_CONSUMER_OFFSET, which is approximated by "message 0 is still stored".

use store_core::status::BoundaryType as StoreBoundary;
use store_core::storage::Storage;

use super::consumer_offset::{OffsetQuery, QueueStart};
use super::Broker;
use crate::header::{
    decode_header, encode_header, BoundaryType, GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
use crate::reply::{reply, success, RequestError};
use crate::{RemotingCommand, ResponseCode};

/// Java's remark for QUERY_NOT_FOUND, kept word for word.
const QUERY_NOT_FOUND_REMARK: &str =
    "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first";

type Handled = Result<RemotingCommand, RequestError>;

impl<S: Storage + Clone> Broker<S> {
    pub(super) fn query_consumer_offset(&mut self, cmd: &RemotingCommand) -> Handled {
        let h: QueryConsumerOffsetRequestHeader = decode_header(cmd)?;
        let start = QueueStart {
            min_offset: to_i64(self.store.min_offset_in_queue(&h.topic, h.queue_id)),
            first_in_memory: self.store.store_time_at(&h.topic, h.queue_id, 0).is_some(),
        };
        let answer = self.offsets.query_for_client(
            &h.consumer_group,
            &h.topic,
            h.queue_id,
            h.set_zero_if_not_found,
            start,
        );
        Ok(match answer {
            OffsetQuery::Found(offset) => {
                let mut response = success(cmd);
                encode_header(&mut response, &QueryConsumerOffsetResponseHeader { offset });
                response
            }
            OffsetQuery::NotFound(reason) => {
                tracing::debug!(group = %h.consumer_group, topic = %h.topic, queue_id = h.queue_id, remark = reason.remark(), "no consumer offset");
                reply(cmd, ResponseCode::QueryNotFound, QUERY_NOT_FOUND_REMARK)
            }
        })
    }

    pub(super) fn update_consumer_offset(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Handled {
        let h: UpdateConsumerOffsetRequestHeader = decode_header(cmd)?;
        if !self.topics.contains(&h.topic) {
            return Ok(reply(
                cmd,
                ResponseCode::TopicNotExist,
                format!("Topic {} not exist!", h.topic),
            ));
        }
        if self.commit_blocked_by_reset(&h.consumer_group, &h.topic, h.queue_id) {
            tracing::info!(group = %h.consumer_group, topic = %h.topic, queue_id = h.queue_id, offset = h.commit_offset, "commit ignored: the queue was reset and not pulled since");
            return Ok(reply(
                cmd,
                ResponseCode::Success,
                "Offset has been previously reset",
            ));
        }
        self.offsets.commit(
            &h.consumer_group,
            &h.topic,
            h.queue_id,
            h.commit_offset,
            now_ms,
        );
        Ok(success(cmd))
    }

    pub(super) fn max_offset(&self, cmd: &RemotingCommand) -> Handled {
        let h: GetMaxOffsetRequestHeader = decode_header(cmd)?;
        let offset = to_i64(self.store.max_offset_in_queue(&h.topic, h.queue_id));
        let mut response = success(cmd);
        encode_header(&mut response, &GetMaxOffsetResponseHeader { offset });
        Ok(response)
    }

    pub(super) fn min_offset(&self, cmd: &RemotingCommand) -> Handled {
        let h: GetMinOffsetRequestHeader = decode_header(cmd)?;
        let offset = to_i64(self.store.min_offset_in_queue(&h.topic, h.queue_id));
        let mut response = success(cmd);
        encode_header(&mut response, &GetMinOffsetResponseHeader { offset });
        Ok(response)
    }

    pub(super) fn search_offset(&self, cmd: &RemotingCommand) -> Handled {
        let h: SearchOffsetRequestHeader = decode_header(cmd)?;
        let boundary = match h.boundary_type {
            BoundaryType::Lower => StoreBoundary::Lower,
            BoundaryType::Upper => StoreBoundary::Upper,
        };
        let timestamp = u64::try_from(h.timestamp).unwrap_or(0);
        let offset = self
            .store
            .offset_by_timestamp(&h.topic, h.queue_id, timestamp, boundary);
        let mut response = success(cmd);
        encode_header(
            &mut response,
            &SearchOffsetResponseHeader {
                offset: to_i64(offset),
            },
        );
        Ok(response)
    }

    pub(super) fn earliest_msg_store_time(&self, cmd: &RemotingCommand) -> Handled {
        let h: GetEarliestMsgStoretimeRequestHeader = decode_header(cmd)?;
        // Java answers -1 when the queue holds nothing.
        let timestamp = self
            .store
            .earliest_store_time_in_queue(&h.topic, h.queue_id)
            .map_or(-1, to_i64);
        let mut response = success(cmd);
        encode_header(
            &mut response,
            &GetEarliestMsgStoretimeResponseHeader { timestamp },
        );
        Ok(response)
    }
}

pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
