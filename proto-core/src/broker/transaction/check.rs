//! Back-checks of unresolved halves (Java `TransactionalMessageCheckService` and
//! `TransactionalMessageServiceImpl.check`), and reading the pending set back at start.
//!
//! A check run, every `transactionCheckInterval`: each pending transaction whose born time is
//! older than its immunity (`transactionTimeOut` by default) is re-appended to the half queue
//! with `TRANSACTION_CHECK_TIMES` counted up, then CHECK_TRANSACTION_STATE names that copy to
//! one live connection of the producer group (none online: the count still goes up, as in
//! Java). A transaction already checked `transactionCheckMax` times is moved to
//! `TRANS_CHECK_MAX_TIME_TOPIC` and ended with an op record.
//!
//! Progress is saved as the consumer offsets of `CID_RMQ_SYS_TRANS` on the half and op
//! topics, but only once the commit log is durable past everything the offsets vouch for: a
//! run proposes offsets with the commit-log end at that time, and a later run commits them
//! when the store's flushed offset has passed it. A stale pair only makes a restart read more.
//!
//! What it leaves out: a time limit per run (a run checks at most [`CHECKS_PER_RUN_MAX`]
//! transactions and comes back soon for the rest).

use bytes::Bytes;

use store_core::format::properties::{self, Properties};
use store_core::format::record::{decode_with, CrcCheck};
use store_core::format::sys_flag::{transaction_type, TRANSACTION_COMMIT_TYPE};
use store_core::storage::Storage;
use store_core::store::AcceptAll;

use super::table::{HalfCopy, TransactionTable};
use super::{parse_op_body, Broker, Half, CID_SYS_RMQ_TRANS};
use crate::body::PermName;
use crate::broker::topic_config::{
    RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC, RMQ_SYS_TRANS_HALF_TOPIC, RMQ_SYS_TRANS_OP_HALF_TOPIC,
};
use crate::header::{encode_header, CheckTransactionStateRequestHeader};
use crate::role::Transmit;
use crate::{RemotingCommand, RequestCode};

/// Most transactions one run checks; the rest wait for the next run, which comes sooner.
pub const CHECKS_PER_RUN_MAX: usize = 2_000;
/// How soon a run that hit [`CHECKS_PER_RUN_MAX`] comes back.
pub const CHECK_RESUME_MS: u64 = 100;
/// Records read per store call while reading the half and op queues back.
const READ_BATCH: u32 = 256;

/// Offsets a check run proposed, to be committed once the log is durable to `log_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::broker) struct ProposedProgress {
    half: u64,
    op: u64,
    log_end: u64,
}

impl<S: Storage + Clone> Broker<S> {
    /// One check run; returns when the next should come.
    pub(in crate::broker) fn check_transactions(&mut self, now_ms: u64) -> u64 {
        self.commit_transaction_progress(now_ms);
        let due: Vec<u64> = self
            .transactions
            .iter()
            .filter(|(_, p)| {
                let age = i128::from(now_ms) - i128::from(p.born_timestamp_ms);
                age > i128::from(p.immunity_ms) || age < 0
            })
            .map(|(origin, _)| origin)
            .take(CHECKS_PER_RUN_MAX + 1)
            .collect();
        let more = due.len() > CHECKS_PER_RUN_MAX;
        for &origin in due.iter().take(CHECKS_PER_RUN_MAX) {
            self.check_one(origin, now_ms);
        }
        let op = self.transactions.op_progress();
        self.transaction_progress = Some(ProposedProgress {
            half: self.transactions.half_progress(),
            op,
            log_end: self.store.commit_log_max_offset(),
        });
        let interval = self.config.transaction_check_interval_ms.max(1);
        now_ms + if more { CHECK_RESUME_MS } else { interval }
    }

    /// Commits the proposed progress once the commit log is durable past it.
    fn commit_transaction_progress(&mut self, now_ms: u64) {
        let Some(p) = self.transaction_progress else {
            return;
        };
        if self.store.flushed_offset() < p.log_end {
            return;
        }
        self.transaction_progress = None;
        for (topic, offset) in [
            (RMQ_SYS_TRANS_HALF_TOPIC, p.half),
            (RMQ_SYS_TRANS_OP_HALF_TOPIC, p.op),
        ] {
            let offset = i64::try_from(offset).unwrap_or(i64::MAX);
            if self.offsets.query(CID_SYS_RMQ_TRANS, topic, 0) != Some(offset) {
                self.offsets
                    .commit(CID_SYS_RMQ_TRANS, topic, 0, offset, now_ms);
            }
        }
    }

