//! The send path (protocol reference §8): SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and
//! SEND_BATCH_MESSAGE (320, or code 10 with `batch` set, as the C++ client sends batches).
//!
//! Order of checks as Java's `SendMessageProcessor`: topic name, broker permission, topic
//! lookup or auto-creation, queue id, retry/DLQ handling, then the store. Under SYNC_FLUSH the
//! success response is held until the store's flushed offset covers the record (released in
//! `handle_turn_end`, one sync per turn).
//!
//! A message with a delay level goes through `Broker::put_message`, which parks it in
//! `SCHEDULE_TOPIC_XXXX` (`schedule.rs`); a batch with one is refused as Java refuses it.
//!
//! A half message (`TRAN_MSG=true`) goes to `RMQ_SYS_TRANS_HALF_TOPIC` (`transaction/`).
//!
//! A message with a timer property goes to `rmq_sys_wheel_timer` (`timer.rs`).
//!
//! What it leaves out: send hooks and unit-mode flags.

use bytes::Bytes;

use store_core::format::batch::decode_batch;
use store_core::format::properties::{self, Properties};
use store_core::format::record::MessageRecord;
use store_core::format::sys_flag::MULTI_TAGS_FLAG;
use store_core::format::tag::tag_hash_code;
use store_core::status::{AppendInfo, NotWritable, PutMessageStatus};
use store_core::storage::Storage;

use super::topic_config::{
    dlq_topic, is_not_allowed_send_topic, validate_topic, DLQ_NUMS_PER_GROUP,
    RETRY_GROUP_TOPIC_PREFIX,
};
use super::{AwaitFlush, Broker};
use crate::body::{PermName, TopicConfig, TopicFilterType};
use crate::header::{
    decode_send_header, encode_header, SendMessageRequestHeader, SendMessageResponseHeader,
    MSG_REGION, TRACE_ON,
};
use crate::role::ConnId;
use crate::{RemotingCommand, RequestCode, ResponseCode};

/// MQVersion V3_4_9: senders from this version on carry `maxReconsumeTimes` in the header.
const VERSION_WITH_MAX_RECONSUME_TIMES: i32 = 121;
/// Java's default `retryMaxTimes` when neither header nor group says otherwise.
const MAX_RECONSUME_TIMES_DEFAULT: i32 = 16;

/// A send that passed the checks: where it goes.
struct SendTarget {
    topic: String,
    queue_id: i32,
    config: TopicConfig,
    /// Redirected to the group's DLQ: `DELAY=-1` is written into the properties.
    to_dlq: bool,
}

impl<S: Storage + Clone> Broker<S> {
    /// Answers a send; `None` while a SYNC_FLUSH response is held.
    pub(super) fn handle_send(
        &mut self,
        conn: ConnId,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let mut response = RemotingCommand::response_to(cmd, ResponseCode::Success.value(), None);
        let fields = response.ext_fields_mut();
        fields.insert(MSG_REGION, self.config.region_id.clone());
        fields.insert(TRACE_ON, self.config.trace_on.to_string());
        let header = match decode_send_header(cmd) {
            Ok(header) => header,
            Err(e) => return Some(refuse(response, ResponseCode::SystemError, e.to_string())),
        };
        let target = match self.check_send(cmd, &header, now_ms) {
            Ok(target) => target,
            Err((code, remark)) => return Some(refuse(response, code, remark)),
        };
        let batch = RequestCode::from_value(cmd.code) == RequestCode::SendBatchMessage
            || header.batch == Some(true);
        let born_host = self
            .conns
            .get(&conn)
            .map_or_else(|| self.config.store_host(), |c| c.remote);
        let stored = if batch {
            self.put_batch(cmd, &header, &target, born_host, now_ms)
        } else {
            self.put_one(cmd, &header, &target, born_host, now_ms)
        };
        let (wrote, flush_needed, uniq_key) = match stored {
            Ok(stored) => stored,
            Err((code, remark)) => return Some(refuse(response, code, remark)),
        };
        let Some(first) = wrote.first() else {
            return Some(refuse(
                response,
                ResponseCode::SystemError,
                "nothing stored",
            ));
        };
        let ids: Vec<String> = wrote.iter().map(AppendInfo::msg_id).collect();
        let response_header = SendMessageResponseHeader {
            msg_id: ids.join(","),
            queue_id: target.queue_id,
            queue_offset: i64::try_from(first.queue_offset).unwrap_or(i64::MAX),
            transaction_id: uniq_key,
            batch_uniq_id: None,
            recall_handle: None,
        };
        encode_header(&mut response, &response_header);
        // A batch mixes tags: wake every waiter and let the re-run filter.
        let tags_code = (!batch).then(|| {
            let raw = header.properties.as_deref().unwrap_or_default();
            Properties::parse(raw)
                .get(properties::TAGS)
                .map_or(0, tag_hash_code)
        });
        let max_offset = self
            .store
            .max_offset_in_queue(&target.topic, target.queue_id);
        self.wake_held_pulls(
            &target.topic,
            target.queue_id,
            max_offset,
            tags_code,
            now_ms,
        );
        // SYNC_MASTER: held for slave acks (and the flush), or marked SLAVE_NOT_AVAILABLE.
        let response = self.await_replicas(
            conn,
            response,
            &wrote,
            flush_needed,
            header.properties.as_deref(),
            now_ms,
        )?;
        match flush_needed {
            Some(after_sync) if self.store.flushed_offset() < after_sync => {
                self.await_flush.push_back(AwaitFlush {
                    conn,
                    response,
                    after_sync,
                    deadline_ms: now_ms + self.config.sync_flush_timeout_ms,
                });
                None
            }
            _ => Some(response),
        }
    }

