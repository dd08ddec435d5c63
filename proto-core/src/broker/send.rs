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

use bytes::{Bytes, BytesMut};

use core::net::SocketAddr;
use std::borrow::Cow;
use store_core::format::batch::decode_batch;

use store_core::format::msg_id::push_offset_msg_id;
use store_core::format::properties::{self, find_properties, push_pair, Properties, PropertyPairs};
use store_core::format::record::MessageRecord;
use store_core::format::sys_flag::MULTI_TAGS_FLAG;
use store_core::format::tag::tag_hash_code;
use store_core::status::{AppendInfo, NotWritable, PutMessageStatus};
use store_core::storage::Storage;

use super::topic_config::{
    dlq_topic, is_not_allowed_send_topic, validate_topic, DLQ_NUMS_PER_GROUP,
    RETRY_GROUP_TOPIC_PREFIX,
};
use super::{AwaitFlush, Broker, BrokerConfig};
use crate::body::{PermName, TopicConfig, TopicFilterType};
use crate::header::{
    decode_send_header_into, encode_header, SendMessageRequestHeader, SendMessageResponseHeader,
    MSG_REGION, TRACE_ON,
};
use crate::role::ConnId;
use crate::{RemotingCommand, RequestCode, ResponseCode};

/// MQVersion V3_4_9: senders from this version on carry `maxReconsumeTimes` in the header.
const VERSION_WITH_MAX_RECONSUME_TIMES: i32 = 121;
/// Java's default `retryMaxTimes` when neither header nor group says otherwise.
const MAX_RECONSUME_TIMES_DEFAULT: i32 = 16;

/// A send that passed the checks: where it goes.
struct SendTarget<'h> {
    /// The header's topic, or the group's DLQ.
    topic: Cow<'h, str>,
    queue_id: i32,
    /// The topic config's filter type (MULTI_TAG sets a sys flag bit).
    filter_type: TopicFilterType,
    /// Redirected to the group's DLQ: `DELAY=-1` is written into the properties.
    to_dlq: bool,
}

/// What a send needs of its topic's config.
struct TopicQueues {
    write_queue_nums: i32,
    read_queue_nums: i32,
    filter_type: TopicFilterType,
}

impl TopicQueues {
    fn of(config: &TopicConfig) -> TopicQueues {
        TopicQueues {
            write_queue_nums: config.write_queue_nums,
            read_queue_nums: config.read_queue_nums,
            filter_type: config.topic_filter_type,
        }
    }
}

/// What one send leaves to the next, so a send allocates no header strings, response ids or
/// topic name: the request header is decoded into `header` and the response header built in
/// `response`, reusing their strings' buffers.
#[derive(Debug)]
pub(super) struct SendScratch {
    header: SendMessageRequestHeader,
    response: SendMessageResponseHeader,
    /// A single message's stored properties, built here then copied into `props_out`.
    props: Vec<u8>,
    /// Its buffer becomes the record's properties (`split().freeze()`) and is reclaimed by the
    /// next send once the store has let go of that record.
    props_out: BytesMut,
    /// The last topic stored, shared by its records (a reference count per send, not a copy).
    topic: Bytes,
    /// `BrokerConfig::store_host` and the `brokerIP1` and port it was made from: parsing the
    /// address cost ~200 instructions a send.
    store_host: Option<(String, u16, SocketAddr)>,
}

impl Default for SendScratch {
    fn default() -> SendScratch {
        SendScratch {
            header: SendMessageRequestHeader::default(),
            response: SendMessageResponseHeader {
                msg_id: String::new(),
                queue_id: 0,
                queue_offset: 0,
                transaction_id: None,
                batch_uniq_id: None,
                recall_handle: None,
            },
            props: Vec::new(),
            props_out: BytesMut::new(),
            topic: Bytes::new(),
            store_host: None,
        }
    }
}

impl SendScratch {
    /// `config.store_host()`, computed again only when the address or port changed.
    fn store_host(&mut self, config: &BrokerConfig) -> SocketAddr {
        match &self.store_host {
            Some((ip, port, host)) if *ip == config.broker_ip1 && *port == config.listen_port => {
                *host
            }
            _ => {
                let host = config.store_host();
                self.store_host = Some((config.broker_ip1.clone(), config.listen_port, host));
                host
            }
        }
    }
}

