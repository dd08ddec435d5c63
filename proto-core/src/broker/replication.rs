//! The broker's side of master/slave replication (RocketMQ's default HA): what the HA adapter
//! calls on the broker (`ha_*`), how SYNC_MASTER sends wait for slave acks, and a slave's
//! periodic copy of its master's topic configs (Java's `SlaveSynchronize`, topics only).
//!
//! A SYNC_MASTER send that waits for its store result (`WAIT` not `false`) is held until
//! `HaConfig::slave_acks_needed` slaves report its end offset; when too few slaves are in sync
//! it is answered SLAVE_NOT_AVAILABLE at once, and one still waiting after `syncFlushTimeout`
//! is answered FLUSH_SLAVE_TIMEOUT (the message is stored either way, as in Java). Under
//! SYNC_FLUSH the same hold also waits for the local flush.
//!
//! A slave's store refuses sends (SERVICE_NOT_AVAILABLE, "slave mode"), serves pulls from the
//! copied log, and learns its master's addresses from the name server's REGISTER_BROKER answer
//! unless `haMasterAddress` names one.
//!
//! Left out: consumer offsets, delay offsets and subscription groups are not copied to the
//! slave; suggestWhichBrokerId; controller mode (the role and epoch can be changed at runtime
//! with [`Broker::change_role`] for it).

use bytes::Bytes;
use core::net::SocketAddr;

use store_core::format::properties::{self, Properties};
use store_core::status::AppendInfo;
use store_core::storage::Storage;
use store_core::store::ReplicaError;

use super::Broker;
use crate::body::{TopicConfigAndMappingSerializeWrapper, TopicConfigSerializeWrapper};
use crate::ha::master::{Admission, AwaitReplicaAck, Outcome, SlaveId, SlaveStatus};
use crate::ha::{BrokerRole, HaView};
use crate::role::{ConnId, Transmit};
use crate::{RemotingCommand, RequestCode, ResponseCode};

/// How often a slave copies its master's topic configs (Java: every 10 s).
const SLAVE_SYNC_INTERVAL_MS: u64 = 10_000;

/// A send reply held for slave acks.
#[derive(Debug)]
pub(super) struct HeldSend {
    pub(super) conn: ConnId,
    pub(super) response: RemotingCommand,
}

impl<S: Storage + Clone> Broker<S> {
    /// The broker's role now.
    pub fn broker_role(&self) -> BrokerRole {
        self.ha.role()
    }

    /// What the HA adapter follows: role, epoch, the master to copy from, the write position.
    pub fn ha_view(&self) -> HaView {
        self.ha.view(self.store.commit_log_max_offset())
    }

    /// Changes role at runtime (a controller promoting a slave or demoting a master). Replies
    /// held for slave acks are answered FLUSH_SLAVE_TIMEOUT when the broker stops being a
    /// SYNC_MASTER.
    pub fn change_role(&mut self, role: BrokerRole, epoch: u64, now_ms: u64) {
        if !self.ha.change_role(role, epoch) {
            return;
        }
        tracing::info!(role = role.name(), epoch, "broker role changed");
        self.store.set_slave(!role.is_master());
        if role != BrokerRole::SyncMaster {
            self.release_all_replicas();
        }
        self.ha.next_sync_ms = now_ms;
    }

    /// A slave connected to the HA port.
    pub fn ha_slave_connected(&mut self, remote: SocketAddr, now_ms: u64) -> SlaveId {
        let id = self.ha.replicas.connected(remote, now_ms);
        tracing::info!(%remote, slave = id.0, "slave connected");
        id
    }

    /// A slave reported its commit log's write position.
    pub fn ha_slave_report(&mut self, id: SlaveId, offset: u64, now_ms: u64) {
        let min = self.store.commit_log_min_offset();
        self.ha.replicas.report(id, offset, min, now_ms);
        self.release_replicated(now_ms);
    }

    /// A slave's HA connection closed.
    pub fn ha_slave_closed(&mut self, id: SlaveId, _now_ms: u64) {
        tracing::info!(slave = id.0, "slave disconnected");
        self.ha.replicas.closed(id);
    }

    /// The next bytes to send to slave `id` (at most `haTransferBatchSize`, within one
    /// segment) with their offset, and marks them sent; `None` when it has everything or has
    /// not reported yet, or when this broker is no master.
    pub fn ha_transfer(&mut self, id: SlaveId) -> Option<(u64, Bytes)> {
        if !self.ha.role().is_master() {
            return None;
        }
        let from = self.ha.replicas.transfer_from(id)?;
        let mut data = self.store.commit_log_data(from)?;
        data.truncate(self.ha.config.ha_transfer_batch_size.max(1) as usize);
        self.ha.replicas.transferred(id, from + data.len() as u64);
        Some((from, data))
    }

    /// The attached slaves (master side).
    pub fn ha_slaves(&self) -> Vec<SlaveStatus> {
        self.ha.replicas.status()
    }

    /// A slave connected to its master: forgets partial bytes of an earlier connection and
    /// returns the offset to report first.
    pub fn ha_master_connected(&mut self) -> u64 {
        self.store.replica_restart()
    }

    /// Bytes from the master at `offset`; returns the write position to report.
    ///
    /// # Errors
    /// [`ReplicaError`]: the slave closes the connection and starts over.
    pub fn ha_append(
        &mut self,
        offset: u64,
        data: &[u8],
        now_ms: u64,
    ) -> Result<u64, ReplicaError> {
        if self.ha.role().is_master() {
            return Err(ReplicaError::NotWritable(
                store_core::status::NotWritable::ShutDown,
            ));
        }
        let appended = self.store.append_replicated(offset, data, now_ms)?;
        Ok(appended.end)
    }

