//! The pull path (protocol reference §9): PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361).
//!
//! Checks run in Java's order (§9.2), then the store is read with the subscription's tag filter
//! (hash codes from the consume queue, then the exact tag from the record), the store status is
//! mapped to a response code with the status name as remark (§9.3, §9.4), offsets are
//! committed (§9.6), and a pull that finds nothing new is parked for long polling (§9.5,
//! `pull_hold.rs`).
//!
//! A SQL92 subscription (`crate::filter`, with `enablePropertyFilter` on) passes every
//! consume-queue unit and is evaluated on each record's properties; without the switch it is
//! answered SYSTEM_ERROR as in Java, and an expression that does not compile
//! SUBSCRIPTION_PARSE_FAILED (pull header) or FILTER_DATA_NOT_EXIST (heartbeat).
//!
//! What it leaves out: class filters (answered SYSTEM_ERROR as unsupported), slave
//! reads (`suggestWhichBrokerId` is always 0) and the OFFSET_MOVED_EVENT topic. A pending
//! admin offset reset redirects the queue's next pull (`reset_offset.rs`).

use std::collections::BTreeSet;

use bytes::Bytes;

use store_core::format::properties::{find_property, TAGS};
use store_core::format::record::{decode_with, CrcCheck};
use store_core::format::tag::tag_hash_code;
use store_core::status::GetMessageStatus;
use store_core::storage::Storage;
use store_core::store::{MessageFilter, MAX_PULL_MSG_SIZE};

use super::consumer_manager::SUB_ALL;
use super::pull_hold::HeldPull;
use super::reset_offset::PullAfterReset;
use super::Broker;
use crate::body::{MessageModel, PermName, SubscriptionData};
use crate::filter::{is_tag_type, CompileError, Sql92Filter, EXPRESSION_TYPE_SQL92};
use crate::header::{
    decode_header, encode_header, PullMessageRequestHeader, PullMessageResponseHeader, PullSysFlag,
};
use crate::reply::reply;
use crate::role::{ConnId, Transmit};
use crate::{RemotingCommand, ResponseCode};

/// A TAG subscription as a store filter: `*` takes everything, otherwise the consume-queue tag
/// code must be one of the subscribed tags' hash codes and the record's `TAGS` one of the tags.
///
/// The codes are computed here from the tag strings, never taken from the client: the C++
/// client sends `codeSet: [0]` for any tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PullFilter {
    all: bool,
    codes: BTreeSet<i32>,
    tags: BTreeSet<String>,
    /// A SQL92 subscription's compiled selector, evaluated on each record's properties.
    sql: Option<Sql92Filter>,
}

impl PullFilter {
    /// Java `FilterAPI.buildSubscriptionData`: tags separated by `||`; empty or `*` is all.
    pub fn from_expression(expression: &str) -> PullFilter {
        let tags: BTreeSet<String> = expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        PullFilter::from_tags(expression.trim() == SUB_ALL || tags.is_empty(), tags)
    }

    /// A subscription registered by heartbeat.
    pub fn from_subscription(sub: &SubscriptionData) -> PullFilter {
        if sub.tags_set.is_empty() {
            return PullFilter::from_expression(&sub.sub_string);
        }
        let all = sub.sub_string.trim() == SUB_ALL;
        PullFilter::from_tags(all, sub.tags_set.clone())
    }

    fn from_tags(all: bool, tags: BTreeSet<String>) -> PullFilter {
        // Java keeps `tagsCode.intValue()`: the low 32 bits of the widened hash.
        let codes = tags.iter().map(|t| tag_hash_code(t) as i32).collect();
        PullFilter {
            all,
            codes,
            tags,
            sql: None,
        }
    }

    /// A SQL92 subscription: every tag code passes, the record's properties decide.
    pub fn sql(filter: Sql92Filter) -> PullFilter {
        PullFilter {
            sql: Some(filter),
            ..PullFilter::from_tags(false, BTreeSet::new())
        }
    }