impl<S: Storage + Clone> Broker<S> {
    /// Answers a send; `None` while a SYNC_FLUSH response is held. The response takes over
    /// `cmd`'s `extFields` buffers once the header is read from them.
    pub(super) fn handle_send(
        &mut self,
        conn: ConnId,
        cmd: &mut RemotingCommand,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let mut scratch = std::mem::take(&mut self.send_scratch);
        let answer = self.send_with(conn, cmd, &mut scratch, now_ms);
        self.send_scratch = scratch;
        answer
    }

    fn send_with(
        &mut self,
        conn: ConnId,
        cmd: &mut RemotingCommand,
        scratch: &mut SendScratch,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let decoded = decode_send_header_into(cmd, &mut scratch.header);
        let mut response = RemotingCommand::response_to(cmd, ResponseCode::Success.value(), None);
        // Everything the request's map held is in `scratch.header` now.
        if let Some(mut fields) = cmd.ext_fields.take() {
            fields.clear();
            response.ext_fields = Some(fields);
        }
        let fields = response.ext_fields_mut();
        fields.insert(MSG_REGION, &self.config.region_id);
        fields.insert(
            TRACE_ON,
            if self.config.trace_on {
                "true"
            } else {
                "false"
            },
        );
        if let Err(e) = decoded {
            return Some(refuse(response, ResponseCode::SystemError, e.to_string()));
        }
        let hosts = Hosts {
            store: scratch.store_host(&self.config),
            born: self.conns.get(&conn).map(|c| c.remote),
        };
        let header = &scratch.header;
        let target = match self.check_send(cmd, header, now_ms) {
            Ok(target) => target,
            Err((code, remark)) => return Some(refuse(response, code, remark)),
        };
        if let Err((code, remark)) = self.check_in_sync_replicas(header.properties.as_deref()) {
            return Some(refuse(response, code, remark));
        }
        let batch = RequestCode::from_value(cmd.code) == RequestCode::SendBatchMessage
            || header.batch == Some(true);
        if scratch.topic != target.topic.as_bytes() {
            scratch.topic = Bytes::copy_from_slice(target.topic.as_bytes());
        }
        let topic = scratch.topic.clone();
        let stored = if batch {
            self.put_batch(cmd, header, &target, topic, &hosts, now_ms)
        } else {
            let bufs = PropsBufs {
                props: &mut scratch.props,
                out: &mut scratch.props_out,
            };
            self.put_one(cmd, header, &target, topic, bufs, &hosts, now_ms)
        };
        let Stored {
            wrote,
            flush_needed,
            uniq_key,
            tags_code,
        } = match stored {
            Ok(stored) => stored,
            Err((code, remark)) => return Some(refuse(response, code, remark)),
        };
        let wrote = wrote.as_slice();
        let Some(first) = wrote.first() else {
            return Some(refuse(
                response,
                ResponseCode::SystemError,
                "nothing stored",
            ));
        };
        let response_header = &mut scratch.response;
        push_msg_ids(&mut response_header.msg_id, wrote);
        response_header.queue_id = target.queue_id;
        response_header.queue_offset = i64::try_from(first.queue_offset).unwrap_or(i64::MAX);
        // The rewrite wrote UTF-8 (checked input, or the map's own encoding).
        match uniq_key.as_deref().map(core::str::from_utf8) {
            Some(Ok(key)) => {
                let id = response_header
                    .transaction_id
                    .get_or_insert_with(String::new);
                id.clear();
                id.push_str(key);
            }
            _ => response_header.transaction_id = None,
        }
        encode_header(&mut response, &*response_header);
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
            wrote,
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
    fn check_send<'h>(
        &mut self,
        cmd: &RemotingCommand,
        header: &'h SendMessageRequestHeader,
        now_ms: u64,
    ) -> Result<SendTarget<'h>, (ResponseCode, String)> {
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
        let TopicQueues {
            write_queue_nums,
            read_queue_nums,
            filter_type,
        } = self.topic_for_send(header, now_ms)?;
        let queue_nums = write_queue_nums.max(read_queue_nums);
        if header.queue_id >= queue_nums {
            return Err((
                ResponseCode::InvalidParameter,
                format!(
                    "request queueId[{}] is illegal, topic:[{topic}] topicConfig.writeQueueNums:[{}] topicConfig.readQueueNums:[{}]",
                    header.queue_id, write_queue_nums, read_queue_nums
                ),
            ));
        }
        let queue_id = if header.queue_id < 0 {
            if write_queue_nums <= 0 {
                return Err((
                    ResponseCode::InvalidParameter,
                    format!("topic[{topic}] has no writable queue"),
                ));
            }
            self.rng.below(write_queue_nums)
        } else {
            header.queue_id
        };
        let target = SendTarget {
            topic: Cow::Borrowed(topic),
            queue_id,
            filter_type,
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
    ) -> Result<TopicQueues, (ResponseCode, String)> {
        let topic = header.topic.as_str();
        // One look-up and no copy of the config on the common path: only what the send needs
        // is returned.
        if let Some(config) = self.topics.select(topic) {
            return Ok(TopicQueues::of(config));
        }
        if topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
            let rw = PermName::PERM_READ | PermName::PERM_WRITE;
            let config = self
                .topics
                .create_in_send_back(topic, 1, rw, false, 0, now_ms);
            return Ok(TopicQueues::of(&config));
        }
        self.topics
            .create_in_send(
                topic,
                &header.default_topic,
                header.default_topic_queue_nums,
                0,
                now_ms,
            )
            .map(|config| TopicQueues::of(&config))
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
    fn retry_or_dlq<'h>(
        &mut self,
        cmd: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: SendTarget<'h>,
        now_ms: u64,
    ) -> Result<SendTarget<'h>, (ResponseCode, String)> {
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
            topic: Cow::Owned(dlq),
            queue_id: 0,
            filter_type: config.topic_filter_type,
            to_dlq: true,
        })
    }

    /// Steps 7–8 for one message: its properties as the broker stores them, encoded and
    /// appended to `out`. `outer` are a batch's own properties, added where an entry lacks
    /// them.
    fn prepare_properties(
        &mut self,
        raw: &[u8],
        outer: Option<&Properties>,
        target: &SendTarget,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) {
        let edits = Edits {
            cluster: &self.config.broker_cluster_name,
            to_dlq: target.to_dlq,
        };
        let uniq_keys = &mut self.uniq_keys;
        let new_uniq_key = || uniq_keys.next(i64::try_from(now_ms).unwrap_or(i64::MAX));
        // What clients send (valid UTF-8, no key twice) is rewritten in one pass; anything
        // else goes through the map, which is the definition the pass must match.
        let scanned = core::str::from_utf8(raw)
            .ok()
            .and_then(|_| PropertyPairs::scan(raw));
        match scanned {
            Some(pairs) => rewrite_scanned(&pairs, outer, &edits, new_uniq_key, out),
            None => rewrite_parsed(raw, outer, &edits, new_uniq_key, out),
        }
    }

    fn sys_flag(&self, header: &SendMessageRequestHeader, target: &SendTarget) -> i32 {
        if target.filter_type == TopicFilterType::MultiTag {
            header.sys_flag | MULTI_TAGS_FLAG
        } else {
            header.sys_flag
        }
    }

    /// A single message: builds the record and puts it.
    #[allow(clippy::too_many_arguments)]
    fn put_one(
        &mut self,
        cmd: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: &SendTarget,
        topic: Bytes,
        bufs: PropsBufs<'_>,
        hosts: &Hosts,
        now_ms: u64,
    ) -> Result<Stored, (ResponseCode, String)> {
        let raw = header.properties.as_deref().unwrap_or_default();
        bufs.props.clear();
        self.prepare_properties(raw.as_bytes(), None, target, now_ms, bufs.props);
        // Into the reused shared buffer: reclaimed by a later send once this record is gone,
        // where `Bytes::from(Vec)` allocated twice per message.
        if bufs.out.capacity() < bufs.props.len() {
            bufs.out
                .reserve(bufs.props.len().max(PROPERTIES_BUFFER_CHUNK));
        }
        bufs.out.extend_from_slice(bufs.props);
        let props = bufs.out.split().freeze();
        // One pass for every property this path reads; the rare cases parse the map.
        let [uniq_key, tran_msg, tags, deliver_ms, delay_sec, delay_ms] = find_properties(
            &props,
            [
                properties::UNIQ_KEY,
                properties::TRAN_MSG,
                properties::TAGS,
                properties::TIMER_DELIVER_MS,
                properties::TIMER_DELAY_SEC,
                properties::TIMER_DELAY_MS,
            ],
        );
        // Without TRAN_MSG a message is never prepared.
        let prepared = tran_msg.is_some()
            && super::transaction::is_prepared(
                &Properties::parse_bytes(&props),
                header.reconsume_times.unwrap_or(0),
            );
        if prepared && self.config.reject_transaction_message {
            return Err((
                ResponseCode::NoPermission,
                format!(
                    "the broker[{}] sending transaction message is forbidden",
                    self.config.broker_ip1
                ),
            ));
        }
        let uniq_key = uniq_key.map(|v| props.slice_ref(v));
        let tags_code = tags
            .and_then(|t| core::str::from_utf8(t).ok())
            .map_or(0, tag_hash_code);
        let has_timer = deliver_ms.or(delay_sec).or(delay_ms).is_some();
        let mut record = MessageRecord {
            queue_id: target.queue_id,
            flag: header.flag,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: self.sys_flag(header, target),
            born_timestamp: header.born_timestamp,
            born_host: hosts.born(),
            store_timestamp: 0,
            store_host: hosts.store,
            reconsume_times: header.reconsume_times.unwrap_or(0),
            prepared_transaction_offset: 0,
            body: cmd.body.clone(),
            topic,
            properties: props,
        };
        // `redirect_timer` changes nothing for a message without a timer property.
        if !prepared && has_timer {
            self.redirect_timer(&mut record, now_ms)?;
        }
        let put = if prepared {
            // Stored as a half message in RMQ_SYS_TRANS_HALF_TOPIC (`transaction/`).
            self.put_half(record, now_ms)
        } else {
            self.put_message(&mut record, now_ms)
        };
        match put.wrote {
            Some(wrote) if put.status.is_stored() => Ok(Stored {
                wrote: Wrote::One(wrote),
                flush_needed: put.flush_needed,
                uniq_key,
                tags_code: Some(tags_code),
            }),
            _ => Err(put_refusal(put.status, put.refusal.as_ref())),
        }
    }

    /// A batch (§8.2): each entry becomes a record with its own properties, stored together.
    fn put_batch(
        &mut self,
        cmd: &RemotingCommand,
        header: &SendMessageRequestHeader,
        target: &SendTarget,
        topic: Bytes,
        hosts: &Hosts,
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
        let born_host = hosts.born();
        // Every entry's stored properties go into one buffer, each record a slice of it: one
        // allocation per batch instead of one per message.
        let room: usize = entries
            .iter()
            .map(|e| e.properties.len() + PROPERTIES_ADDED_MAX)
            .sum();
        let mut all = Vec::with_capacity(room + entries.len() * outer.encoded_len());
        let mut ends = Vec::with_capacity(entries.len());
        for entry in &entries {
            self.prepare_properties(&entry.properties, Some(&outer), target, now_ms, &mut all);
            ends.push(all.len());
        }
        let all = Bytes::from(all);
        let mut records = Vec::with_capacity(entries.len());
        let mut start = 0;
        for (entry, end) in entries.into_iter().zip(ends) {
            let props = all.slice(start..end);
            start = end;
            records.push(MessageRecord {
                queue_id: target.queue_id,
                flag: entry.flag,
                queue_offset: 0,
                physical_offset: 0,
                sys_flag,
                born_timestamp: header.born_timestamp,
                born_host,
                store_timestamp: 0,
                store_host: hosts.store,
                reconsume_times: header.reconsume_times.unwrap_or(0),
                prepared_transaction_offset: 0,
                body: entry.body,
                topic: topic.clone(),
                properties: props,
            });
        }
        let put = self.store.put_batch(&records, now_ms);
        if !put.status.is_stored() || put.wrote.is_empty() {
            return Err(put_refusal(put.status, put.refusal.as_ref()));
        }
        // A batch mixes tags: no tag code, so every waiter wakes and its filter re-runs.
        Ok(Stored {
            wrote: Wrote::Batch(put.wrote),
            flush_needed: put.flush_needed,
            uniq_key: None,
            tags_code: None,
        })
    }
}

