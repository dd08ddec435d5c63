//! Client sessions (protocol reference §6.6, §10): HEART_BEAT, UNREGISTER_CLIENT,
//! GET_CONSUMER_LIST_BY_GROUP, LOCK_BATCH_MQ, UNLOCK_BATCH_MQ, NOTIFY_CONSUMER_IDS_CHANGED to
//! group members, and client expiry on connection loss or silence.
//!
//! SQL92 subscriptions are compiled and applied by `crate::filter` at pull time, not here.
//! What it leaves out: producer change listeners.

use store_core::storage::Storage;

use super::consumer_manager::{ClientChannelInfo, GroupChange};
use super::topic_config::retry_topic;
use super::Broker;
use crate::body::{
    GetConsumerListByGroupResponseBody, HeartbeatData, LockBatchRequestBody, LockBatchResponseBody,
    PermName, UnlockBatchRequestBody,
};
use crate::header::{
    decode_header, encode_header, GetConsumerListByGroupRequestHeader,
    NotifyConsumerIdsChangedRequestHeader, UnregisterClientRequestHeader, IS_SUB_CHANGE,
    IS_SUPPORT_HEART_BEAT_V2,
};
use crate::reply::{body_error, reply, success, RequestError};
use crate::role::{ConnId, Transmit};
use crate::{RemotingCommand, RequestCode, ResponseCode};

type Handled = Result<RemotingCommand, RequestError>;

impl<S: Storage + Clone> Broker<S> {
    /// HEART_BEAT (§10.1): registers producer and consumer groups on this connection, creates
    /// each consumer group's `%RETRY%` topic, and notifies group members of changes.
    pub(super) fn heartbeat(
        &mut self,
        conn: ConnId,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Handled {
        let data = HeartbeatData::decode(&cmd.body).map_err(body_error("HeartbeatData"))?;
        let v2 = data.heartbeat_fingerprint != 0;
        let known = self.conns.get(&conn).and_then(|c| c.fingerprint);
        let fingerprint_same = known == Some(data.heartbeat_fingerprint);
        // v2 `withoutSub`: keep the subscriptions we have, if we have them for this client.
        let without_sub = v2 && data.without_sub;
        let channel = |now_ms| {
            ClientChannelInfo::new(conn, &data.client_id, cmd.language, cmd.version, now_ms)
        };
        let mut sub_changed = !v2;
        for consumer in &data.consumer_data_set {
            let group = consumer.group_name.as_str();
            let Some(group_config) = self.groups.find_or_create(group, now_ms) else {
                tracing::warn!(group, "heartbeat for a group that may not be created");
                continue;
            };
            let notify_enabled = group_config.notify_consumer_ids_changed_enable;
            let retry_queue_nums = group_config.retry_queue_nums;
            let rw = PermName::PERM_READ | PermName::PERM_WRITE;
            let _ = self.topics.create_in_send_back(
                &retry_topic(group),
                retry_queue_nums,
                rw,
                false,
                0,
                now_ms,
            );
            let known_group = self.consumers.group(group).is_some();
            let outcome = self.consumers.register(
                channel(now_ms),
                consumer,
                without_sub,
                notify_enabled,
                now_ms,
            );
            if v2 && (!fingerprint_same || !known_group) {
                sub_changed = true;
            }
            if outcome.channel_added {
                tracing::info!(group, client = %data.client_id, ?conn, "consumer joined");
            }
            self.notify_consumer_ids_changed(group, &outcome.notify);
        }
        for producer in &data.producer_data_set {
            self.producers
                .register(&producer.group_name, channel(now_ms), now_ms);
        }
        if v2 && !data.without_sub {
            if let Some(info) = self.conns.get_mut(&conn) {
                info.fingerprint = Some(data.heartbeat_fingerprint);
            }
        }
        let mut response = success(cmd);
        let fields = response.ext_fields_mut();
        fields.insert(IS_SUPPORT_HEART_BEAT_V2, "true");
        fields.insert(IS_SUB_CHANGE, sub_changed.to_string());
        Ok(response)
    }

    /// UNREGISTER_CLIENT (§10.1): leaves the named groups at once. The C++ client sends `""`
    /// for the group kind it is not.
    pub(super) fn unregister_client(&mut self, conn: ConnId, cmd: &RemotingCommand) -> Handled {
        let h: UnregisterClientRequestHeader = decode_header(cmd)?;
        if let Some(group) = h.producer_group.as_deref().filter(|g| !g.is_empty()) {
            self.producers.unregister(group, conn, &h.client_id);
        }
        if let Some(group) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
            let notify_enabled = self
                .groups
                .get(group)
                .is_none_or(|g| g.notify_consumer_ids_changed_enable);
            let notify = self.consumers.unregister(group, conn, notify_enabled);
            self.notify_consumer_ids_changed(group, &notify);
        }
        Ok(success(cmd))
    }