    /// The filter a pull header's own `subscription`/`expressionType` asks for.
    fn from_header(
        expression: &str,
        expression_type: Option<&str>,
    ) -> Result<PullFilter, CompileError> {
        match expression_type {
            Some(kind) if kind == EXPRESSION_TYPE_SQL92 => {
                Ok(PullFilter::sql(crate::filter::compile(kind, expression)?))
            }
            _ => Ok(PullFilter::from_expression(expression)),
        }
    }

    /// Whether a consume-queue tag code may match.
    pub fn matches_code(&self, tags_code: i64) -> bool {
        self.all || self.sql.is_some() || self.codes.contains(&(tags_code as i32))
    }
}

impl MessageFilter for PullFilter {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool {
        self.matches_code(tags_code)
    }

    fn is_matched_by_commit_log(&self, record: &[u8]) -> bool {
        if self.all {
            return true;
        }
        // Only reached after a hash match; a record that does not decode is let through for
        // the client to judge rather than silently skipped.
        let Ok((record, _)) = decode_with(&Bytes::copy_from_slice(record), CrcCheck::Skip) else {
            return true;
        };
        if let Some(sql) = &self.sql {
            return sql.matches_encoded(&record.properties);
        }
        match find_property(&record.properties, TAGS) {
            Some(tag) => self.tags.contains(String::from_utf8_lossy(tag).as_ref()),
            None => false,
        }
    }
}

/// A refused pull: response code, remark and, for NO_PERMISSION, the forbidden type.
type Refusal = (ResponseCode, String, Option<i32>);

impl<S: Storage + Clone> Broker<S> {
    /// Answers a pull; `None` when it is parked, or its answer (a body of several records) is
    /// already queued as [`Transmit::SendParts`].
    pub(super) fn handle_pull(
        &mut self,
        conn: ConnId,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let header: PullMessageRequestHeader = match decode_header(cmd) {
            Ok(header) => header,
            Err(e) => return Some(reply(cmd, ResponseCode::SystemError, e.to_string())),
        };
        let filter = match self.check_pull(cmd, &header, now_ms) {
            Ok(filter) => filter,
            Err((code, remark, forbidden_type)) => {
                let mut response = reply(cmd, code, remark);
                if let Some(forbidden_type) = forbidden_type {
                    response
                        .ext_fields_mut()
                        .insert("forbiddenType", forbidden_type.to_string());
                }
                return Some(response);
            }
        };
        let mut header = header;
        match self.pull_after_reset(cmd, &header) {
            PullAfterReset::Pull => {}
            PullAfterReset::PullWithoutCommit => header.sys_flag &= !PullSysFlag::COMMIT_OFFSET,
            PullAfterReset::Redirect(response) => return Some(response),
        }
        self.execute_pull(conn, cmd, header, filter, true, now_ms)
    }

