//! Offset reset (protocol reference §6.10): INVOKE_BROKER_TO_RESET_OFFSET (222) from an admin
//! tool, the RESET_CONSUMER_CLIENT_OFFSET (220) notice to the group's live consumers, and the
//! pull-side hook that makes every consumer, notified or not, continue at the reset offset.
//!
//! It follows Java's server-side reset (`useServerSideResetOffset`, the 5.x default,
//! `AdminBrokerProcessor.resetOffsetInner`):
//! 1. each queue's target is the first message stored at or after `timestamp` (a binary search
//!    of the consume queue by store time); `timestamp < 0` means the queue's max offset (skip
//!    everything, "latest"), 0 the queue's min offset ("earliest"); with `queueId ≥ 0` and an
//!    `offset` only that queue moves, to that offset if it lies in `[min, max + 1]`;
//! 2. the target is committed (persisted with `consumerOffset.json`) and kept as a pending
//!    reset: until a pull of that queue takes it, UPDATE_CONSUMER_OFFSET for the queue is
//!    acknowledged but ignored, so a consumer that has not seen the reset cannot undo it;
//! 3. the first pull of the queue after the reset takes it: a pull at another offset is
//!    answered PULL_OFFSET_MOVED with `nextBeginOffset` = the target (Java's OFFSET_RESET
//!    status), and its commit flag is ignored.
//!
//! Beyond Java's server-side mode, live consumers are also told at once with
//! RESET_CONSUMER_CLIENT_OFFSET (oneway), as the older client-side mode (`Broker2Client`) did,
//! so they do not first consume what is in flight; C++ clients get the list form of the body
//! (`ResetOffsetBodyForC`), which is the only one they parse. A pull that arrives exactly at the
//! target (a consumer that applied the notice) takes the pending reset and is served at once
//! instead of bouncing through PULL_OFFSET_MOVED as Java would.
//!
//! `isForce=false` keeps Java's client-side rule: a queue only moves backwards (a target above
//! the committed offset leaves the queue where it is).
//!
//! What it leaves out: slave brokers (there are none), POP consumers' caches, static topics,
//! and the client-side-only mode.

use std::collections::BTreeMap;

use store_core::status::BoundaryType;
use store_core::storage::Storage;

use super::offset::to_i64;
use super::Broker;
use crate::body::{MessageQueue, ResetOffsetBody};
use crate::header::{
    decode_header, encode_header, PullMessageRequestHeader, ResetOffsetRequestHeader,
};
use crate::reply::{reply, success, RequestError};
use crate::role::{ConnId, Transmit};
use crate::{LanguageCode, RemotingCommand, RequestCode, ResponseCode};

type Handled = Result<RemotingCommand, RequestError>;

/// The remark of a pull redirected by a pending reset (Java's `GetMessageStatus` name).
const OFFSET_RESET_REMARK: &str = "OFFSET_RESET";

/// What the pull path does about a pending reset of the pulled queue.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PullAfterReset {
    /// No reset pending: pull as usual.
    Pull,
    /// A reset was pending at the pulled offset: it is taken; pull, but do not commit.
    PullWithoutCommit,
    /// Answer this PULL_OFFSET_MOVED instead of reading the store.
    Redirect(RemotingCommand),
}