    /// GET_CONSUMER_LIST_BY_GROUP (§10.2).
    pub(super) fn consumer_list(&self, cmd: &RemotingCommand) -> Handled {
        let h: GetConsumerListByGroupRequestHeader = decode_header(cmd)?;
        let ids = self.consumers.consumer_ids(&h.consumer_group);
        if ids.is_empty() {
            return Ok(reply(
                cmd,
                ResponseCode::SystemError,
                format!("no consumer for this group, {}", h.consumer_group),
            ));
        }
        let body = GetConsumerListByGroupResponseBody {
            consumer_id_list: ids,
        };
        Ok(success(cmd).with_body(body.encode()))
    }

    /// LOCK_BATCH_MQ (§10.4).
    pub(super) fn lock_batch(&mut self, cmd: &RemotingCommand, now_ms: u64) -> Handled {
        let body =
            LockBatchRequestBody::decode(&cmd.body).map_err(body_error("LockBatchRequestBody"))?;
        let locked =
            self.locks
                .try_lock_batch(&body.consumer_group, &body.mq_set, &body.client_id, now_ms);
        let response = LockBatchResponseBody {
            lock_ok_mq_set: locked,
        };
        Ok(success(cmd).with_body(response.encode()))
    }

    /// UNLOCK_BATCH_MQ (§10.4).
    pub(super) fn unlock_batch(&mut self, cmd: &RemotingCommand) -> Handled {
        let body = UnlockBatchRequestBody::decode(&cmd.body)
            .map_err(body_error("UnlockBatchRequestBody"))?;
        self.locks
            .unlock_batch(&body.consumer_group, &body.mq_set, &body.client_id);
        Ok(success(cmd))
    }

    /// A connection closed: it leaves every group; remaining members are told.
    pub(super) fn client_closed(&mut self, conn: ConnId) {
        for change in self.consumers.on_conn_closed(conn) {
            self.notify_consumer_ids_changed(&change.group, &change.notify);
        }
        let _ = self.producers.on_conn_closed(conn);
    }

    /// The idle-client scan (every 10 s): drops clients silent for `channelExpiredTimeout`,
    /// closes their connections and tells the remaining members.
    pub(super) fn scan_clients(&mut self, now_ms: u64) {
        let changes: Vec<GroupChange> = self.consumers.scan_expired(now_ms);
        for change in changes {
            for gone in &change.removed {
                self.transmits.push_back(Transmit::Close {
                    conn: gone.conn,
                    reason: format!(
                        "consumer {} of group {} sent no heartbeat for {} ms",
                        gone.client_id, change.group, self.config.channel_expired_timeout_ms
                    ),
                });
            }
            self.notify_consumer_ids_changed(&change.group, &change.notify);
        }
        for gone in self.producers.scan_expired(now_ms) {
            tracing::info!(group = %gone.group, "producer expired");
        }
    }

    /// NOTIFY_CONSUMER_IDS_CHANGED (40), oneway, to each of `conns`.
    fn notify_consumer_ids_changed(&mut self, group: &str, conns: &[ConnId]) {
        for &conn in conns {
            let mut cmd = RemotingCommand::request(
                RequestCode::NotifyConsumerIdsChanged.value(),
                self.next_opaque(),
            );
            cmd.mark_oneway();
            encode_header(
                &mut cmd,
                &NotifyConsumerIdsChangedRequestHeader {
                    consumer_group: group.to_string(),
                },
            );
            self.transmits.push_back(Transmit::Send { conn, cmd });
        }
    }
}