    /// Checks (or discards) one pending transaction.
    fn check_one(&mut self, origin: u64, now_ms: u64) {
        let Some(pending) = self.transactions.get(origin) else {
            return;
        };
        let latest = pending.latest();
        let group = pending.producer_group.clone();
        let check_times = match pending.check_times {
            Some(n) if n >= self.config.transaction_check_max => None,
            Some(n) => Some(n + 1),
            None => Some(1),
        };
        let Some(half) = self.half_at(latest.commit_log_offset) else {
            // Gone from the store (retention): nothing left to ask about.
            tracing::warn!(
                origin,
                ?latest,
                "half message unreadable; transaction dropped"
            );
            self.end_quietly(origin, None, now_ms);
            return;
        };
        let Some(check_times) = check_times else {
            self.discard(origin, &half, now_ms);
            return;
        };
        let mut copy = half.record.clone();
        let mut props = half.props.clone();
        props.insert(properties::TRANSACTION_CHECK_TIMES, check_times.to_string());
        props.insert(properties::TRAN_PREPARED_QUEUE_OFFSET, origin.to_string());
        props.insert(properties::WAIT, "false");
        copy.properties = Bytes::from(props.encode().into_bytes());
        copy.queue_offset = 0;
        copy.physical_offset = 0;
        copy.store_timestamp = 0;
        let put = self.store.put(&copy, now_ms);
        let Some(wrote) = put.wrote.filter(|_| put.status.is_stored()) else {
            tracing::warn!(
                origin,
                status = put.status.name(),
                "half message not re-appended; check later"
            );
            return;
        };
        let renewed = HalfCopy {
            queue_offset: wrote.queue_offset,
            commit_log_offset: wrote.phys_offset,
        };
        self.transactions.note_copy(origin, renewed, check_times);
        let seq = self.transactions.next_check_seq();
        let Some(conn) = self.producers.pick_channel(&group, seq) else {
            tracing::warn!(group, origin, "no producer online to check the transaction");
            return;
        };
        copy.queue_offset = i64::try_from(wrote.queue_offset).unwrap_or(0);
        copy.physical_offset = i64::try_from(wrote.phys_offset).unwrap_or(0);
        copy.store_timestamp = i64::try_from(wrote.store_timestamp).unwrap_or(0);
        let uniq = props.get(properties::UNIQ_KEY).map(str::to_owned);
        let header = CheckTransactionStateRequestHeader {
            topic: Some(RMQ_SYS_TRANS_HALF_TOPIC.to_string()),
            tran_state_table_offset: copy.queue_offset,
            commit_log_offset: copy.physical_offset,
            msg_id: uniq.clone(),
            transaction_id: uniq,
            offset_msg_id: Some(wrote.msg_id()),
            broker_name: Some(self.config.broker_name.clone()),
        };
        // The body is the message as the producer sent it: real topic and queue.
        if let (Some(topic), Some(queue_id)) = (half.real_topic(), half.real_queue_id()) {
            copy.topic = Bytes::from(topic.to_string().into_bytes());
            copy.queue_id = queue_id;
        }
        let mut body = Vec::with_capacity(copy.encoded_len());
        copy.encode_into(&mut body);
        let mut cmd = RemotingCommand::request(
            RequestCode::CheckTransactionState.value(),
            self.next_opaque(),
        );
        cmd.mark_oneway();
        encode_header(&mut cmd, &header);
        cmd.body = Bytes::from(body);
        tracing::info!(
            group,
            origin,
            check_times,
            ?conn,
            "checking transaction state"
        );
        self.transmits.push_back(Transmit::Send { conn, cmd });
    }

    /// Java `resolveDiscardMsg`: the half goes to `TRANS_CHECK_MAX_TIME_TOPIC` for the
    /// record, and the transaction ends.
    fn discard(&mut self, origin: u64, half: &Half, now_ms: u64) {
        let rw = PermName::PERM_READ | PermName::PERM_WRITE;
        self.topics.create_in_send_back(
            RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC,
            1,
            rw,
            false,
            0,
            now_ms,
        );
        let mut trace = half.record.clone();
        trace.topic = Bytes::from_static(RMQ_SYS_TRANS_CHECK_MAX_TIME_TOPIC.as_bytes());
        trace.queue_id = 0;
        trace.queue_offset = 0;
        trace.physical_offset = 0;
        trace.store_timestamp = 0;
        tracing::warn!(origin, "transaction checked too many times; discarded");
        self.end_quietly(origin, Some(trace), now_ms);
    }

    /// Ends a transaction with an op record, storing `before` ahead of it in the same batch.
    fn end_quietly(
        &mut self,
        origin: u64,
        before: Option<store_core::format::record::MessageRecord>,
        now_ms: u64,
    ) {
        let Some(pending) = self.transactions.get(origin) else {
            return;
        };
        let op = self.op_record(pending.op_body(pending.latest().queue_offset), now_ms);
        let records: Vec<_> = before.into_iter().chain([op]).collect();
        let put = self.store.put_batch(&records, now_ms);
        match put.wrote.last().filter(|_| put.status.is_stored()) {
            Some(op_wrote) => {
                self.transactions.resolve(origin, op_wrote.queue_offset);
            }
            None => tracing::warn!(origin, status = put.status.name(), "op record not stored"),
        }
    }

