//! The broker's side of controller-mode replication (RocketMQ's `AutoSwitchHAConnection` and
//! `AutoSwitchHAClient` minus the sockets): what the HA adapter calls when the wire is
//! `ha::auto_wire`, and the confirm offset handed to the store.
//!
//! Master: a slave's handshake names its broker id (the sync state set is kept by id); the
//! master answers with its epoch entries and write position; transfers never cross an epoch
//! boundary and carry the epoch of their bytes and the confirm offset.
//!
//! Slave: it refuses a master whose epoch is older than the newest it knows (its epoch file
//! and the epoch the controller gave it), cuts its log to the consistent point of both epoch
//! histories (`EpochFile::consistent_point`, then `MessageStore::truncate_to`), records each
//! new epoch as its data arrives, and keeps reads below the master's confirm offset.
//!
//! Left out: `syncFromLastFile` (a slave always copies from the master's oldest byte) and
//! async learners.

use store_core::epoch::EpochEntry;
use store_core::status::NotWritable;
use store_core::storage::Storage;
use store_core::store::{ReplicaError, TruncateError};

use super::Broker;
use crate::ha::auto_wire::{AutoTransferFrame, MasterHandshake, WireEpoch};
use crate::ha::master::SlaveId;

/// Why a slave drops its master's connection in controller mode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutoSlaveError {
    #[error("this broker is not a slave")]
    NotSlave,
    #[error("master epoch {master} is older than epoch {known} this broker knows")]
    StaleMaster { master: u32, known: u32 },
    #[error("no consistent point between the master's epochs and ours")]
    NoConsistentPoint,
    #[error("truncation: {0}")]
    Truncate(#[from] TruncateError),
    #[error("append: {0}")]
    Replica(#[from] ReplicaError),
}

fn wire(entry: EpochEntry) -> WireEpoch {
    WireEpoch {
        epoch: entry.epoch,
        start_offset: entry.start_offset,
    }
}

impl<S: Storage + Clone> Broker<S> {
    /// The master's confirm offset: what every sync state set member holds with
    /// `allAckInSyncStateSet`, else the write position (Java's `getConfirmOffset`).
    #[must_use]
    pub fn ha_confirm_offset(&self) -> u64 {
        let max = self.store.commit_log_max_offset();
        if self.ha.config.all_ack_in_sync_state_set {
            self.ha.replicas.confirm_offset(max)
        } else {
            max
        }
    }

    /// A master in controller mode hands its confirm offset to the store (every turn end).
    pub(super) fn refresh_confirm_offset(&mut self, now_ms: u64) {
        if self.ha.config.controller_mode && self.ha.role().is_master() {
            let confirm = self.ha_confirm_offset();
            self.set_confirm_offset(confirm, now_ms);
        }
    }

    /// Hands `confirm` to the store and, when it moved, wakes the pulls it made answerable.
    fn set_confirm_offset(&mut self, confirm: u64, now_ms: u64) {
        if confirm != self.store.confirm_offset() {
            self.store.set_confirm_offset(confirm);
            self.wake_held_pulls_after_confirm(now_ms);
        }
    }

    /// Master: slave `id` sent its handshake naming `broker_id`; the answer to send back.
    pub fn ha_slave_handshake(&mut self, id: SlaveId, broker_id: u64) -> MasterHandshake {
        tracing::info!(slave = id.0, broker_id, "slave handshake");
        self.ha.replicas.set_slave_broker_id(id, broker_id);
        let epochs = self.store.epochs();
        MasterHandshake {
            max_offset: self.store.commit_log_max_offset(),
            epoch: epochs.last_epoch().unwrap_or(0),
            entries: epochs.entries().iter().copied().map(wire).collect(),
        }
    }

    /// The epoch that wrote `offset` and where the next one starts. Bytes before the first
    /// entry (written before controller mode) count as the first epoch's.
    fn epoch_at(&self, offset: u64) -> Option<(EpochEntry, u64)> {
        let epochs = self.store.epochs();
        let entry = epochs
            .entry_at(offset)
            .or_else(|| epochs.entries().first().copied())?;
        let end = epochs
            .entries()
            .iter()
            .find(|e| e.epoch > entry.epoch)
            .map_or(u64::MAX, |next| next.start_offset);
        Some((entry, end))
    }

    /// Master: the next frame for slave `id` (within one epoch, at most
    /// `haTransferBatchSize`), marked sent; `None` when it has everything, has not reported,
    /// or this broker is no master or has no epoch.
    pub fn ha_transfer_auto(&mut self, id: SlaveId, now_ms: u64) -> Option<AutoTransferFrame> {
        let from = self.ha.replicas.transfer_from(id)?;
        let (entry, end) = self.epoch_at(from)?;
        let (offset, body) = self.ha_transfer_upto(id, end, now_ms)?;
        Some(AutoTransferFrame {
            offset,
            epoch: wire(entry),
            confirm_offset: self.ha_confirm_offset(),
            body,
        })
    }

    /// Master: an empty frame for slave `id` at where its transfer stands (a heartbeat that
    /// also carries the confirm offset); `None` before its first report.
    #[must_use]
    pub fn ha_heartbeat_auto(&self, id: SlaveId) -> Option<AutoTransferFrame> {
        let offset = self.ha.replicas.transfer_from(id)?;
        let (entry, _) = self.epoch_at(offset)?;
        Some(AutoTransferFrame {
            offset,
            epoch: wire(entry),
            confirm_offset: self.ha_confirm_offset(),
            body: bytes::Bytes::new(),
        })
    }

    /// Slave: the master's handshake. Checks its epoch, cuts this log back to where both
    /// agree, and returns the offset to report (replication resumes there).
    ///
    /// # Errors
    /// [`AutoSlaveError`]: close the connection (and retry later).
    pub fn ha_master_handshake(&mut self, hs: &MasterHandshake) -> Result<u64, AutoSlaveError> {
        if self.ha.role().is_master() {
            return Err(AutoSlaveError::NotSlave);
        }
        let told = u32::try_from(self.ha.epoch()).unwrap_or(u32::MAX);
        let known = self.store.epochs().last_epoch().unwrap_or(0).max(told);
        if hs.epoch < known {
            return Err(AutoSlaveError::StaleMaster {
                master: hs.epoch,
                known,
            });
        }
        let theirs: Vec<EpochEntry> = hs
            .entries
            .iter()
            .map(|e| EpochEntry {
                epoch: e.epoch,
                start_offset: e.start_offset,
            })
            .collect();
        let max = self.store.commit_log_max_offset();
        let point = self
            .store
            .epochs()
            .consistent_point(&theirs, hs.max_offset, max)
            .ok_or(AutoSlaveError::NoConsistentPoint)?;
        tracing::info!(
            master_epoch = hs.epoch,
            master_max = hs.max_offset,
            max,
            point,
            "master handshake: consistent point"
        );
        self.store.replica_restart();
        Ok(self.store.truncate_to(point)?)
    }

    /// Slave: a transfer frame. Records a new epoch, appends the bytes, and lowers reads to
    /// the master's confirm offset; returns the write position to report.
    ///
    /// # Errors
    /// [`AutoSlaveError`]: close the connection and start over.
    pub fn ha_append_auto(
        &mut self,
        frame: &AutoTransferFrame,
        now_ms: u64,
    ) -> Result<u64, AutoSlaveError> {
        if self.ha.role().is_master() {
            return Err(ReplicaError::NotWritable(NotWritable::ShutDown).into());
        }
        if self.store.epochs().last_epoch() != Some(frame.epoch.epoch) {
            self.store
                .append_epoch(frame.epoch.epoch, frame.epoch.start_offset)?;
        }
        let end = if frame.body.is_empty() {
            self.store.commit_log_max_offset()
        } else {
            self.store
                .append_replicated(frame.offset, &frame.body, now_ms)?
                .end
        };
        let confirm = frame.confirm_offset.min(self.store.commit_log_max_offset());
        self.set_confirm_offset(confirm, now_ms);
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use bytes::Bytes;
    use store_core::storage::MemStorage;

    use super::*;
    use crate::broker::test_support::{open_with_client, send_message, small_store};
    use crate::broker::BrokerConfig;
    use crate::ha::{BrokerRole, HaConfig};
    use crate::role::{ConnId, Role};

    const NOW: u64 = 1_700_000_000_000;

    fn broker(broker_id: i64) -> Broker<MemStorage> {
        let config = BrokerConfig {
            broker_id,
            store: small_store(),
            ha: HaConfig {
                controller_mode: true,
                all_ack_in_sync_state_set: true,
                ..HaConfig::default()
            },
            ..BrokerConfig::default()
        };
        open_with_client(&MemStorage::new(), &config, NOW)
    }

    /// What the controller would make of `b`: master of `epoch`, alone in its set.
    fn make_master(b: &mut Broker<MemStorage>, epoch: u32) {
        let id = u64::try_from(b.config().broker_id).unwrap();
        let start = b.store.commit_log_max_offset();
        b.store.append_epoch(epoch, start).unwrap();
        b.ha.replicas.set_self_broker_id(id);
        b.ha.replicas.set_epoch_start_offset(start);
        b.ha.replicas
            .set_sync_state_set(BTreeSet::from([id]), epoch);
        b.change_role(BrokerRole::SyncMaster, u64::from(epoch), NOW)
            .unwrap();
    }

    fn send(b: &mut Broker<MemStorage>, bodies: &[&'static [u8]]) {
        for body in bodies {
            b.handle_command(
                ConnId(1),
                send_message("Demo", 0, "", Bytes::from_static(body)),
                NOW,
            );
        }
        b.handle_turn_end(NOW);
        while b.poll_transmit().is_some() {}
    }

    /// Connects `slave` to `master` and streams until the slave has everything.
    fn replicate(master: &mut Broker<MemStorage>, slave: &mut Broker<MemStorage>) {
        let id = master.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        let broker_id = u64::try_from(slave.config().broker_id).unwrap();
        let hs = master.ha_slave_handshake(id, broker_id);
        let mut end = slave.ha_master_handshake(&hs).unwrap();
        master.ha_slave_report(id, end, NOW);
        while let Some(frame) = master.ha_transfer_auto(id, NOW) {
            end = slave.ha_append_auto(&frame, NOW).unwrap();
            master.ha_slave_report(id, end, NOW);
        }
        master.handle_turn_end(NOW);
        let beat = master.ha_heartbeat_auto(id).unwrap();
        slave.ha_append_auto(&beat, NOW).unwrap();
        master.ha_slave_closed(id, NOW);
    }

    fn log(b: &Broker<MemStorage>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = b.store.commit_log_min_offset();
        while let Some(chunk) = b.store.commit_log_data(at) {
            at += chunk.len() as u64;
            out.extend_from_slice(&chunk);
        }
        out
    }

    #[test]
    fn a_returning_master_cuts_its_diverged_tail_at_the_epoch_boundary_then_matches() {
        let mut a = broker(1);
        let mut b = broker(2);
        make_master(&mut a, 1);
        send(&mut a, &[b"one", b"two", b"three"]);
        replicate(&mut a, &mut b);
        assert_eq!(log(&b), log(&a));
        let agreed = a.store.commit_log_max_offset();
        assert_eq!(
            b.store.confirm_offset(),
            agreed,
            "the master's confirm offset"
        );
        // A writes a tail B never gets, then fails; B is elected for epoch 2 and writes.
        send(&mut a, &[b"lost-1", b"lost-2"]);
        assert!(a.store.commit_log_max_offset() > agreed);
        make_master(&mut b, 2);
        send(&mut b, &[b"four", b"five-five"]);
        // A comes back as B's slave.
        a.change_role(BrokerRole::Slave, 2, NOW).unwrap();
        let id = b.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        let point = a.ha_master_handshake(&b.ha_slave_handshake(id, 1)).unwrap();
        assert_eq!(point, agreed, "cut at the start of epoch 2");
        assert_eq!(a.store.commit_log_max_offset(), agreed);
        b.ha_slave_closed(id, NOW);
        replicate(&mut b, &mut a);
        assert_eq!(log(&a), log(&b), "byte for byte");
        assert_eq!(a.store.epochs(), b.store.epochs());
        assert_eq!(a.store.max_offset_in_queue("Demo", 0), 5);
    }

    #[test]
    fn a_slave_refuses_a_master_older_than_the_epoch_it_knows() {
        let mut a = broker(1);
        let mut b = broker(2);
        make_master(&mut a, 3);
        b.change_role(BrokerRole::Slave, 4, NOW).unwrap();
        let id = a.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        let hs = a.ha_slave_handshake(id, 2);
        assert!(matches!(
            b.ha_master_handshake(&hs),
            Err(AutoSlaveError::StaleMaster {
                master: 3,
                known: 4
            })
        ));
        assert!(matches!(
            a.ha_master_handshake(&hs),
            Err(AutoSlaveError::NotSlave)
        ));
    }

    #[test]
    fn a_held_send_waits_for_every_member_and_too_small_a_set_is_refused() {
        let mut a = broker(1);
        let mut b = broker(2);
        make_master(&mut a, 1);
        a.ha.config.min_in_sync_replicas = 2;
        let before = a.store.commit_log_max_offset();
        a.handle_command(
            ConnId(1),
            send_message("Demo", 0, "", Bytes::from_static(b"x")),
            NOW,
        );
        a.handle_turn_end(NOW);
        let answer = std::iter::from_fn(|| a.poll_transmit())
            .find_map(|t| match t {
                crate::role::Transmit::Send { cmd, .. } => Some(cmd),
                _ => None,
            })
            .unwrap();
        assert_eq!(answer.code, crate::ResponseCode::SystemError.value());
        assert_eq!(
            answer.remark.as_deref(),
            Some("in-sync replicas not enough")
        );
        // Refused before the write, as Java does: nothing to confirm and serve later.
        assert_eq!(a.store.commit_log_max_offset(), before);
        // With broker 2 in the set the send is held until it acks.
        replicate(&mut a, &mut b);
        a.ha.replicas.set_sync_state_set(BTreeSet::from([1, 2]), 2);
        let id = a.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        let hs = a.ha_slave_handshake(id, 2);
        let end = b.ha_master_handshake(&hs).unwrap();
        a.ha_slave_report(id, end, NOW);
        a.handle_command(
            ConnId(1),
            send_message("Demo", 0, "", Bytes::from_static(b"y")),
            NOW,
        );
        a.handle_turn_end(NOW);
        assert!(std::iter::from_fn(|| a.poll_transmit()).next().is_none());
        assert!(a.ha_confirm_offset() < a.store.commit_log_max_offset());
        while let Some(frame) = a.ha_transfer_auto(id, NOW) {
            let end = b.ha_append_auto(&frame, NOW).unwrap();
            a.ha_slave_report(id, end, NOW);
        }
        a.handle_turn_end(NOW);
        let codes: Vec<i32> = std::iter::from_fn(|| a.poll_transmit())
            .filter_map(|t| match t {
                crate::role::Transmit::Send { cmd, .. } => Some(cmd.code),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec![crate::ResponseCode::Success.value()]);
        assert_eq!(a.store.confirm_offset(), a.store.commit_log_max_offset());
    }

    #[test]
    fn a_pull_parked_on_an_unconfirmed_message_is_answered_when_the_set_confirms_it() {
        use crate::broker::test_support::{request, sent_to};
        use crate::RequestCode;

        let mut a = broker(1);
        let mut b = broker(2);
        make_master(&mut a, 1);
        send(&mut a, &[b"first"]);
        replicate(&mut a, &mut b);
        a.ha.replicas.set_sync_state_set(BTreeSet::from([1, 2]), 2);
        let id = a.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        let end = b.ha_master_handshake(&a.ha_slave_handshake(id, 2)).unwrap();
        a.ha_slave_report(id, end, NOW);
        a.handle_connected(ConnId(2), "127.0.0.1:50000".parse().unwrap(), None, NOW);
        // A consumer parks a long poll at the queue's end.
        a.handle_command(
            ConnId(2),
            request(
                RequestCode::PullMessage,
                &[
                    ("consumerGroup", "cg"),
                    ("topic", "Demo"),
                    ("queueId", "0"),
                    ("queueOffset", "1"),
                    ("maxMsgNums", "32"),
                    ("sysFlag", "6"),
                    ("commitOffset", "-1"),
                    ("suspendTimeoutMillis", "15000"),
                    ("subscription", "*"),
                    ("subVersion", "0"),
                ],
            ),
            NOW,
        );
        a.handle_turn_end(NOW);
        assert!(sent_to(
            &std::iter::from_fn(|| a.poll_transmit()).collect::<Vec<_>>(),
            2
        )
        .is_empty());
        // Stored but held for broker 2: not readable yet, so the pull stays parked.
        a.handle_command(
            ConnId(1),
            send_message("Demo", 0, "", Bytes::from_static(b"z")),
            NOW,
        );
        a.handle_turn_end(NOW);
        let out: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert!(sent_to(&out, 2).is_empty(), "read before it was confirmed");
        assert_eq!(a.held_pulls(), 1);
        // Broker 2 acks: the confirm offset moves and the parked pull gets the message in
        // the same turn, with no further put.
        while let Some(frame) = a.ha_transfer_auto(id, NOW) {
            let end = b.ha_append_auto(&frame, NOW).unwrap();
            a.ha_slave_report(id, end, NOW);
        }
        a.handle_turn_end(NOW);
        let out: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let woken = sent_to(&out, 2);
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].code, crate::ResponseCode::Success.value());
        assert_eq!(a.held_pulls(), 0);
    }
}