    /// After a send stored `wrote`: holds `response` for slave acks when SYNC_MASTER needs
    /// them (returns `None`), or returns it, marked SLAVE_NOT_AVAILABLE when too few slaves
    /// are in sync. `flush_needed` is the SYNC_FLUSH wait the hold also covers.
    pub(super) fn await_replicas(
        &mut self,
        conn: ConnId,
        mut response: RemotingCommand,
        wrote: &[AppendInfo],
        flush_needed: Option<u64>,
        message_properties: Option<&str>,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let waits = Properties::parse(message_properties.unwrap_or_default())
            .get(properties::WAIT)
            .is_none_or(|v| v != "false");
        let Some(last) = wrote.last() else {
            return Some(response);
        };
        if !self.ha.needs_acks() || !waits {
            return Some(response);
        }
        let end = last.phys_offset + u64::from(last.wrote_bytes);
        let needed = self.ha.config.slave_acks_needed();
        let max = self.store.commit_log_max_offset();
        match self
            .ha
            .replicas
            .admit(needed, max, self.ha.config.ha_max_gap_not_in_sync)
        {
            Admission::AwaitReplicaAck => {
                self.ha.replicas.hold(AwaitReplicaAck {
                    payload: HeldSend { conn, response },
                    after_offset: end,
                    after_sync: flush_needed,
                    deadline_ms: now_ms + self.config.sync_flush_timeout_ms,
                });
                None
            }
            Admission::SlaveNotAvailable => {
                tracing::debug!(end, slaves = self.ha.replicas.len(), "no slave in sync");
                response.code = ResponseCode::SlaveNotAvailable.value();
                Some(response)
            }
        }
    }

    /// Answers the held sends that enough slaves acknowledged or whose deadline passed.
    pub(super) fn release_replicated(&mut self, now_ms: u64) {
        if self.ha.replicas.held() == 0 {
            return;
        }
        let needed = self.ha.config.slave_acks_needed();
        let flushed = self.store.flushed_offset();
        for (held, outcome) in self.ha.replicas.release(needed, flushed, now_ms) {
            self.answer_held_send(held, outcome);
        }
    }

    /// Answers every held send as timed out (shutdown, or no longer SYNC_MASTER).
    pub(super) fn release_all_replicas(&mut self) {
        for (held, outcome) in self.ha.replicas.release_all() {
            self.answer_held_send(held, outcome);
        }
    }

    /// Periodic work: a slave copies its master's topic configs.
    pub(super) fn replication_timeout(&mut self, now_ms: u64) {
        self.release_replicated(now_ms);
        if self.ha.role().is_master() || now_ms < self.ha.next_sync_ms {
            return;
        }
        let Some(master) = self.ha.master_addr.clone() else {
            return;
        };
        self.ha.next_sync_ms = now_ms + SLAVE_SYNC_INTERVAL_MS;
        let opaque = self.next_opaque();
        self.ha.sync_opaque = Some(opaque);
        let cmd = RemotingCommand::request(RequestCode::GetAllTopicConfig.value(), opaque);
        self.transmits
            .push_back(Transmit::Request { addr: master, cmd });
    }

    /// When `replication_timeout` next has work.
    pub(super) fn replication_deadline(&self) -> Option<u64> {
        let sync = (!self.ha.role().is_master() && self.ha.master_addr.is_some())
            .then_some(self.ha.next_sync_ms);
        sync.into_iter()
            .chain(self.ha.replicas.next_deadline())
            .min()
    }

    /// A response on a dialled connection: the master's topic configs (consumed, `true`), or a
    /// REGISTER_BROKER answer naming the master (noted, `false`: the caller goes on with it).
    pub(super) fn handle_replication_response(&mut self, cmd: &RemotingCommand) -> bool {
        if self.ha.sync_opaque.is_some() && self.ha.sync_opaque == Some(cmd.opaque) {
            self.ha.sync_opaque = None;
            if cmd.code != ResponseCode::Success.value() {
                tracing::warn!(code = cmd.code, remark = ?cmd.remark, "master refused the topic config copy");
                return true;
            }
            match TopicConfigAndMappingSerializeWrapper::decode(&cmd.body) {
                Ok(copy) => self.topics.load(TopicConfigSerializeWrapper {
                    data_version: copy.data_version,
                    topic_config_table: copy.topic_config_table,
                }),
                Err(e) => tracing::warn!(error = %e, "master's topic configs unreadable"),
            }
            return true;
        }
        if !self.ha.role().is_master() {
            self.ha
                .learn_master(cmd.ext("haServerAddr"), cmd.ext("masterAddr"));
        }
        false
    }

    fn answer_held_send(&mut self, held: HeldSend, outcome: Outcome) {
        let HeldSend { conn, mut response } = held;
        match outcome {
            Outcome::Replicated => {}
            Outcome::SlaveTimeout => {
                tracing::warn!(?conn, "slave did not acknowledge in time");
                response.code = ResponseCode::FlushSlaveTimeout.value();
            }
            Outcome::FlushTimeout => response.code = ResponseCode::FlushDiskTimeout.value(),
        }
        self.transmits.push_back(Transmit::Send {
            conn,
            cmd: response,
        });
    }
}