impl<S: Storage + Clone> Broker<S> {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222): moves `group`'s offsets on `topic` and answers the
    /// new offsets as a ResetOffsetBody.
    pub(super) fn reset_offset(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Handled {
        let h: ResetOffsetRequestHeader = decode_header(cmd)?;
        tracing::info!(topic = %h.topic, group = %h.group, timestamp = h.timestamp, queue_id = h.queue_id, offset = ?h.offset, force = h.is_force, "offset reset requested");
        let Some(topic_config) = self.topics.select(&h.topic) else {
            let remark = format!("Topic {} does not exist", h.topic);
            return Ok(reply(cmd, ResponseCode::TopicNotExist, remark));
        };
        let read_queue_nums = topic_config.read_queue_nums.max(0);
        if !self.groups.contains(&h.group) {
            let remark = format!("Group {} does not exist", h.group);
            return Ok(reply(cmd, ResponseCode::SubscriptionGroupNotExist, remark));
        }
        let targets = match self.reset_targets(&h, read_queue_nums) {
            Ok(targets) => targets,
            Err(remark) => return Ok(reply(cmd, ResponseCode::SystemError, remark)),
        };
        if targets.is_empty() {
            return Ok(reply(cmd, ResponseCode::SystemError, "No queues to reset."));
        }
        let mut offset_table = BTreeMap::new();
        for (queue_id, target) in targets {
            let committed = self.offsets.query(&h.group, &h.topic, queue_id);
            // isForce=false: only backwards (Java Broker2Client); the committed offset stays.
            let kept = committed.filter(|&c| !h.is_force && target >= c);
            let offset = match kept {
                Some(committed) => committed,
                None => {
                    let assigned = self
                        .offsets
                        .assign_reset(&h.group, &h.topic, queue_id, target);
                    assert!(assigned, "reset targets are valid queue ids and offsets");
                    target
                }
            };
            offset_table.insert(self.message_queue(&h.topic, queue_id), offset);
        }
        let body = ResetOffsetBody { offset_table };
        tracing::info!(topic = %h.topic, group = %h.group, queues = body.offset_table.len(), "offsets reset");
        self.notify_reset(&h, &body, now_ms);
        Ok(success(cmd).with_body(body.encode()))
    }

    /// The pull hook: a pending reset of the pulled queue redirects the pull (or, when the pull
    /// is already at the target, is simply taken).
    pub(super) fn pull_after_reset(
        &mut self,
        cmd: &RemotingCommand,
        header: &PullMessageRequestHeader,
    ) -> PullAfterReset {
        let (group, topic, queue_id) = (&header.consumer_group, &header.topic, header.queue_id);
        let Some(target) = self.offsets.take_reset(group, topic, queue_id) else {
            return PullAfterReset::Pull;
        };
        if target == header.queue_offset {
            tracing::debug!(group, topic, queue_id, target, "pull at the reset offset");
            return PullAfterReset::PullWithoutCommit;
        }
        tracing::info!(
            group,
            topic,
            queue_id,
            from = header.queue_offset,
            target,
            "pull redirected to the reset offset"
        );
        let min = self.store.min_offset_in_queue(topic, queue_id);
        let max = self.store.max_offset_in_queue(topic, queue_id);
        let mut response = reply(cmd, ResponseCode::PullOffsetMoved, OFFSET_RESET_REMARK);
        encode_header(
            &mut response,
            &crate::header::PullMessageResponseHeader {
                suggest_which_broker_id: 0,
                next_begin_offset: target,
                min_offset: to_i64(min),
                max_offset: to_i64(max),
                offset_delta: None,
                topic_sys_flag: None,
                group_sys_flag: None,
                forbidden_type: None,
            },
        );
        PullAfterReset::Redirect(response)
    }

    /// UPDATE_CONSUMER_OFFSET while a reset is pending for the queue: ignored (Java answers
    /// SUCCESS with this remark).
    pub(super) fn commit_blocked_by_reset(&self, group: &str, topic: &str, queue_id: i32) -> bool {
        self.offsets.has_reset(group, topic, queue_id)
    }

    /// Queue id -> target offset, or the SYSTEM_ERROR remark.
    fn reset_targets(
        &self,
        h: &ResetOffsetRequestHeader,
        read_queue_nums: i32,
    ) -> Result<BTreeMap<i32, i64>, String> {
        let topic = h.topic.as_str();
        if h.queue_id < 0 {
            return Ok((0..read_queue_nums)
                .map(|queue_id| (queue_id, self.offset_at_time(topic, queue_id, h.timestamp)))
                .collect());
        }
        let offset = match h.offset.filter(|&o| o != -1) {
            Some(offset) => {
                let min = to_i64(self.store.min_offset_in_queue(topic, h.queue_id));
                let max = to_i64(self.store.max_offset_in_queue(topic, h.queue_id));
                // Java's bounds, `max + 1` included.
                if offset < min || offset > max.saturating_add(1) {
                    return Err(format!(
                        "Target offset {offset} not in consume queue range [{min}-{max}]"
                    ));
                }
                offset
            }
            None => self.offset_at_time(topic, h.queue_id, h.timestamp),
        };
        Ok(BTreeMap::from([(h.queue_id, offset)]))
    }

    /// The first queue offset stored at or after `timestamp`; a negative timestamp means the
    /// max offset (Java `searchOffsetByTimestamp`).
    fn offset_at_time(&self, topic: &str, queue_id: i32, timestamp: i64) -> i64 {
        match u64::try_from(timestamp) {
            Ok(timestamp) => to_i64(self.store.offset_by_timestamp(
                topic,
                queue_id,
                timestamp,
                BoundaryType::Lower,
            )),
            Err(_) => to_i64(self.store.max_offset_in_queue(topic, queue_id)),
        }
    }

    /// RESET_CONSUMER_CLIENT_OFFSET (220), oneway, to every live connection of the group.
    fn notify_reset(&mut self, h: &ResetOffsetRequestHeader, body: &ResetOffsetBody, now_ms: u64) {
        let Some(info) = self.consumers.group(&h.group) else {
            return;
        };
        let targets: Vec<(ConnId, LanguageCode)> =
            info.channels().map(|c| (c.conn, c.language)).collect();
        let header = ResetOffsetRequestHeader {
            group: h.group.clone(),
            topic: h.topic.clone(),
            queue_id: h.queue_id,
            offset: None,
            timestamp: h.timestamp,
            is_force: h.is_force,
        };
        for (conn, language) in targets {
            let mut notice = RemotingCommand::request(
                RequestCode::ResetConsumerClientOffset.value(),
                self.next_opaque(),
            );
            notice.mark_oneway();
            encode_header(&mut notice, &header);
            let encoded = match language {
                LanguageCode::Cpp => encode_for_cpp(&body.offset_table),
                _ => body.encode(),
            };
            tracing::debug!(?conn, group = %h.group, now_ms, "reset notice sent");
            self.transmits.push_back(Transmit::Send {
                conn,
                cmd: notice.with_body(encoded),
            });
        }
    }
}

