//! END_TRANSACTION (37): the producer's verdict on a half message, sent oneway after the local
//! transaction or as the answer to CHECK_TRANSACTION_STATE (`fromTransactionCheck`).
//!
//! Checks as Java's `EndTransactionProcessor`: an unknown verdict gets no answer; the half is
//! looked up by `commitLogOffset`; a verdict outside the check path that arrives after the
//! half's `CHECK_IMMUNITY_TIME_IN_SECONDS` is refused ILLEGAL_OPERATION; producer group and
//! `tranStateTableOffset` must match the half. Then a commit stores the real message and the op
//! record in one batch, a rollback stores the op record.
//!
//! What it leaves out: the slave check (this broker is always a master) and end-transaction
//! hooks. A verdict on a transaction already ended answers SUCCESS and stores nothing (Java
//! would commit it again).

use bytes::Bytes;

use store_core::format::properties::{self, Properties};
use store_core::format::record::MessageRecord;
use store_core::format::sys_flag::{
    with_transaction_type, TRANSACTION_COMMIT_TYPE, TRANSACTION_NOT_TYPE, TRANSACTION_ROLLBACK_TYPE,
};
use store_core::storage::Storage;

use super::{Broker, Half};
use crate::header::{decode_header, EndTransactionRequestHeader};
use crate::reply::{reply, success};
use crate::role::ConnId;
use crate::{RemotingCommand, ResponseCode};

impl<S: Storage + Clone> Broker<S> {
    /// Answers END_TRANSACTION; `None` when Java sends no answer (an unknown or pending
    /// verdict).
    pub(in crate::broker) fn end_transaction(
        &mut self,
        conn: ConnId,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let h: EndTransactionRequestHeader = match decode_header(cmd) {
            Ok(h) => h,
            Err(e) => return Some(reply(cmd, ResponseCode::SystemError, e.to_string())),
        };
        let verdict = h.commit_or_rollback;
        if verdict != TRANSACTION_COMMIT_TYPE && verdict != TRANSACTION_ROLLBACK_TYPE {
            if verdict == TRANSACTION_NOT_TYPE {
                tracing::info!(?conn, msg_id = %h.msg_id, from_check = h.from_transaction_check, "transaction still unknown to its producer");
            }
            return None;
        }
        let Some(half) = u64::try_from(h.commit_log_offset)
            .ok()
            .and_then(|offset| self.half_at(offset))
        else {
            return Some(reply(
                cmd,
                ResponseCode::SystemError,
                "Find prepared transaction message failed",
            ));
        };
        if !h.from_transaction_check && self.too_late(&half, now_ms) {
            tracing::warn!(msg_id = %h.msg_id, "verdict after the immunity time; the check decides");
            return Some(reply(
                cmd,
                ResponseCode::IllegalOperation,
                "commit or rollback after the check immunity time",
            ));
        }
        if half.props.get(properties::PGROUP) != Some(h.producer_group.as_str()) {
            return Some(reply(
                cmd,
                ResponseCode::SystemError,
                "The producer group wrong",
            ));
        }
        if u64::try_from(h.tran_state_table_offset).ok() != Some(half.copy.queue_offset) {
            return Some(reply(
                cmd,
                ResponseCode::SystemError,
                "The transaction state table offset wrong",
            ));
        }
        let Some(pending) = self.transactions.get(half.origin) else {
            tracing::info!(msg_id = %h.msg_id, origin = half.origin, "transaction already ended; verdict ignored");
            return Some(success(cmd));
        };
        let op = self.op_record(pending.op_body(half.copy.queue_offset), now_ms);
        let committed = verdict == TRANSACTION_COMMIT_TYPE;
        let records = if committed {
            let Some(real) = committed_record(&half) else {
                return Some(reply(
                    cmd,
                    ResponseCode::SystemError,
                    "half message without REAL_TOPIC / REAL_QID",
                ));
            };
            vec![real, op]
        } else {
            vec![op]
        };
        // A batch of one is the same append as `put`; the op record is always last.
        let put = self.store.put_batch(&records, now_ms);
        let Some(op_wrote) = put.wrote.last().filter(|_| put.status.is_stored()) else {
            tracing::warn!(status = put.status.name(), "end transaction not stored");
            let remark = format!("end transaction not stored: {}", put.status.name());
            let code = if put.status == store_core::status::PutMessageStatus::ServiceNotAvailable {
                ResponseCode::ServiceNotAvailable
            } else {
                ResponseCode::SystemError
            };
            return Some(reply(cmd, code, remark));
        };
        let op_offset = op_wrote.queue_offset;
        self.transactions.resolve(half.origin, op_offset);
        tracing::debug!(msg_id = %h.msg_id, committed, origin = half.origin, "transaction ended");
        if committed {
            if let (Some(topic), Some(queue_id)) = (half.real_topic(), half.real_queue_id()) {
                let topic = topic.to_string();
                let max_offset = self.store.max_offset_in_queue(&topic, queue_id);
                self.wake_held_pulls(&topic, queue_id, max_offset, None, now_ms);
            }
        }
        Some(success(cmd))
    }

    /// Java `rejectCommitOrRollback`: a half with its own immunity time must be ended within
    /// it, or left to the check.
    fn too_late(&self, half: &Half, now_ms: u64) -> bool {
        if half
            .props
            .get(properties::CHECK_IMMUNITY_TIME_IN_SECONDS)
            .is_none_or(str::is_empty)
        {
            return false;
        }
        let immunity = super::immunity_ms(&half.props, self.config.transaction_timeout_ms);
        let age = i128::from(now_ms) - i128::from(half.record.born_timestamp);
        age > i128::from(immunity)
    }
}

/// The real message a commit stores (Java `endMessageTransaction`): the half's fields and
/// properties, back in its real topic and queue, `TRAN_MSG` cleared, sys flag COMMIT, and
/// `preparedTransactionOffset` pointing at the half.
pub(super) fn committed_record(half: &Half) -> Option<MessageRecord> {
    let topic = half.real_topic()?.to_string();
    let queue_id = half.real_queue_id()?;
    let mut props: Properties = half.props.clone();
    props.remove(properties::REAL_TOPIC);
    props.remove(properties::REAL_QID);
    props.remove(properties::TRAN_MSG);
    props.insert(properties::WAIT, "false");
    Some(MessageRecord {
        queue_id,
        queue_offset: 0,
        physical_offset: 0,
        store_timestamp: 0,
        sys_flag: with_transaction_type(half.record.sys_flag, TRANSACTION_COMMIT_TYPE),
        prepared_transaction_offset: i64::try_from(half.copy.commit_log_offset).unwrap_or(0),
        topic: Bytes::from(topic.into_bytes()),
        properties: Bytes::from(props.encode().into_bytes()),
        ..half.record.clone()
    })
}