    /// §9.2 steps 1–7.
    fn check_pull(
        &mut self,
        cmd: &RemotingCommand,
        header: &PullMessageRequestHeader,
        now_ms: u64,
    ) -> Result<PullFilter, Refusal> {
        if !PermName::is_readable(self.config.broker_permission) {
            let remark = format!(
                "the broker[{}] pulling message is forbidden",
                self.config.broker_ip1
            );
            return Err((ResponseCode::NoPermission, remark, Some(1)));
        }
        let group = header.consumer_group.as_str();
        let Some(group_config) = self.groups.find_or_create(group, now_ms) else {
            let remark = format!("subscription group [{group}] does not exist");
            return Err((ResponseCode::SubscriptionGroupNotExist, remark, None));
        };
        if !group_config.consume_enable {
            let remark = format!("subscription group no permission, {group}");
            return Err((ResponseCode::NoPermission, remark, Some(2)));
        }
        let consume_broadcast_enable = group_config.consume_broadcast_enable;
        let topic = header.topic.as_str();
        let Some(topic_config) = self.topics.select(topic) else {
            tracing::debug!(
                topic,
                group,
                code = cmd.code,
                "pull from a topic that does not exist"
            );
            let remark = format!("topic[{topic}] not exist, apply first please!");
            return Err((ResponseCode::TopicNotExist, remark, None));
        };
        if !PermName::is_readable(topic_config.perm) {
            let remark = format!("the topic[{topic}] pulling message is forbidden");
            return Err((ResponseCode::NoPermission, remark, Some(3)));
        }
        if header.queue_id < 0 || header.queue_id >= topic_config.read_queue_nums {
            let remark = format!(
                "queueId[{}] is illegal, topic:[{topic}] topicConfig.readQueueNums:[{}] consumer:[{group}]",
                header.queue_id, topic_config.read_queue_nums
            );
            return Err((ResponseCode::InvalidParameter, remark, None));
        }
        let (filter, expression_type) = if header.sys_flag & PullSysFlag::SUBSCRIPTION != 0 {
            let expression = header.subscription.as_deref().unwrap_or(SUB_ALL);
            let expression_type = header.expression_type.clone();
            let filter =
                PullFilter::from_header(expression, expression_type.as_deref()).map_err(|e| {
                    let remark = format!("parse the consumer's subscription failed: {e}");
                    (ResponseCode::SubscriptionParseFailed, remark, None)
                })?;
            (filter, expression_type)
        } else {
            self.registered_filter(header, consume_broadcast_enable)?
        };
        let served = |t: &str| t == EXPRESSION_TYPE_SQL92 && self.config.enable_property_filter;
        if let Some(kind) = expression_type.filter(|t| !is_tag_type(Some(t)) && !served(t)) {
            let remark =
                format!("The broker does not support consumer to filter message by {kind}");
            return Err((ResponseCode::SystemError, remark, None));
        }
        Ok(filter)
    }

    /// §9.2 step 6 without PullSysFlag::SUBSCRIPTION: the subscription the group's heartbeat sent.
    fn registered_filter(
        &self,
        header: &PullMessageRequestHeader,
        consume_broadcast_enable: bool,
    ) -> Result<(PullFilter, Option<String>), Refusal> {
        let group = header.consumer_group.as_str();
        let Some(info) = self.consumers.group(group) else {
            let remark = format!("the consumer's group info not exist, group: {group}");
            return Err((ResponseCode::SubscriptionNotExist, remark, None));
        };
        if info.message_model == MessageModel::Broadcasting && !consume_broadcast_enable {
            let remark = format!("the consumer group[{group}] can not consume by broadcast way");
            return Err((ResponseCode::NoPermission, remark, Some(4)));
        }
        let Some(sub) = self.consumers.subscription(group, &header.topic) else {
            let remark = format!("the consumer's subscription not exist, group: {group}");
            return Err((ResponseCode::SubscriptionNotExist, remark, None));
        };
        if sub.sub_version < header.sub_version {
            let remark = format!(
                "the consumer's subscription not latest, group: {group} {} < {}",
                sub.sub_version, header.sub_version
            );
            return Err((ResponseCode::SubscriptionNotLatest, remark, None));
        }
        if !is_tag_type(Some(&sub.expression_type)) {
            let Some(data) = self.consumers.filter_data(group, &header.topic) else {
                let remark =
                    "The broker's consumer filter data is not exist!Your expression may be wrong!";
                return Err((ResponseCode::FilterDataNotExist, remark.to_string(), None));
            };
            if data.client_version < header.sub_version {
                let remark = "the consumer's consumer filter data not latest";
                return Err((ResponseCode::FilterDataNotLatest, remark.to_string(), None));
            }
            let filter = PullFilter::sql(data.filter.clone());
            return Ok((filter, Some(sub.expression_type.clone())));
        }
        Ok((
            PullFilter::from_subscription(&sub),
            Some(sub.expression_type.clone()),
        ))
    }