    /// Reads the pending transactions back from the half and op queues, from the saved
    /// progress on. A commit whose op record was lost in a crash is found as the last message
    /// of its real queue (the batch put them side by side, so nothing can follow one without
    /// the other) and its op record written now.
    pub(in crate::broker) fn recover_transactions(&mut self, now_ms: u64) {
        let half_min = self.store.min_offset_in_queue(RMQ_SYS_TRANS_HALF_TOPIC, 0);
        let half_max = self.store.max_offset_in_queue(RMQ_SYS_TRANS_HALF_TOPIC, 0);
        let op_min = self
            .store
            .min_offset_in_queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, 0);
        let op_max = self
            .store
            .max_offset_in_queue(RMQ_SYS_TRANS_OP_HALF_TOPIC, 0);
        let saved = |topic| {
            self.offsets
                .query(CID_SYS_RMQ_TRANS, topic, 0)
                .and_then(|o| u64::try_from(o).ok())
        };
        let half_from = saved(RMQ_SYS_TRANS_HALF_TOPIC)
            .unwrap_or(0)
            .clamp(half_min, half_max);
        let op_from = saved(RMQ_SYS_TRANS_OP_HALF_TOPIC)
            .unwrap_or(0)
            .clamp(op_min, op_max);
        let mut table = TransactionTable::new(half_from, op_from);
        let mut resolved = std::collections::BTreeSet::new();
        self.read_queue(
            RMQ_SYS_TRANS_OP_HALF_TOPIC,
            op_from,
            |queue_offset, bytes| {
                let Ok((record, _)) = decode_with(bytes, CrcCheck::Skip) else {
                    return;
                };
                let tag = Properties::parse_bytes(&record.properties)
                    .get(properties::TAGS)
                    .map(str::to_owned);
                let listed = if tag.as_deref() == Some(super::REMOVE_TAG) {
                    parse_op_body(&record.body)
                } else {
                    Vec::new()
                };
                table.note_op(queue_offset, listed.iter().copied().max().unwrap_or(0));
                resolved.extend(listed);
            },
        );
        let timeout_ms = self.config.transaction_timeout_ms;
        let mut ended = std::collections::BTreeSet::new();
        self.read_queue(RMQ_SYS_TRANS_HALF_TOPIC, half_from, |_, bytes| {
            let Some(half) = Half::decode(bytes) else {
                return;
            };
            if resolved.contains(&half.copy.queue_offset) {
                ended.insert(half.origin);
            }
            if ended.contains(&half.origin) {
                return;
            }
            let pending = half.pending(timeout_ms);
            table.note_half(half.origin, pending);
        });
        for origin in &ended {
            // A copy listed by an op record ends the transaction, whichever copy came first.
            table.forget(*origin);
        }
        self.transactions = table;
        let orphans: Vec<u64> = self
            .transactions
            .iter()
            .filter(|&(origin, p)| self.committed_without_op(origin, p))
            .map(|(origin, _)| origin)
            .collect();
        for origin in orphans {
            tracing::warn!(
                origin,
                "commit found without its op record; op record written"
            );
            self.end_quietly(origin, None, now_ms);
        }
        tracing::info!(
            pending = self.transactions.len(),
            half_from,
            op_from,
            "transactions recovered"
        );
    }

    /// Whether the last message of the transaction's real queue is its commit.
    fn committed_without_op(&self, origin: u64, pending: &super::table::Pending) -> bool {
        let Some(half) = self.half_at(pending.latest().commit_log_offset) else {
            return false;
        };
        let (Some(topic), Some(queue_id)) = (half.real_topic(), half.real_queue_id()) else {
            return false;
        };
        let max = self.store.max_offset_in_queue(topic, queue_id);
        let Some(last) = max.checked_sub(1) else {
            return false;
        };
        let got = self
            .store
            .get_messages(topic, queue_id, last, 1, u64::MAX, &AcceptAll);
        got.records.first().is_some_and(|bytes| {
            decode_with(bytes, CrcCheck::Skip).is_ok_and(|(record, _)| {
                // The commit names the copy the verdict named, which may be older than any
                // copy read back: follow it to its origin.
                transaction_type(record.sys_flag) == TRANSACTION_COMMIT_TYPE
                    && u64::try_from(record.prepared_transaction_offset)
                        .ok()
                        .and_then(|offset| self.half_at(offset))
                        .is_some_and(|committed| committed.origin == origin)
            })
        })
    }

    /// Calls `each(queue_offset, record)` for every record of `topic` queue 0 from `from`.
    fn read_queue(&self, topic: &str, from: u64, mut each: impl FnMut(u64, &Bytes)) {
        let mut offset = from;
        loop {
            let got = self
                .store
                .get_messages(topic, 0, offset, READ_BATCH, u64::MAX, &AcceptAll);
            for (bytes, &queue_offset) in got.records.iter().zip(&got.queue_offsets) {
                each(queue_offset, bytes);
            }
            if got.next_begin_offset <= offset {
                break;
            }
            offset = got.next_begin_offset;
        }
    }
}