/// Room to reserve for what the broker adds to a message's properties: UNIQ_KEY (up to 40
/// hex digits), CLUSTER (a name) and DELAY pairs. Only a capacity hint.
const PROPERTIES_ADDED_MAX: usize = 128;

/// The buffers `put_one` builds a message's properties in (see [`SendScratch`]).
struct PropsBufs<'a> {
    props: &'a mut Vec<u8>,
    out: &'a mut BytesMut,
}

/// Least room `SendScratch::props_out` takes when it runs out: one reclaim or allocation per
/// few dozen messages rather than per message.
const PROPERTIES_BUFFER_CHUNK: usize = 8 * 1024;

/// What a put stored.
struct Stored {
    /// Where each record went.
    wrote: Wrote,
    /// The offset to await under SYNC_FLUSH.
    flush_needed: Option<u64>,
    /// The UNIQ_KEY reported as `transactionId`: a slice of the stored properties.
    uniq_key: Option<Bytes>,
    /// The tag code held pulls are woken with; `None` wakes them all.
    tags_code: Option<i64>,
}

/// Where a put's records went: one without a vector, as most sends store one message.
enum Wrote {
    One(AppendInfo),
    Batch(Vec<AppendInfo>),
}

impl Wrote {
    fn as_slice(&self) -> &[AppendInfo] {
        match self {
            Wrote::One(one) => core::slice::from_ref(one),
            Wrote::Batch(all) => all,
        }
    }
}