/// Java `ResetOffsetBodyForC`: `{"offsetTable":[{"brokerName":..,"offset":..,"queueId":..,
/// "topic":..}]}`. The C++ client's JSON reader cannot read object keys, so it gets a list.
fn encode_for_cpp(table: &BTreeMap<MessageQueue, i64>) -> Vec<u8> {
    let list: Vec<serde_json::Value> = table
        .iter()
        .map(|(mq, offset)| {
            serde_json::json!({
                "brokerName": mq.broker_name,
                "offset": offset,
                "queueId": mq.queue_id,
                "topic": mq.topic,
            })
        })
        .collect();
    serde_json::json!({ "offsetTable": list })
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{ConsumerData, HeartbeatData, SubscriptionData};
    use crate::broker::test_support::{request, sent_command};
    use crate::broker::BrokerConfig;
    use crate::header::PullSysFlag;
    use crate::role::Role;
    use store_core::consume_queue::ConsumeQueueConfig;
    use store_core::index::IndexConfig;
    use store_core::storage::MemStorage;
    use store_core::store::StoreConfig;

    const T0: u64 = 1_700_000_000_000;
    const CONSUMER: u64 = 2;
    const ADMIN: u64 = 3;
    const CPP_CONSUMER: u64 = 4;

    struct Rig {
        broker: Broker<MemStorage>,
        now_ms: u64,
    }

    impl Rig {
        fn new() -> Rig {
            let config = BrokerConfig {
                store: StoreConfig {
                    segment_size: 1 << 20,
                    consume_queue: ConsumeQueueConfig {
                        units_per_file: 1_000,
                    },
                    index: IndexConfig {
                        max_hash_slot_num: 64,
                        max_index_num: 256,
                    },
                    ..StoreConfig::default()
                },
                ..BrokerConfig::default()
            };
            let (mut broker, _) = Broker::new(config, MemStorage::new(), T0).unwrap();
            broker.handle_timeout(T0);
            for conn in 1..=4 {
                let addr = format!("127.0.0.1:{}", 41_000 + conn).parse().unwrap();
                broker.handle_connected(ConnId(conn), addr, None, T0);
            }
            let mut rig = Rig { broker, now_ms: T0 };
            rig.drain();
            rig
        }

        fn drain(&mut self) -> Vec<Transmit> {
            self.broker.handle_turn_end(self.now_ms);
            std::iter::from_fn(|| self.broker.poll_transmit()).collect()
        }

        /// One request; the response on `conn` and everything else sent in the turn.
        fn ask(&mut self, conn: u64, cmd: RemotingCommand) -> (RemotingCommand, Vec<Transmit>) {
            self.broker.handle_command(ConnId(conn), cmd, self.now_ms);
            let mut sent = self.drain();
            let answer = |t: &Transmit| {
                sent_command(t).filter(|(c, cmd)| *c == ConnId(conn) && cmd.is_response())
            };
            let at = sent
                .iter()
                .position(|t| answer(t).is_some())
                .expect("a response");
            let (_, cmd) = answer(&sent.remove(at)).expect("a response");
            (cmd, sent)
        }

        /// Sends one message to queue 0 of `T` at the current time.
        fn send(&mut self) {
            let cmd = request(
                RequestCode::SendMessage,
                &[
                    ("producerGroup", "pg"),
                    ("topic", "T"),
                    ("defaultTopic", "TBW102"),
                    ("defaultTopicQueueNums", "1"),
                    ("queueId", "0"),
                    ("sysFlag", "0"),
                    ("bornTimestamp", "1700000000000"),
                    ("flag", "0"),
                ],
            );
            let (resp, _) = self.ask(1, cmd.with_body(&b"m"[..]));
            assert_eq!(resp.code, ResponseCode::Success.value());
        }

        fn heartbeat(&mut self, conn: u64, language: LanguageCode) {
            let data = HeartbeatData {
                client_id: "c1".into(),
                consumer_data_set: vec![ConsumerData {
                    group_name: "g".into(),
                    subscription_data_set: vec![SubscriptionData {
                        topic: "T".into(),
                        sub_string: "*".into(),
                        ..SubscriptionData::default()
                    }],
                    ..ConsumerData::default()
                }]
                .into_iter()
                .collect(),
                ..HeartbeatData::default()
            };
            let mut cmd = RemotingCommand::request(RequestCode::HeartBeat.value(), 2)
                .with_body(data.encode());
            cmd.language = language;
            let (resp, _) = self.ask(conn, cmd);
            assert_eq!(resp.code, ResponseCode::Success.value());
        }

        fn commit(&mut self, offset: i64) -> RemotingCommand {
            let mut cmd = RemotingCommand::request(RequestCode::UpdateConsumerOffset.value(), 3);
            let offset = offset.to_string();
            for (k, v) in [
                ("consumerGroup", "g"),
                ("topic", "T"),
                ("queueId", "0"),
                ("commitOffset", offset.as_str()),
            ] {
                cmd.ext_fields_mut().insert(k, v);
            }
            self.ask(CONSUMER, cmd).0
        }

        fn reset(&mut self, fields: &[(&str, &str)]) -> (RemotingCommand, Vec<Transmit>) {
            let mut cmd =
                RemotingCommand::request(RequestCode::InvokeBrokerToResetOffset.value(), 4);
            for (k, v) in [("group", "g"), ("topic", "T"), ("isForce", "true")] {
                cmd.ext_fields_mut().insert(k, v);
            }
            for (k, v) in fields {
                cmd.ext_fields_mut().insert(*k, *v);
            }
            self.ask(ADMIN, cmd)
        }

        fn pull(&mut self, offset: i64, commit: Option<i64>) -> RemotingCommand {
            let mut cmd = RemotingCommand::request(RequestCode::PullMessage.value(), 5);
            let (offset, commit_offset) = (offset.to_string(), commit.unwrap_or(0).to_string());
            let flag = (PullSysFlag::SUBSCRIPTION
                | if commit.is_some() {
                    PullSysFlag::COMMIT_OFFSET
                } else {
                    0
                })
            .to_string();
            for (k, v) in [
                ("consumerGroup", "g"),
                ("topic", "T"),
                ("queueId", "0"),
                ("queueOffset", offset.as_str()),
                ("maxMsgNums", "32"),
                ("sysFlag", flag.as_str()),
                ("commitOffset", commit_offset.as_str()),
                ("suspendTimeoutMillis", "0"),
                ("subscription", "*"),
                ("subVersion", "0"),
            ] {
                cmd.ext_fields_mut().insert(k, v);
            }
            self.ask(CONSUMER, cmd).0
        }

        fn committed(&self) -> Option<i64> {
            self.broker.consumer_offsets().query("g", "T", 0)
        }
    }

    /// Ten messages stored one second apart from T0; the group committed 10.
    fn rig_with_history() -> Rig {
        let mut rig = Rig::new();
        for _ in 0..10 {
            rig.send();
            rig.now_ms += 1_000;
        }
        rig.heartbeat(CONSUMER, LanguageCode::Java);
        assert_eq!(rig.commit(10).code, ResponseCode::Success.value());
        rig
    }

    fn body_offsets(resp: &RemotingCommand) -> Vec<i64> {
        ResetOffsetBody::decode(&resp.body)
            .unwrap()
            .offset_table
            .into_values()
            .collect()
    }

    #[test]
    fn reset_by_time_moves_to_the_first_message_at_or_after_it_and_notifies() {
        let mut rig = rig_with_history();
        let at = (T0 + 3_500).to_string();
        let (resp, sent) = rig.reset(&[("timestamp", at.as_str())]);
        assert_eq!(resp.code, ResponseCode::Success.value(), "{resp:?}");
        // Messages at T0, T0+1 s, ...: the first at or after T0+3.5 s is number 4.
        assert_eq!(body_offsets(&resp), vec![4]);
        assert_eq!(rig.committed(), Some(4));
        let notices: Vec<_> = sent
            .iter()
            .filter_map(|t| match t {
                Transmit::Send { conn, cmd } if *conn == ConnId(CONSUMER) => Some(cmd),
                _ => None,
            })
            .collect();
        assert_eq!(notices.len(), 1);
        let notice = notices[0];
        assert_eq!(notice.code, RequestCode::ResetConsumerClientOffset.value());
        assert!(notice.is_oneway());
        assert_eq!(notice.ext("group"), Some("g"));
        assert_eq!(notice.ext("timestamp"), Some(at.as_str()));
        let told = ResetOffsetBody::decode(&notice.body).unwrap();
        assert_eq!(told.offset_table.into_values().collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn earliest_latest_and_exact_offsets() {
        let mut rig = rig_with_history();
        let (resp, _) = rig.reset(&[("timestamp", "0")]);
        assert_eq!(body_offsets(&resp), vec![0]);
        let (resp, _) = rig.reset(&[("timestamp", "-1")]);
        assert_eq!(body_offsets(&resp), vec![10]);
        let (resp, _) = rig.reset(&[("timestamp", "0"), ("queueId", "0"), ("offset", "7")]);
        assert_eq!(body_offsets(&resp), vec![7]);
        assert_eq!(rig.committed(), Some(7));
        let (resp, _) = rig.reset(&[("timestamp", "0"), ("queueId", "0"), ("offset", "12")]);
        assert_eq!(resp.code, ResponseCode::SystemError.value());
        assert_eq!(rig.committed(), Some(7));
    }

    #[test]
    fn without_force_offsets_only_move_backwards() {
        let mut rig = rig_with_history();
        let (resp, _) = rig.reset(&[("timestamp", "-1"), ("isForce", "false")]);
        assert_eq!(body_offsets(&resp), vec![10]);
        rig.commit(5);
        let (resp, _) = rig.reset(&[("timestamp", "-1"), ("isForce", "false")]);
        assert_eq!(body_offsets(&resp), vec![5]);
        assert_eq!(rig.committed(), Some(5));
    }

    #[test]
    fn unknown_topic_or_group_is_refused_without_change() {
        let mut rig = rig_with_history();
        let mut cmd = RemotingCommand::request(RequestCode::InvokeBrokerToResetOffset.value(), 9);
        for (k, v) in [
            ("group", "nobody"),
            ("topic", "T"),
            ("timestamp", "0"),
            ("isForce", "true"),
        ] {
            cmd.ext_fields_mut().insert(k, v);
        }
        let (resp, _) = rig.ask(ADMIN, cmd);
        assert_eq!(resp.code, ResponseCode::SubscriptionGroupNotExist.value());
        let (resp, _) = rig.reset(&[("timestamp", "0"), ("topic", "Nope")]);
        assert_eq!(resp.code, ResponseCode::TopicNotExist.value());
        assert_eq!(rig.committed(), Some(10));
    }

    /// A consumer that has not applied the reset commits its old position and pulls on: the
    /// commit is ignored and the pull is sent to the reset offset; afterwards commits count.
    #[test]
    fn stale_consumer_cannot_undo_a_reset() {
        let mut rig = rig_with_history();
        rig.reset(&[("timestamp", "0")]);
        let resp = rig.commit(10);
        assert_eq!(resp.code, ResponseCode::Success.value());
        assert_eq!(rig.committed(), Some(0));
        let resp = rig.pull(10, Some(10));
        assert_eq!(resp.code, ResponseCode::PullOffsetMoved.value());
        assert_eq!(resp.ext("nextBeginOffset"), Some("0"));
        assert_eq!(rig.committed(), Some(0));
        // The reset is taken: the pull at 0 reads, and commits are honoured again.
        let resp = rig.pull(0, Some(0));
        assert_eq!(resp.code, ResponseCode::Success.value());
        rig.commit(3);
        assert_eq!(rig.committed(), Some(3));
    }

    #[test]
    fn a_pull_at_the_reset_offset_is_served_without_its_commit() {
        let mut rig = rig_with_history();
        rig.reset(&[("timestamp", "0")]);
        let resp = rig.pull(0, Some(10));
        assert_eq!(resp.code, ResponseCode::Success.value());
        assert_eq!(rig.committed(), Some(0));
        rig.commit(4);
        assert_eq!(rig.committed(), Some(4));
    }

    #[test]
    fn cpp_consumers_get_the_list_form() {
        let mut rig = rig_with_history();
        rig.heartbeat(CPP_CONSUMER, LanguageCode::Cpp);
        let (_, sent) = rig.reset(&[("timestamp", "-1")]);
        let notice = sent
            .iter()
            .find_map(|t| match t {
                Transmit::Send { conn, cmd } if *conn == ConnId(CPP_CONSUMER) => Some(cmd),
                _ => None,
            })
            .expect("a notice");
        let json: serde_json::Value = serde_json::from_slice(&notice.body).unwrap();
        let entry = &json["offsetTable"][0];
        assert_eq!(entry["offset"], 10);
        assert_eq!(entry["queueId"], 0);
        assert_eq!(entry["topic"], "T");
        assert_eq!(entry["brokerName"], "broker-a");
    }
}