    /// Steps 2–6 of §8: everything checked before the store is touched.
    fn check_send(
        &mut self,
        cmd: &RemotingCommand,
        header: &SendMessageRequestHeader,
        now_ms: u64,
    ) -> Result<SendTarget, (ResponseCode, String)> {
        let topic = header.topic.as_str();
        if let Err(e) = validate_topic(topic) {
            return Err((ResponseCode::InvalidParameter, e.to_string()));
        }
        if is_not_allowed_send_topic(topic) {
            return Err((
                ResponseCode::NoPermission,
                format!("Sending message to topic[{topic}] is forbidden."),
            ));
        }
        if !PermName::is_writeable(self.config.broker_permission)
            && self.topics.is_order_topic(topic)
        {
            return Err((
                ResponseCode::NoPermission,
                format!(
                    "the broker[{}] sending message is forbidden",
                    self.config.broker_ip1
                ),
            ));
        }
        let config = self.topic_for_send(header, now_ms)?;
        let queue_nums = config.write_queue_nums.max(config.read_queue_nums);
        if header.queue_id >= queue_nums {
            return Err((
                ResponseCode::InvalidParameter,
                format!(
                    "request queueId[{}] is illegal, topic:[{topic}] topicConfig.writeQueueNums:[{}] topicConfig.readQueueNums:[{}]",
                    header.queue_id, config.write_queue_nums, config.read_queue_nums
                ),
            ));
        }
        let queue_id = if header.queue_id < 0 {
            if config.write_queue_nums <= 0 {
                return Err((
                    ResponseCode::InvalidParameter,
                    format!("topic[{topic}] has no writable queue"),
                ));
            }
            self.rng.below(config.write_queue_nums)
        } else {
            header.queue_id
        };
        let target = SendTarget {
            topic: topic.to_string(),
            queue_id,
            config,
            to_dlq: false,
        };
        if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            return self.retry_or_dlq(cmd, header, target, now_ms);
        }
        Ok(target)
    }

    /// Step 4: the topic's config, auto-created from `defaultTopic` (or as a retry topic).
    fn topic_for_send(
        &mut self,
        header: &SendMessageRequestHeader,
        now_ms: u64,
    ) -> Result<TopicConfig, (ResponseCode, String)> {
        let topic = header.topic.as_str();
        if let Some(config) = self.topics.select(topic) {
            return Ok(config.clone());
        }
        if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            let rw = PermName::PERM_READ | PermName::PERM_WRITE;
            return Ok(self
                .topics
                .create_in_send_back(topic, 1, rw, false, 0, now_ms));
        }
        self.topics
            .create_in_send(
                topic,
                &header.default_topic,
                header.default_topic_queue_nums,
                0,
                now_ms,
            )
            .map_err(|e| {
                tracing::info!(topic, error = %e, "send to a topic that does not exist");
                (
                    ResponseCode::TopicNotExist,
                    format!("topic[{topic}] not exist, apply first please!"),
                )
            })
    }

    /// Step 6: sends to `%RETRY%<group>` go to the group's DLQ once reconsumed too often, or
    /// while the group holds queue locks (an orderly consumer giving up).
    fn retry_or_dlq(
        &mut self,
        cmd: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: SendTarget,
        now_ms: u64,
    ) -> Result<SendTarget, (ResponseCode, String)> {
        let group = target
            .topic
            .strip_prefix(RETRY_GROUP_TOPIC_PREFIX)
            .unwrap_or_default()
            .to_string();
        let Some(group_config) = self.groups.find_or_create(&group, now_ms) else {
            return Err((
                ResponseCode::SubscriptionGroupNotExist,
                format!("subscription group not exist, {group}"),
            ));
        };
        let max_reconsume = match header.max_reconsume_times {
            Some(max) if cmd.version >= VERSION_WITH_MAX_RECONSUME_TIMES => max,
            _ if group_config.retry_max_times > 0 => group_config.retry_max_times,
            _ => MAX_RECONSUME_TIMES_DEFAULT,
        };
        let reconsume = header.reconsume_times.unwrap_or(0);
        let locked = !self.locks.is_all_expired(&group, now_ms);
        if reconsume <= max_reconsume && !locked {
            return Ok(target);
        }
        let dlq = dlq_topic(&group);
        let rw = PermName::PERM_READ | PermName::PERM_WRITE;
        let config =
            self.topics
                .create_in_send_back(&dlq, DLQ_NUMS_PER_GROUP, rw, false, 0, now_ms);
        tracing::info!(
            group,
            reconsume,
            max_reconsume,
            locked,
            "retry message sent to DLQ"
        );
        Ok(SendTarget {
            topic: dlq,
            queue_id: 0,
            config,
            to_dlq: true,
        })
    }

    /// Steps 7–8 for one message: sys flag and properties as the broker stores them.
    fn prepare_properties(&mut self, raw: &str, target: &SendTarget, now_ms: u64) -> Properties {
        let mut props = Properties::parse(raw);
        props.remove(properties::POP_CK);
        if props.get(properties::UNIQ_KEY).is_none() {
            let key = self
                .uniq_keys
                .next(i64::try_from(now_ms).unwrap_or(i64::MAX));
            props.insert(properties::UNIQ_KEY, key);
        }
        props.insert(properties::CLUSTER, self.config.broker_cluster_name.clone());
        if target.to_dlq {
            props.insert(properties::DELAY, "-1");
        }
        props
    }

    fn sys_flag(&self, header: &SendMessageRequestHeader, target: &SendTarget) -> i32 {
        if target.config.topic_filter_type == TopicFilterType::MultiTag {
            header.sys_flag | MULTI_TAGS_FLAG
        } else {
            header.sys_flag
        }
    }

    /// A single message: builds the record and puts it.
    fn put_one(
        &mut self,
        cmd: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: &SendTarget,
        born_host: core::net::SocketAddr,
        now_ms: u64,
    ) -> Result<Stored, (ResponseCode, String)> {
        let raw = header.properties.as_deref().unwrap_or_default();
        let props = self.prepare_properties(raw, target, now_ms);
        let prepared = super::transaction::is_prepared(&props, header.reconsume_times.unwrap_or(0));
        if prepared && self.config.reject_transaction_message {
            return Err((
                ResponseCode::NoPermission,
                format!(
                    "the broker[{}] sending transaction message is forbidden",
                    self.config.broker_ip1
                ),
            ));
        }
        let uniq_key = props.get(properties::UNIQ_KEY).map(str::to_owned);
        let mut record = MessageRecord {
            queue_id: target.queue_id,
            flag: header.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: self.sys_flag(header, target),
            born_timestamp: header.born_timestamp,
            born_host,
            store_timestamp: 0,
            store_host: self.config.store_host(),
            reconsume_times: header.reconsume_times.unwrap_or(0),
            prepared_transaction_offset: 0,
            body: cmd.body.clone(),
            topic: Bytes::from(target.topic.clone().into_bytes()),
            properties: Bytes::from(props.encode().into_bytes()),
        };
        if !prepared {
            self.redirect_timer(&mut record, now_ms)?;
        }
        let put = if prepared {
            // Stored as a half message in RMQ_SYS_TRANS_HALF_TOPIC (`transaction/`).
            self.put_half(record, now_ms)
        } else {
            self.put_message(&mut record, now_ms)
        };
        match put.wrote {
            Some(wrote) if put.status.is_stored() => Ok((vec![wrote], put.flush_needed, uniq_key)),
            _ => Err(put_refusal(put.status, put.refusal.as_ref())),
        }
    }

    /// A batch (§8.2): each entry becomes a record with its own properties, stored together.
    fn put_batch(
        &mut self,
        cmd: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: &SendTarget,
        born_host: core::net::SocketAddr,
        now_ms: u64,
    ) -> Result<Stored, (ResponseCode, String)> {
        if target.topic.len() > usize::from(i8::MAX.unsigned_abs()) {
            return Err((
                ResponseCode::MessageIllegal,
                format!("message topic length too long {}", target.topic.len()),
            ));
        }
        if target.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            return Err((
                ResponseCode::MessageIllegal,
                "batch request does not support retry group".to_string(),
            ));
        }
        let entries = decode_batch(&cmd.body)
            .map_err(|e| (ResponseCode::MessageIllegal, format!("bad batch body: {e}")))?;
        let sys_flag = self.sys_flag(header, target);
        // The batch-level properties (WAIT, for one) apply to every entry unless it says
        // otherwise.
        let outer = Properties::parse(header.properties.as_deref().unwrap_or_default());
        // Java's CommitLog.asyncPutMessages: a batch cannot be delayed.
        if outer
            .get(properties::DELAY)
            .and_then(|d| d.trim().parse::<i64>().ok())
            .is_some_and(|level| level > 0)
        {
            return Err(put_refusal(PutMessageStatus::MessageIllegal, None));
        }
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let text = String::from_utf8_lossy(&entry.properties).into_owned();
            let mut props = self.prepare_properties(&text, target, now_ms);
            for (key, value) in outer.iter() {
                if props.get(key).is_none() {
                    props.insert(key, value);
                }
            }
            records.push(MessageRecord {
                queue_id: target.queue_id,
                flag: entry.flag,
                queue_offset: 0,
                physical_offset: 0,
                sys_flag,
                born_timestamp: header.born_timestamp,
                born_host,
                store_timestamp: 0,
                store_host: self.config.store_host(),
                reconsume_times: header.reconsume_times.unwrap_or(0),
                prepared_transaction_offset: 0,
                body: entry.body,
                topic: Bytes::from(target.topic.clone().into_bytes()),
                properties: Bytes::from(props.encode().into_bytes()),
            });
        }
        let put = self.store.put_batch(&records, now_ms);
        if !put.status.is_stored() || put.wrote.is_empty() {
            return Err(put_refusal(put.status, put.refusal.as_ref()));
        }
        Ok((put.wrote, put.flush_needed, None))
    }
}

