//! Administration and queries (protocol reference §6.9, §6.10, §15): topic create/delete and
//! listing, topic and consume statistics, connection lists, runtime info, QUERY_MESSAGE and
//! VIEW_MESSAGE_BY_ID, subscription group create/get/delete.
//!
//! What it leaves out: broker config get/update, offset reset and cloning, consume-queue
//! inspection, static topics, the 5.x topic-config paging of GET_ALL_TOPIC_CONFIG, and
//! statistics rates (TPS figures are 0).

use std::collections::BTreeMap;

use bytes::BytesMut;

use store_core::storage::Storage;

use super::offset::to_i64;
use super::topic_config::validate_topic;
use super::Broker;
use crate::body::{
    ConsumeStats, GroupList, KVTable, MessageQueue, OffsetWrapper, SubscriptionGroupConfig,
    TopicConfig, TopicFilterType, TopicOffset, TopicStatsTable,
};
use crate::header::{
    decode_header, encode_header, CreateTopicRequestHeader, DeleteTopicRequestHeader,
    GetConsumeStatsRequestHeader, GetConsumerConnectionListRequestHeader,
    GetTopicStatsInfoRequestHeader, HeaderError, QueryMessageRequestHeader,
    QueryMessageResponseHeader, ViewMessageRequestHeader,
};
use crate::reply::{body_error, reply, success, RequestError};
use crate::{RemotingCommand, RequestCode, ResponseCode};

type Handled = Result<RemotingCommand, RequestError>;

impl<S: Storage + Clone> Broker<S> {
    /// Answers an admin or query request; `None` for codes the broker does not serve.
    pub(super) fn admin(
        &mut self,
        cmd: &RemotingCommand,
        code: RequestCode,
        now_ms: u64,
    ) -> Option<Handled> {
        Some(match code {
            RequestCode::UpdateAndCreateTopic => self.create_topic(cmd, now_ms),
            RequestCode::DeleteTopicInBroker => self.delete_topic(cmd, now_ms),
            RequestCode::GetAllTopicConfig => {
                Ok(success(cmd).with_body(self.topics.to_register().encode()))
            }
            RequestCode::GetTopicStatsInfo => self.topic_stats(cmd),
            RequestCode::GetConsumeStats => self.consume_stats(cmd),
            RequestCode::GetConsumerConnectionList => self.consumer_connections(cmd),
            RequestCode::GetProducerConnectionList => self.producer_connections(cmd),
            RequestCode::GetBrokerRuntimeInfo => Ok(self.runtime_info(cmd, now_ms)),
            RequestCode::QueryMessage => self.query_message(cmd),
            RequestCode::ViewMessageById => self.view_message(cmd),
            RequestCode::UpdateAndCreateSubscriptionGroup => self.create_group(cmd, now_ms),
            RequestCode::GetSubscriptionGroupConfig => self.group_config(cmd),
            RequestCode::DeleteSubscriptionGroup => self.delete_group(cmd, now_ms),
            RequestCode::GetAllConsumerOffset => {
                Ok(success(cmd).with_body(self.offsets.to_persist().encode()))
            }
            RequestCode::GetAllSubscriptionGroupConfig => {
                Ok(success(cmd).with_body(self.groups.to_persist().encode()))
            }
            RequestCode::QueryTopicConsumeByWho => self.consumed_by(cmd),
            _ => return None,
        })
    }

