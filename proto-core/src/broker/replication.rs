//! The broker's side of master/slave replication (RocketMQ's default HA): what the HA adapter
//! calls on the broker (`ha_*`), how SYNC_MASTER sends wait for slave acks, and a slave's
//! periodic copy of its master's topic configs and consumer offsets (Java's `SlaveSynchronize`
//! without delay offsets and subscription groups).
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
//! Left out: delay offsets and subscription groups are not copied to the slave; suggestWhichBrokerId; controller mode (the role and epoch can be changed at runtime
//! with [`Broker::change_role`] for it).

use bytes::Bytes;
use core::net::SocketAddr;

use store_core::format::properties::{self, find_property};
use store_core::status::AppendInfo;
use store_core::storage::Storage;
use store_core::store::ReplicaError;

use super::Broker;
use crate::body::{
    ConsumerOffsetSerializeWrapper, TopicConfigAndMappingSerializeWrapper,
    TopicConfigSerializeWrapper,
};
use crate::ha::master::{AckRule, Admission, AwaitReplicaAck, Outcome, SlaveId, SlaveStatus};
use crate::ha::{BrokerRole, HaView, StaleEpoch};
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
    ///
    /// # Errors
    /// [`StaleEpoch`]: `epoch` is older than the broker's; nothing changed.
    pub fn change_role(
        &mut self,
        role: BrokerRole,
        epoch: u64,
        now_ms: u64,
    ) -> Result<(), StaleEpoch> {
        if !self.ha.change_role(role, epoch)? {
            return Ok(());
        }
        tracing::info!(role = role.name(), epoch, "broker role changed");
        self.store.set_slave(!role.is_master());
        if role != BrokerRole::SyncMaster {
            self.release_all_replicas();
        }
        self.ha.next_sync_ms = now_ms;
        Ok(())
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
        let max = self.store.commit_log_max_offset();
        self.ha.replicas.report(id, offset, (min, max), now_ms);
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
    pub fn ha_transfer(&mut self, id: SlaveId, now_ms: u64) -> Option<(u64, Bytes)> {
        self.ha_transfer_upto(id, u64::MAX, now_ms)
    }

    /// [`Broker::ha_transfer`] that stops before `limit` (an epoch's end in controller mode).
    pub(super) fn ha_transfer_upto(
        &mut self,
        id: SlaveId,
        limit: u64,
        now_ms: u64,
    ) -> Option<(u64, Bytes)> {
        if !self.ha.role().is_master() {
            return None;
        }
        let from = self.ha.replicas.transfer_from(id)?;
        let mut data = self.store.commit_log_data(from)?;
        let batch = self.ha.config.ha_transfer_batch_size.max(1) as usize;
        let room = usize::try_from(limit.saturating_sub(from)).unwrap_or(usize::MAX);
        data.truncate(batch.min(room));
        if data.is_empty() {
            return None;
        }
        let max = self.store.commit_log_max_offset();
        self.ha
            .replicas
            .transferred(id, from + data.len() as u64, max, now_ms);
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

    /// Before a send is stored: in controller mode, a send that must wait for replicas is
    /// refused while the sync state set has fewer than `minInSyncReplicas` members, as Java's
    /// `CommitLog` refuses it before writing (stored anyway, it would become readable once
    /// confirmed although its producer was told it failed, and a retry would duplicate it).
    pub(super) fn check_in_sync_replicas(
        &self,
        message_properties: Option<&str>,
    ) -> Result<(), (ResponseCode, String)> {
        if !self.ha.config.controller_mode || !self.ha.needs_acks() {
            return Ok(());
        }
        let raw = message_properties.unwrap_or_default().as_bytes();
        if find_property(raw, properties::WAIT) == Some(b"false") {
            return Ok(());
        }
        let min = self.ha.config.min_in_sync_replicas as usize;
        match self.ha.replicas.admit_in_sync_state_set(min) {
            // Java's SendMessageProcessor answers IN_SYNC_REPLICAS_NOT_ENOUGH this way.
            Admission::InSyncReplicasNotEnough => Err((
                ResponseCode::SystemError,
                "in-sync replicas not enough".to_string(),
            )),
            Admission::AwaitReplicaAck | Admission::SlaveNotAvailable => Ok(()),
        }
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
        let Some(last) = wrote.last() else {
            return Some(response);
        };
        // Role first: an ASYNC_MASTER send never reads its properties here.
        if !self.ha.needs_acks() {
            return Some(response);
        }
        let raw = message_properties.unwrap_or_default().as_bytes();
        if find_property(raw, properties::WAIT) == Some(b"false") {
            return Some(response);
        }
        let end = last.phys_offset + u64::from(last.wrote_bytes);
        let needed = self.ha.config.slave_acks_needed();
        let max = self.store.commit_log_max_offset();
        let admission = if self.ha.config.controller_mode {
            let min = self.ha.config.min_in_sync_replicas as usize;
            self.ha.replicas.admit_in_sync_state_set(min)
        } else {
            self.ha
                .replicas
                .admit(needed, max, self.ha.config.ha_max_gap_not_in_sync)
        };
        match admission {
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
            Admission::InSyncReplicasNotEnough => {
                // `check_in_sync_replicas` refused this before the write; the set cannot have
                // shrunk since, within the same command.
                response.code = ResponseCode::SystemError.value();
                response.remark = Some("in-sync replicas not enough".into());
                Some(response)
            }
        }
    }

    /// Which acks release a held send: every sync state set member in controller mode with
    /// `allAckInSyncStateSet`, else `HaConfig::slave_acks_needed` slaves.
    fn ack_rule(&self) -> AckRule {
        if self.ha.config.controller_mode && self.ha.config.all_ack_in_sync_state_set {
            AckRule::AllInSyncStateSet
        } else {
            AckRule::Slaves(self.ha.config.slave_acks_needed())
        }
    }

    /// Answers the held sends that enough slaves acknowledged or whose deadline passed.
    pub(super) fn release_replicated(&mut self, now_ms: u64) {
        self.refresh_confirm_offset(now_ms);
        if self.ha.replicas.held() == 0 {
            return;
        }
        let rule = self.ack_rule();
        let flushed = self.store.flushed_offset();
        for (held, outcome) in self.ha.replicas.release(rule, flushed, now_ms) {
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
        self.transmits.push_back(Transmit::Request {
            addr: master.clone(),
            cmd,
        });
        let opaque = self.next_opaque();
        self.ha.offset_sync_opaque = Some(opaque);
        let cmd = RemotingCommand::request(RequestCode::GetAllConsumerOffset.value(), opaque);
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

    /// A response on a dialled connection: the master's topic configs or consumer offsets
    /// (consumed, `true`), or a
    /// REGISTER_BROKER answer naming the master (noted, `false`: the caller goes on with it).
    pub(super) fn handle_replication_response(&mut self, cmd: &RemotingCommand) -> bool {
        if self.ha.sync_opaque == Some(cmd.opaque) {
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
        if self.ha.offset_sync_opaque == Some(cmd.opaque) {
            self.ha.offset_sync_opaque = None;
            if cmd.code != ResponseCode::Success.value() {
                tracing::warn!(code = cmd.code, remark = ?cmd.remark, "master refused the consumer offset copy");
                return true;
            }
            // The master's table is the truth while it lives (Java's slave takes it whole too).
            match ConsumerOffsetSerializeWrapper::decode(&cmd.body) {
                Ok(copy) => self.offsets.load(copy),
                Err(e) => tracing::warn!(error = %e, "master's consumer offsets unreadable"),
            }
            return true;
        }
        // In controller mode the controller names the master; the name server's answer only
        // tells that master's HA address.
        if !self.ha.role().is_master() && self.name_server_master_agrees(cmd.ext("masterAddr")) {
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

#[cfg(test)]
mod tests {
    use store_core::index::IndexConfig;
    use store_core::storage::MemStorage;

    use super::*;
    use crate::ha::HaConfig;
    use crate::role::Role;

    const NOW: u64 = 1_700_000_000_000;
    const PRODUCER: ConnId = ConnId(1);

    fn broker(role: BrokerRole) -> Broker<MemStorage> {
        let mut config = super::super::BrokerConfig {
            namesrv_addrs: vec!["127.0.0.1:9876".into()],
            ha: HaConfig {
                role,
                ..HaConfig::default()
            },
            ..super::super::BrokerConfig::default()
        };
        config.store.segment_size = 1 << 20;
        config.store.index = IndexConfig {
            max_hash_slot_num: 64,
            max_index_num: 256,
        };
        let (mut b, _) = Broker::new(config, MemStorage::new(), NOW).unwrap();
        b.handle_timeout(NOW);
        b.handle_connected(PRODUCER, "127.0.0.1:50000".parse().unwrap(), None, NOW);
        drain(&mut b);
        b
    }

    fn drain(b: &mut Broker<MemStorage>) -> Vec<Transmit> {
        b.handle_turn_end(NOW);
        std::iter::from_fn(|| b.poll_transmit()).collect()
    }

    /// Responses to the producer among `transmits`: (opaque, code).
    fn answers(transmits: &[Transmit]) -> Vec<(i32, i32)> {
        transmits
            .iter()
            .filter_map(|t| match t {
                Transmit::Send { conn, cmd } if *conn == PRODUCER => Some((cmd.opaque, cmd.code)),
                _ => None,
            })
            .collect()
    }

    fn send(b: &mut Broker<MemStorage>, opaque: i32, body: &'static [u8], now: u64) {
        let mut cmd = RemotingCommand::request(RequestCode::SendMessage.value(), opaque);
        for (k, v) in [
            ("producerGroup", "pg"),
            ("topic", "Demo"),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", "0"),
            ("sysFlag", "0"),
            ("bornTimestamp", "1700000000000"),
            ("flag", "0"),
        ] {
            cmd.ext_fields_mut().insert(k, v);
        }
        b.handle_command(PRODUCER, cmd.with_body(body), now);
    }

    /// Streams what `master` has for `id` into `slave`; returns the slave's new end.
    fn pump(master: &mut Broker<MemStorage>, id: SlaveId, slave: &mut Broker<MemStorage>) -> u64 {
        let mut end = slave.ha_master_connected();
        while let Some((offset, data)) = master.ha_transfer(id, NOW) {
            end = slave.ha_append(offset, &data, NOW).unwrap();
        }
        end
    }

    #[test]
    fn a_sync_master_without_a_slave_answers_slave_not_available_and_keeps_the_message() {
        let mut m = broker(BrokerRole::SyncMaster);
        send(&mut m, 7, b"lonely", NOW);
        let t = drain(&mut m);
        assert_eq!(
            answers(&t),
            vec![(7, ResponseCode::SlaveNotAvailable.value())]
        );
        assert_eq!(m.store().max_offset_in_queue("Demo", 0), 1);
    }

    #[test]
    fn an_async_master_answers_at_once_with_or_without_slaves() {
        let mut m = broker(BrokerRole::AsyncMaster);
        send(&mut m, 1, b"x", NOW);
        assert_eq!(
            answers(&drain(&mut m)),
            vec![(1, ResponseCode::Success.value())]
        );
    }

    #[test]
    fn a_sync_master_answers_once_its_slave_reports_the_message_and_the_slave_matches() {
        let mut m = broker(BrokerRole::SyncMaster);
        let mut s = broker(BrokerRole::Slave);
        let id = m.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        let start = s.ha_master_connected();
        m.ha_slave_report(id, start, NOW);
        send(&mut m, 1, b"first", NOW);
        send(&mut m, 2, b"second", NOW);
        assert!(answers(&drain(&mut m)).is_empty(), "held for the slave");
        let end = pump(&mut m, id, &mut s);
        assert_eq!(end, m.store().commit_log_max_offset());
        m.ha_slave_report(id, end, NOW + 1);
        let t = drain(&mut m);
        let ok = ResponseCode::Success.value();
        assert_eq!(answers(&t), vec![(1, ok), (2, ok)]);
        assert_eq!(s.store().max_offset_in_queue("Demo", 0), 2);
        // The slave refuses sends itself.
        send(&mut s, 3, b"to-slave", NOW);
        let t = drain(&mut s);
        assert_eq!(
            answers(&t),
            vec![(3, ResponseCode::ServiceNotAvailable.value())]
        );
    }

    #[test]
    fn a_slave_that_never_acknowledges_makes_flush_slave_timeout() {
        let mut m = broker(BrokerRole::SyncMaster);
        let id = m.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        m.ha_slave_report(id, 0, NOW);
        send(&mut m, 1, b"x", NOW);
        assert!(answers(&drain(&mut m)).is_empty());
        let deadline = NOW + m.config().sync_flush_timeout_ms;
        assert!(m.next_timeout().is_some_and(|at| at <= deadline));
        m.handle_timeout(deadline - 1);
        assert!(answers(&drain(&mut m)).is_empty());
        m.handle_timeout(deadline);
        let t: Vec<Transmit> = std::iter::from_fn(|| m.poll_transmit()).collect();
        assert_eq!(
            answers(&t),
            vec![(1, ResponseCode::FlushSlaveTimeout.value())]
        );
    }

    #[test]
    fn a_slave_learns_its_master_from_the_name_server_and_copies_its_topics() {
        let mut m = broker(BrokerRole::SyncMaster);
        send(&mut m, 1, b"x", NOW); // creates topic Demo on the master
        drain(&mut m);
        let mut s = broker(BrokerRole::Slave);
        assert_eq!(s.ha_view().master_ha_addr, None);
        let mut answer = RemotingCommand::response_to(
            &RemotingCommand::request(RequestCode::RegisterBroker.value(), 0),
            ResponseCode::Success.value(),
            None,
        );
        answer
            .ext_fields_mut()
            .insert("haServerAddr", "10.0.0.1:10912");
        answer
            .ext_fields_mut()
            .insert("masterAddr", "10.0.0.1:10911");
        s.handle_command(ConnId(99), answer, NOW);
        assert_eq!(
            s.ha_view().master_ha_addr.as_deref(),
            Some("10.0.0.1:10912")
        );
        // The copy of the master's topic configs goes out at once, then every 10 s.
        s.handle_timeout(NOW);
        let t: Vec<Transmit> = std::iter::from_fn(|| s.poll_transmit()).collect();
        let Some(Transmit::Request { addr, cmd }) = t.iter().find(|t| {
            matches!(t, Transmit::Request { cmd, .. } if cmd.code == RequestCode::GetAllTopicConfig.value())
        }) else {
            panic!("no topic copy requested: {t:?}");
        };
        assert_eq!(addr, "10.0.0.1:10911");
        assert!(t.iter().any(|t| matches!(t, Transmit::Request { addr, cmd }
            if cmd.code == RequestCode::GetAllConsumerOffset.value() && addr == "10.0.0.1:10911")));
        assert!(!s.topics().contains("Demo"));
        m.handle_connected(ConnId(5), "127.0.0.1:40001".parse().unwrap(), None, NOW);
        m.handle_command(ConnId(5), cmd.clone(), NOW);
        let reply = std::iter::from_fn(|| m.poll_transmit())
            .find_map(|t| match t {
                Transmit::Send {
                    conn: ConnId(5),
                    cmd,
                } => Some(cmd),
                _ => None,
            })
            .unwrap();
        s.handle_command(ConnId(99), reply, NOW);
        assert!(s.topics().contains("Demo"));
        assert_eq!(s.replication_deadline(), Some(NOW + SLAVE_SYNC_INTERVAL_MS));
    }

    #[test]
    fn a_promoted_slave_takes_sends_and_a_demoted_master_answers_its_held_ones() {
        let mut b = broker(BrokerRole::SyncMaster);
        let id = b.ha_slave_connected("127.0.0.1:40000".parse().unwrap(), NOW);
        b.ha_slave_report(id, 0, NOW);
        send(&mut b, 1, b"x", NOW);
        drain(&mut b);
        b.change_role(BrokerRole::Slave, 1, NOW).unwrap();
        let t: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
        assert_eq!(
            answers(&t),
            vec![(1, ResponseCode::FlushSlaveTimeout.value())]
        );
        assert_eq!(b.ha_view().epoch, 1);
        assert_eq!(b.ha_transfer(id, NOW), None, "a slave streams to nobody");
        b.change_role(BrokerRole::AsyncMaster, 2, NOW).unwrap();
        send(&mut b, 2, b"y", NOW);
        assert_eq!(
            answers(&drain(&mut b)),
            vec![(2, ResponseCode::Success.value())]
        );
    }
}