    /// §9.2 step 8: reads the store, answers, commits, or parks (`first` run only). `None` when
    /// parked or when the answer was queued itself (see [`Broker::handle_pull`]).
    fn execute_pull(
        &mut self,
        conn: ConnId,
        cmd: &RemotingCommand,
        header: PullMessageRequestHeader,
        filter: PullFilter,
        first: bool,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let (topic, queue_id) = (header.topic.as_str(), header.queue_id);
        let (status, code, next_begin, min, max, records) = match u64::try_from(header.queue_offset)
        {
            Ok(offset) => {
                let max_count = u32::try_from(header.max_msg_nums).unwrap_or(0).max(1);
                let result = self.store.get_messages(
                    topic,
                    queue_id,
                    offset,
                    max_count,
                    MAX_PULL_MSG_SIZE,
                    &filter,
                );
                let code = pull_code(result.status, offset);
                let records = if code == ResponseCode::Success {
                    result.records
                } else {
                    Vec::new()
                };
                (
                    result.status,
                    code,
                    result.next_begin_offset,
                    result.min_offset,
                    result.max_offset,
                    records,
                )
            }
            // A negative offset is below any queue's minimum.
            Err(_) => {
                let min = self.store.min_offset_in_queue(topic, queue_id);
                let max = self.store.max_offset_in_queue(topic, queue_id);
                (
                    GetMessageStatus::OffsetTooSmall,
                    ResponseCode::PullOffsetMoved,
                    min,
                    min,
                    max,
                    Vec::new(),
                )
            }
        };
        let group = header.consumer_group.as_str();
        // A pull's commitOffset reports progress and only moves the group's offset forward: a
        // member that has just taken a queue over reports the offset it started from, which
        // the previous owner may have passed since (rebalance race). Only an explicit
        // UPDATE_CONSUMER_OFFSET or a reset moves it back. (Found by the consumer_churn
        // simulation.)
        let forward = self
            .offsets
            .query(group, topic, queue_id)
            .is_none_or(|committed| header.commit_offset > committed);
        if first
            && header.sys_flag & PullSysFlag::COMMIT_OFFSET != 0
            && header.commit_offset >= 0
            && forward
        {
            self.offsets
                .commit(group, topic, queue_id, header.commit_offset, now_ms);
        }
        let next_begin = i64::try_from(next_begin).unwrap_or(i64::MAX);
        self.offsets.commit_pull(group, topic, queue_id, next_begin);
        if first
            && code == ResponseCode::PullNotFound
            && header.sys_flag & PullSysFlag::SUSPEND != 0
        {
            let hold_ms = if self.config.long_polling_enable {
                u64::try_from(header.suspend_timeout_millis).unwrap_or(0)
            } else {
                self.config.short_polling_time_ms
            };
            let held = HeldPull {
                conn,
                request: cmd.clone(),
                header: header.clone(),
                filter,
                deadline_ms: now_ms.saturating_add(hold_ms),
            };
            match self.hold.park(held) {
                Ok(()) => return None,
                Err(_) => tracing::warn!(topic, queue_id, "too many held pulls; answering at once"),
            }
        }
        let mut response = reply(cmd, code, status.name());
        let topic_sys_flag = self.topics.select(topic).map(|t| t.topic_sys_flag);
        let group_sys_flag = self.groups.get(group).map(|g| g.group_sys_flag);
        encode_header(
            &mut response,
            &PullMessageResponseHeader {
                suggest_which_broker_id: 0,
                next_begin_offset: next_begin,
                min_offset: i64::try_from(min).unwrap_or(i64::MAX),
                max_offset: i64::try_from(max).unwrap_or(i64::MAX),
                offset_delta: None,
                topic_sys_flag,
                group_sys_flag,
                forbidden_type: None,
            },
        );
        match <[Bytes; 1]>::try_from(records) {
            Ok([only]) => response.body = only,
            Err(records) if records.is_empty() => {}
            // Several records go out as they lie in the mapped segments, not copied into one
            // body (pulls are never oneway, but a oneway request gets no answer either way).
            Err(records) => {
                if !cmd.is_oneway() {
                    self.transmits.push_back(Transmit::SendParts {
                        conn,
                        cmd: response,
                        parts: records,
                    });
                }
                return None;
            }
        }
        Some(response)
    }

    /// A message arrived on `topic`/`queue_id`: answers the parked pulls it satisfies.
    pub(super) fn wake_held_pulls(
        &mut self,
        topic: &str,
        queue_id: i32,
        max_offset: u64,
        tags_code: Option<i64>,
        now_ms: u64,
    ) {
        for held in self.hold.take_woken(topic, queue_id, max_offset, tags_code) {
            self.answer_held(held, now_ms);
        }
    }