    /// UPDATE_AND_CREATE_TOPIC (17).
    fn create_topic(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Handled {
        let h: CreateTopicRequestHeader = decode_header(cmd)?;
        if let Err(e) = validate_topic(&h.topic) {
            return Ok(reply(cmd, ResponseCode::InvalidParameter, e.to_string()));
        }
        if self.topics.is_system_topic(&h.topic) {
            let remark = format!("The topic[{}] is conflict with system topic.", h.topic);
            return Ok(reply(cmd, ResponseCode::InvalidParameter, remark));
        }
        let topic_filter_type = if h.topic_filter_type == "MULTI_TAG" {
            TopicFilterType::MultiTag
        } else {
            TopicFilterType::SingleTag
        };
        let attributes = parse_attributes(h.attributes.as_deref().unwrap_or_default());
        let config = TopicConfig {
            topic_name: h.topic.clone(),
            read_queue_nums: h.read_queue_nums,
            write_queue_nums: h.write_queue_nums,
            perm: h.perm,
            topic_filter_type,
            topic_sys_flag: h.topic_sys_flag.unwrap_or(0),
            order: h.order,
            attributes,
        };
        match self.topics.update(config, now_ms) {
            Ok(()) => {
                tracing::info!(topic = %h.topic, "topic created or updated by admin");
                Ok(success(cmd))
            }
            Err(e) => Ok(reply(cmd, ResponseCode::InvalidParameter, e.to_string())),
        }
    }

    /// DELETE_TOPIC_IN_BROKER (215): the topic and its consumer offsets.
    fn delete_topic(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Handled {
        let h: DeleteTopicRequestHeader = decode_header(cmd)?;
        if self.topics.is_system_topic(&h.topic) {
            let remark = format!("The topic[{}] is conflict with system topic.", h.topic);
            return Ok(reply(cmd, ResponseCode::InvalidParameter, remark));
        }
        if self.topics.delete(&h.topic, now_ms).is_some() {
            tracing::info!(topic = %h.topic, "topic deleted by admin");
        }
        self.offsets.remove_topic(&h.topic, now_ms);
        Ok(success(cmd))
    }

    /// GET_TOPIC_STATS_INFO (202).
    fn topic_stats(&self, cmd: &RemotingCommand) -> Handled {
        let h: GetTopicStatsInfoRequestHeader = decode_header(cmd)?;
        let Some(config) = self.topics.select(&h.topic) else {
            let remark = format!("topic[{}] not exist", h.topic);
            return Ok(reply(cmd, ResponseCode::TopicNotExist, remark));
        };
        let mut offset_table = BTreeMap::new();
        for queue_id in 0..config.write_queue_nums.max(0) {
            let min = self.store.min_offset_in_queue(&h.topic, queue_id);
            let max = self.store.max_offset_in_queue(&h.topic, queue_id);
            let last_update_timestamp = max
                .checked_sub(1)
                .and_then(|last| self.store.store_time_at(&h.topic, queue_id, last))
                .map_or(0, to_i64);
            offset_table.insert(
                self.message_queue(&h.topic, queue_id),
                TopicOffset {
                    min_offset: to_i64(min),
                    max_offset: to_i64(max),
                    last_update_timestamp,
                },
            );
        }
        let table = TopicStatsTable {
            offset_table,
            topic_put_tps: 0.0,
        };
        Ok(success(cmd).with_body(table.encode()))
    }

    /// GET_CONSUME_STATS (208): per queue, broker max offset, committed and last pulled offset.
    fn consume_stats(&self, cmd: &RemotingCommand) -> Handled {
        let h: GetConsumeStatsRequestHeader = decode_header(cmd)?;
        let group = h.consumer_group.as_str();
        let topics: Vec<String> = match (&h.topic, &h.topic_list) {
            (Some(topic), _) if !topic.is_empty() => vec![topic.clone()],
            (_, Some(list)) if !list.is_empty() => list
                .split(';')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => self.offsets.topics_of_group(group).into_iter().collect(),
        };
        let mut offset_table = BTreeMap::new();
        for topic in &topics {
            let Some(config) = self.topics.select(topic) else {
                continue;
            };
            for queue_id in 0..config.write_queue_nums.max(0) {
                let broker_offset = to_i64(self.store.max_offset_in_queue(topic, queue_id));
                let consumer_offset = self.offsets.query(group, topic, queue_id).unwrap_or(-1);
                let pull_offset = self
                    .offsets
                    .query_pull(group, topic, queue_id)
                    .unwrap_or(consumer_offset);
                let last_timestamp = u64::try_from(consumer_offset - 1)
                    .ok()
                    .and_then(|last| self.store.store_time_at(topic, queue_id, last))
                    .map_or(0, to_i64);
                offset_table.insert(
                    self.message_queue(topic, queue_id),
                    OffsetWrapper {
                        broker_offset,
                        consumer_offset,
                        pull_offset,
                        last_timestamp,
                    },
                );
            }
        }
        let stats = ConsumeStats {
            consume_tps: 0.0,
            offset_table,
        };
        Ok(success(cmd).with_body(stats.encode()))
    }

    /// GET_CONSUMER_CONNECTION_LIST (203).
    fn consumer_connections(&self, cmd: &RemotingCommand) -> Handled {
        let h: GetConsumerConnectionListRequestHeader = decode_header(cmd)?;
        let Some(info) = self.consumers.group(&h.consumer_group) else {
            let remark = format!("the consumer group[{}] not online", h.consumer_group);
            return Ok(reply(cmd, ResponseCode::ConsumerNotOnline, remark));
        };
        let body = info.to_consumer_connection(|conn| self.peer_addr(conn));
        Ok(success(cmd).with_body(body.encode()))
    }

    /// GET_PRODUCER_CONNECTION_LIST (204).
    fn producer_connections(&self, cmd: &RemotingCommand) -> Handled {
        let group = required_ext(cmd, "producerGroup")?;
        if !self.producers.group_online(group) {
            let remark = format!("the producer group[{group}] not exist");
            return Ok(reply(cmd, ResponseCode::SystemError, remark));
        }
        let body = self
            .producers
            .producer_connection(group, |conn| self.peer_addr(conn));
        Ok(success(cmd).with_body(body.encode()))
    }

    /// GET_BROKER_RUNTIME_INFO (28): a KVTable with the figures admin tools show.
    fn runtime_info(&self, cmd: &RemotingCommand, now_ms: u64) -> RemotingCommand {
        let mut table = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            table.insert(k.to_string(), v);
        };
        put("brokerVersionDesc", "V5_3_3".to_string());
        put(
            "brokerVersion",
            crate::codec::command::OUR_VERSION.to_string(),
        );
        put("brokerName", self.config.broker_name.clone());
        put("brokerAddr", self.config.broker_addr());
        put(
            "commitLogMinOffset",
            self.store.commit_log_min_offset().to_string(),
        );
        put(
            "commitLogMaxOffset",
            self.store.commit_log_max_offset().to_string(),
        );
        put(
            "commitLogFlushedOffset",
            self.store.flushed_offset().to_string(),
        );
        let disk = self
            .store
            .disk_used_percent()
            .map_or(0.0, |p| f64::from(p) / 100.0);
        put("commitLogDiskRatio", disk.to_string());
        let earliest = self.store.earliest_store_time().map_or(-1, to_i64);
        put("earliestMessageTimeStamp", earliest.to_string());
        put("currentTimeMillis", now_ms.to_string());
        put("pullHoldCount", self.hold.len().to_string());
        put("topicCount", self.topics.len().to_string());
        put(
            "brokerActive",
            self.store.not_writable().is_none().to_string(),
        );
        put("msgPutTotalTodayNow", "0".to_string());
        put("msgGetTotalTodayNow", "0".to_string());
        put("putTps", "0.0 0.0 0.0".to_string());
        put("getTransferredTps", "0.0 0.0 0.0".to_string());
        success(cmd).with_body(KVTable { table }.encode())
    }

    /// QUERY_MESSAGE (12): records whose key (or UNIQ_KEY) matches, newest first.
    fn query_message(&self, cmd: &RemotingCommand) -> Handled {
        let h: QueryMessageRequestHeader = decode_header(cmd)?;
        let max = usize::try_from(h.max_num).unwrap_or(0).clamp(1, 64);
        let begin = u64::try_from(h.begin_timestamp).unwrap_or(0);
        let end = u64::try_from(h.end_timestamp).unwrap_or(u64::MAX);
        let result = self.store.query_by_key(&h.topic, &h.key, max, begin, end);
        if result.records.is_empty() {
            return Ok(reply(
                cmd,
                ResponseCode::QueryNotFound,
                "can not find message, maybe time range not correct",
            ));
        }
        let mut response = success(cmd);
        encode_header(
            &mut response,
            &QueryMessageResponseHeader {
                index_last_update_timestamp: to_i64(result.index_last_update_timestamp),
                index_last_update_phyoffset: to_i64(result.index_last_update_phy_offset),
            },
        );
        let mut body = BytesMut::new();
        for record in &result.records {
            body.extend_from_slice(record);
        }
        Ok(response.with_body(body.freeze()))
    }

    /// VIEW_MESSAGE_BY_ID (33): one record by commit-log offset.
    fn view_message(&self, cmd: &RemotingCommand) -> Handled {
        let h: ViewMessageRequestHeader = decode_header(cmd)?;
        let record = u64::try_from(h.offset)
            .ok()
            .and_then(|offset| self.store.lookup_by_offset(offset));
        Ok(match record {
            Some(record) => success(cmd).with_body(record),
            None => reply(
                cmd,
                ResponseCode::SystemError,
                format!("can not find message by the offset, {}", h.offset),
            ),
        })
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP (200).
    fn create_group(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Handled {
        let config = SubscriptionGroupConfig::decode(&cmd.body)
            .map_err(body_error("SubscriptionGroupConfig"))?;
        if config.group_name.is_empty() {
            return Ok(reply(
                cmd,
                ResponseCode::InvalidParameter,
                "the group name is empty",
            ));
        }
        tracing::info!(group = %config.group_name, "subscription group created or updated by admin");
        self.groups.update(config, now_ms);
        Ok(success(cmd))
    }

    /// GET_SUBSCRIPTIONGROUP_CONFIG (352).
    fn group_config(&self, cmd: &RemotingCommand) -> Handled {
        let group = required_ext(cmd, "group")?;
        Ok(match self.groups.get(group) {
            Some(config) => success(cmd).with_body(config.encode()),
            None => reply(
                cmd,
                ResponseCode::SubscriptionGroupNotExist,
                format!("No subscription group found: {group}"),
            ),
        })
    }

    /// DELETE_SUBSCRIPTIONGROUP (207), with its offsets when `cleanOffset`.
    fn delete_group(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Handled {
        let group = required_ext(cmd, "groupName")?.to_string();
        self.groups.delete(&group, now_ms);
        let clean = cmd
            .ext("cleanOffset")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        if clean {
            self.offsets.remove_group(&group, now_ms);
        }
        Ok(success(cmd))
    }

    /// QUERY_TOPIC_CONSUME_BY_WHO (300): groups online on the topic or with offsets on it.
    fn consumed_by(&self, cmd: &RemotingCommand) -> Handled {
        let topic = required_ext(cmd, "topic")?;
        let mut group_list = self.consumers.groups_of_topic(topic);
        group_list.extend(self.offsets.groups_of_topic(topic));
        Ok(success(cmd).with_body(GroupList { group_list }.encode()))
    }

    pub(super) fn message_queue(&self, topic: &str, queue_id: i32) -> MessageQueue {
        MessageQueue {
            topic: topic.to_string(),
            broker_name: self.config.broker_name.clone(),
            queue_id,
        }
    }

    /// A connection's peer `ip:port`, as connection lists show it.
    fn peer_addr(&self, conn: crate::role::ConnId) -> String {
        self.conns
            .get(&conn)
            .map_or_else(String::new, |c| c.remote.to_string())
    }
}

/// An extFields value a request must carry (for requests without a header struct).
fn required_ext<'a>(
    cmd: &'a RemotingCommand,
    field: &'static str,
) -> Result<&'a str, RequestError> {
    cmd.ext(field)
        .ok_or(RequestError::Header(HeaderError::MissingField { field }))
}

/// `+key=value,+key2=value2` into a map of `+key` -> value, as the topic table expects its
/// alterations.
fn parse_attributes(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|entry| {
            let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
            (!key.trim().is_empty()).then(|| (key.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}