/// The broker's own address, and the sender's when its connection is known.
struct Hosts {
    store: SocketAddr,
    born: Option<SocketAddr>,
}

impl Hosts {
    /// The born host recorded: the sender's address, else the broker's own.
    fn born(&self) -> SocketAddr {
        self.born.unwrap_or(self.store)
    }
}

/// The `msgId` of a send response, written over `ids`: every record's offset message id,
/// comma-separated.
fn push_msg_ids(ids: &mut String, wrote: &[AppendInfo]) {
    ids.clear();
    ids.reserve(wrote.len() * 57);
    for (i, info) in wrote.iter().enumerate() {
        if i > 0 {
            ids.push(',');
        }
        let phys = i64::try_from(info.phys_offset).unwrap_or(i64::MAX);
        push_offset_msg_id(ids, info.store_host, phys);
    }
}

/// What the broker changes in a sent message's properties (§8 steps 7–8): `POP_CK` goes,
/// `UNIQ_KEY` is added if missing, `CLUSTER` is set, and `DELAY=-1` on the way to a DLQ.
struct Edits<'a> {
    cluster: &'a str,
    to_dlq: bool,
}

/// The stored properties by the map: parse, edit, add the batch's `outer` properties an entry
/// lacks, encode. The definition [`rewrite_scanned`] follows byte for byte.
fn rewrite_parsed(
    raw: &[u8],
    outer: Option<&Properties>,
    edits: &Edits<'_>,
    new_uniq_key: impl FnOnce() -> String,
    out: &mut Vec<u8>,
) {
    let mut props = Properties::parse_bytes(raw);
    props.remove(properties::POP_CK);
    if props.get(properties::UNIQ_KEY).is_none() {
        props.insert(properties::UNIQ_KEY, new_uniq_key());
    }
    props.insert(properties::CLUSTER, edits.cluster);
    if edits.to_dlq {
        props.insert(properties::DELAY, "-1");
    }
    for (key, value) in outer.iter().flat_map(|outer| outer.iter()) {
        if props.get(key).is_none() {
            props.insert(key, value);
        }
    }
    out.extend_from_slice(props.encode().as_bytes());
}