    /// The store's confirm offset moved (controller mode): messages already stored became
    /// readable without a put, so the parked pulls of every queue are checked against the
    /// queue's visible end. Without this a pull parked on an unconfirmed message waits for the
    /// next put or its hold time.
    pub(super) fn wake_held_pulls_after_confirm(&mut self, now_ms: u64) {
        for (topic, queue_id) in self.hold.parked_queues() {
            let max_offset = self.store.max_offset_in_queue(&topic, queue_id);
            self.wake_held_pulls(&topic, queue_id, max_offset, None, now_ms);
        }
    }

    /// Answers the parked pulls whose hold time is over at `deadline_ms` (all of them with
    /// `u64::MAX`, at shutdown).
    pub(super) fn expire_held_pulls(&mut self, deadline_ms: u64, now_ms: u64) {
        for held in self.hold.take_expired(deadline_ms) {
            self.answer_held(held, now_ms);
        }
    }

    fn answer_held(&mut self, held: HeldPull, now_ms: u64) {
        let HeldPull {
            conn,
            request,
            header,
            filter,
            ..
        } = held;
        if let Some(response) = self.execute_pull(conn, &request, header, filter, false, now_ms) {
            self.respond(conn, request.is_oneway(), response);
        }
    }
}

/// Java's mapping of store statuses to pull response codes (§9.3).
fn pull_code(status: GetMessageStatus, offset: u64) -> ResponseCode {
    match status {
        GetMessageStatus::Found => ResponseCode::Success,
        GetMessageStatus::NoMatchedMessage | GetMessageStatus::MessageWasRemoving => {
            ResponseCode::PullRetryImmediately
        }
        GetMessageStatus::NoMatchedLogicQueue | GetMessageStatus::NoMessageInQueue => {
            if offset == 0 {
                ResponseCode::PullNotFound
            } else {
                ResponseCode::PullOffsetMoved
            }
        }
        GetMessageStatus::OffsetFoundNull | GetMessageStatus::OffsetOverflowOne => {
            ResponseCode::PullNotFound
        }
        _ => ResponseCode::PullOffsetMoved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_like_java() {
        let all = PullFilter::from_expression("*");
        assert!(all.matches_code(12345));
        assert!(PullFilter::from_expression("").matches_code(1));
        let some = PullFilter::from_expression("TagA || TagB");
        assert!(some.matches_code(tag_hash_code("TagA")));
        assert!(some.matches_code(tag_hash_code("TagB")));
        assert!(!some.matches_code(tag_hash_code("TagC")));
        assert!(!some.matches_code(0));
    }

    #[test]
    fn heartbeat_code_sets_are_recomputed() {
        let sub = SubscriptionData {
            topic: "T".into(),
            sub_string: "TagA".into(),
            tags_set: ["TagA".to_string()].into_iter().collect(),
            code_set: [0].into_iter().collect(),
            ..SubscriptionData::default()
        };
        let filter = PullFilter::from_subscription(&sub);
        assert!(filter.matches_code(tag_hash_code("TagA")));
        assert!(!filter.matches_code(0));
    }

    #[test]
    fn status_mapping() {
        use GetMessageStatus::*;
        let cases = [
            (Found, 3, ResponseCode::Success),
            (NoMessageInQueue, 0, ResponseCode::PullNotFound),
            (NoMessageInQueue, 4, ResponseCode::PullOffsetMoved),
            (OffsetOverflowOne, 4, ResponseCode::PullNotFound),
            (OffsetOverflowBadly, 9, ResponseCode::PullOffsetMoved),
            (OffsetTooSmall, 0, ResponseCode::PullOffsetMoved),
            (NoMatchedMessage, 0, ResponseCode::PullRetryImmediately),
        ];
        for (status, offset, expected) in cases {
            assert_eq!(
                pull_code(status, offset),
                expected,
                "{status:?} at {offset}"
            );
        }
    }
}