/// What a put stored: where each record went, the offset to await under SYNC_FLUSH, and the
/// UNIQ_KEY reported as `transactionId`.
type Stored = (Vec<AppendInfo>, Option<u64>, Option<String>);

/// The response code and remark Java gives each refusing put status (§8 step 11).
fn put_refusal(status: PutMessageStatus, why: Option<&NotWritable>) -> (ResponseCode, String) {
    match status {
        PutMessageStatus::ServiceNotAvailable => (
            ResponseCode::ServiceNotAvailable,
            match why {
                Some(why) => format!("service not available now: {why}"),
                None => "service not available now.".to_string(),
            },
        ),
        PutMessageStatus::CreateMappedFileFailed => (
            ResponseCode::SystemError,
            "create mapped file failed, server is busy or broken.".to_string(),
        ),
        PutMessageStatus::MessageIllegal | PutMessageStatus::PropertiesSizeExceeded => (
            ResponseCode::MessageIllegal,
            "the message is illegal, maybe msg body or properties length not matched. msg body length limit 4M, msg properties length limit 32k.".to_string(),
        ),
        PutMessageStatus::OsPageCacheBusy => (
            ResponseCode::SystemBusy,
            "[PC_SYNCHRONIZED]broker busy, start flow control for a while".to_string(),
        ),
        other => (ResponseCode::SystemError, other.name().to_string()),
    }
}

/// Turns the prepared send response into an error response, keeping `MSG_REGION` and
/// `TRACE_ON` (Java clients read them from every send response).
fn refuse(
    mut response: RemotingCommand,
    code: ResponseCode,
    remark: impl Into<String>,
) -> RemotingCommand {
    response.code = code.value();
    response.remark = Some(remark.into());
    response
}