/// [`rewrite_parsed`] in one pass over scanned pairs (no key twice, so the map's in-place
/// replacements are the pairs' own positions), without building the map.
fn rewrite_scanned(
    pairs: &PropertyPairs<'_>,
    outer: Option<&Properties>,
    edits: &Edits<'_>,
    new_uniq_key: impl FnOnce() -> String,
    out: &mut Vec<u8>,
) {
    let (uniq, cluster, delay) = (
        properties::UNIQ_KEY.as_bytes(),
        properties::CLUSTER.as_bytes(),
        properties::DELAY.as_bytes(),
    );
    let (mut has_uniq, mut has_cluster, mut has_delay) = (false, false, false);
    for (key, value) in pairs.iter() {
        if key == properties::POP_CK.as_bytes() {
            continue;
        }
        let value = if key == cluster {
            has_cluster = true;
            edits.cluster.as_bytes()
        } else if key == delay && edits.to_dlq {
            has_delay = true;
            b"-1"
        } else {
            has_uniq |= key == uniq;
            value
        };
        push_pair(out, key, value);
    }
    if !has_uniq {
        push_pair(out, uniq, new_uniq_key().as_bytes());
    }
    if !has_cluster {
        push_pair(out, cluster, edits.cluster.as_bytes());
    }
    if edits.to_dlq && !has_delay {
        push_pair(out, delay, b"-1");
    }
    for (key, value) in outer.iter().flat_map(|outer| outer.iter()) {
        let key = key.as_bytes();
        let present = if key == properties::POP_CK.as_bytes() {
            false
        } else {
            key == uniq || key == cluster || (key == delay && edits.to_dlq) || pairs.contains(key)
        };
        if !present {
            push_pair(out, key, value.as_bytes());
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Both rewrites of `raw`; the scanned one only where the scan accepts the input.
    fn both(raw: &[u8], outer: Option<&Properties>, to_dlq: bool) -> (Vec<u8>, Option<Vec<u8>>) {
        let edits = Edits {
            cluster: "DefaultCluster",
            to_dlq,
        };
        let uniq = || "NEWUNIQ".to_string();
        // Both append: what was in the buffer before stays.
        let mut parsed = b"before".to_vec();
        rewrite_parsed(raw, outer, &edits, uniq, &mut parsed);
        let scanned = core::str::from_utf8(raw)
            .ok()
            .and_then(|_| PropertyPairs::scan(raw))
            .map(|pairs| {
                let mut out = b"before".to_vec();
                rewrite_scanned(&pairs, outer, &edits, uniq, &mut out);
                out
            });
        (parsed, scanned)
    }

    #[test]
    fn a_client_message_gets_cluster_and_keeps_its_order() {
        let raw = "TAGS\u{1}A\u{2}POP_CK\u{1}x\u{2}UNIQ_KEY\u{1}U1\u{2}WAIT\u{1}true\u{2}";
        let (parsed, scanned) = both(raw.as_bytes(), None, false);
        let expected = "beforeTAGS\u{1}A\u{2}UNIQ_KEY\u{1}U1\u{2}WAIT\u{1}true\u{2}\
                        CLUSTER\u{1}DefaultCluster\u{2}";
        assert_eq!(String::from_utf8(parsed).unwrap(), expected);
        assert_eq!(String::from_utf8(scanned.unwrap()).unwrap(), expected);
    }

    #[test]
    fn a_dlq_message_without_uniq_key_gets_one_then_cluster_then_delay() {
        let raw = "CLUSTER\u{1}old\u{2}KEYS\u{1}k\u{2}";
        let outer: Properties = [("WAIT", "false"), ("KEYS", "outer")].into_iter().collect();
        let (parsed, scanned) = both(raw.as_bytes(), Some(&outer), true);
        let expected =
            "beforeCLUSTER\u{1}DefaultCluster\u{2}KEYS\u{1}k\u{2}UNIQ_KEY\u{1}NEWUNIQ\u{2}\
                        DELAY\u{1}-1\u{2}WAIT\u{1}false\u{2}";
        assert_eq!(String::from_utf8(parsed).unwrap(), expected);
        assert_eq!(String::from_utf8(scanned.unwrap()).unwrap(), expected);
    }

    #[test]
    fn repeated_keys_and_bad_utf8_are_left_to_the_map() {
        assert!(both(b"A\x01x\x02A\x01y\x02", None, false).1.is_none());
        assert!(both(b"A\x01\xff\x02", None, false).1.is_none());
    }

    /// The send path reuses one header, one response header and one properties buffer from
    /// send to send, and hands the request's extFields to the response: nothing of one send may
    /// show in the next one's response or record.
    #[test]
    fn consecutive_sends_leave_nothing_behind() {
        use super::super::test_support::{ask_conn1, open_with_client, read_queue, send_message};
        use crate::broker::BrokerConfig;
        use store_core::storage::MemStorage;
        use store_core::store::StoreConfig;

        let config = BrokerConfig {
            store: StoreConfig::compact(1 << 20),
            ..BrokerConfig::default()
        };
        let mut broker = open_with_client(&MemStorage::new(), &config, 1_000);
        let mut opaque = 0;
        let first_props = "UNIQ_KEY\u{1}FIRSTKEY0123456789\u{2}TAGS\u{1}a-long-first-tag\u{2}";
        let first = send_message("First", 0, first_props, Bytes::from_static(b"one"));
        let r1 = ask_conn1(&mut broker, &mut opaque, 1_000, first);
        assert_eq!(r1.ext("transactionId"), Some("FIRSTKEY0123456789"));
        // A header that fails to decode in between: its fields must not leak either.
        let mut broken = send_message("Broken", 0, "", Bytes::from_static(b"x"));
        broken
            .ext_fields_mut()
            .insert("bornTimestamp", "not a number");
        let r2 = ask_conn1(&mut broker, &mut opaque, 1_000, broken);
        assert_eq!(r2.code, ResponseCode::SystemError.value());
        let second = send_message("Second", 1, "KEYS\u{1}k\u{2}", Bytes::from_static(b"two"));
        let r3 = ask_conn1(&mut broker, &mut opaque, 1_000, second);
        assert_eq!(r3.code, ResponseCode::Success.value(), "{:?}", r3.remark);
        let keys: Vec<&str> = r3
            .ext_fields
            .iter()
            .flat_map(|f| f.iter())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            [
                "MSG_REGION",
                "TRACE_ON",
                "msgId",
                "queueId",
                "queueOffset",
                "transactionId"
            ]
        );
        let uniq = r3.ext("transactionId").unwrap_or_default();
        assert_ne!(uniq, "FIRSTKEY0123456789");
        assert_eq!(
            (r3.ext("queueId"), r3.ext("queueOffset")),
            (Some("1"), Some("0"))
        );
        let [one] = &read_queue(&broker, "First", 0)[..] else {
            panic!("one record in First")
        };
        assert_eq!(&one.topic[..], b"First");
        assert_eq!(&one.body[..], b"one");
        assert_eq!(
            &one.properties[..],
            format!("{first_props}CLUSTER\u{1}DefaultCluster\u{2}").as_bytes()
        );
        let [two] = &read_queue(&broker, "Second", 1)[..] else {
            panic!("one record in Second")
        };
        assert_eq!(&two.topic[..], b"Second");
        assert_eq!(
            &two.properties[..],
            format!("KEYS\u{1}k\u{2}UNIQ_KEY\u{1}{uniq}\u{2}CLUSTER\u{1}DefaultCluster\u{2}")
                .as_bytes()
        );
    }

    /// Keys the rewrite treats specially, plus plain ones, with separators in between.
    fn raw_properties() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("POP_CK".to_string()),
            Just("UNIQ_KEY".to_string()),
            Just("CLUSTER".to_string()),
            Just("DELAY".to_string()),
            Just("WAIT".to_string()),
            Just("\u{1}".to_string()),
            Just("\u{2}".to_string()),
            "[a-c]{1,2}",
        ];
        prop::collection::vec(piece, 0..16).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_scanned_rewrite_writes_the_parsed_bytes(
            raw in raw_properties(),
            outer in raw_properties(),
            with_outer: bool,
            to_dlq: bool,
        ) {
            let outer = Properties::parse(&outer);
            let outer = with_outer.then_some(&outer);
            let (parsed, scanned) = both(raw.as_bytes(), outer, to_dlq);
            if let Some(scanned) = scanned {
                prop_assert_eq!(scanned, parsed);
            }
        }
    }
}
