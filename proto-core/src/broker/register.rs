//! Registration with name servers (protocol reference §18): REGISTER_BROKER to every name
//! server at start, every `registerNameServerPeriod` and at once after a topic change, and
//! UNREGISTER_BROKER at shutdown. Each goes out as a `Transmit::Request`; the driver dials.
//!
//! Every registration carries the whole topic table (Java's forced full registration); the
//! name server treats it the same as an incremental one. What it leaves out: compressed bodies
//! (`compressedRegister`), QUERY_DATA_VERSION probing, and BROKER_HEARTBEAT (acting master only).

use store_core::format::record::body_crc;
use store_core::storage::Storage;

use super::Broker;
use crate::body::{KVTable, PermName, RegisterBrokerBody};
use crate::header::{encode_header, RegisterBrokerRequestHeader, UnRegisterBrokerRequestHeader};
use crate::role::{ConnId, Transmit};
use crate::{RemotingCommand, RequestCode, ResponseCode};

/// Java `registerBrokerTimeoutMills` doubles as the heartbeat timeout name servers apply.
const HEARTBEAT_TIMEOUT_MS: i64 = 120_000;

impl<S: Storage + Clone> Broker<S> {
    /// REGISTER_BROKER to every configured name server.
    pub(super) fn register_all(&mut self) {
        if self.config.namesrv_addrs.is_empty() {
            return;
        }
        let mut wrapper = self.topics.to_register();
        let broker_perm = self.config.broker_permission;
        if broker_perm & (PermName::PERM_READ | PermName::PERM_WRITE)
            != PermName::PERM_READ | PermName::PERM_WRITE
        {
            for config in wrapper.topic_config_table.values_mut() {
                config.perm &= broker_perm | PermName::PERM_INHERIT;
            }
        }
        let body = RegisterBrokerBody {
            filter_server_list: Vec::new(),
            topic_config_serialize_wrapper: wrapper,
        }
        .encode(false);
        let header = RegisterBrokerRequestHeader {
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.config.broker_addr(),
            cluster_name: self.config.broker_cluster_name.clone(),
            ha_server_addr: format!("{}:{}", self.config.broker_ip1, self.config.ha_listen_port),
            broker_id: self.name_server_broker_id(),
            heartbeat_timeout_millis: Some(HEARTBEAT_TIMEOUT_MS),
            enable_acting_master: Some(false),
            compressed: false,
            body_crc32: body_crc(&body),
        };
        let body = bytes::Bytes::from(body);
        for addr in self.config.namesrv_addrs.clone() {
            let mut cmd =
                RemotingCommand::request(RequestCode::RegisterBroker.value(), self.next_opaque());
            encode_header(&mut cmd, &header);
            cmd.body = body.clone();
            self.transmits.push_back(Transmit::Request { addr, cmd });
        }
        tracing::debug!(
            topics = self.topics.len(),
            namesrvs = self.config.namesrv_addrs.len(),
            "registering with name servers"
        );
    }

    /// UNREGISTER_BROKER to every configured name server (shutdown).
    pub(super) fn unregister_all(&mut self) {
        let header = UnRegisterBrokerRequestHeader {
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.config.broker_addr(),
            cluster_name: self.config.broker_cluster_name.clone(),
            broker_id: self.name_server_broker_id(),
        };
        for addr in self.config.namesrv_addrs.clone() {
            let mut cmd =
                RemotingCommand::request(RequestCode::UnregisterBroker.value(), self.next_opaque());
            encode_header(&mut cmd, &header);
            self.transmits.push_back(Transmit::Request { addr, cmd });
        }
    }

    /// A response on a connection we dialled: REGISTER_BROKER answers may carry the order-topic
    /// table (§17.6); failures are logged, and the next period retries.
    pub(super) fn handle_response(&mut self, conn: ConnId, cmd: &RemotingCommand, now_ms: u64) {
        if self.handle_controller_response(cmd, now_ms) || self.handle_replication_response(cmd) {
            return;
        }
        if cmd.code != ResponseCode::Success.value() {
            tracing::warn!(?conn, code = cmd.code, remark = ?cmd.remark, "name server refused a request");
            return;
        }
        if cmd.body.is_empty() {
            return;
        }
        match KVTable::decode(&cmd.body) {
            Ok(table) => {
                let order_topics: Vec<&str> = table.table.keys().map(String::as_str).collect();
                self.topics.update_order_topics(order_topics, now_ms);
            }
            Err(e) => tracing::debug!(?conn, error = %e, "response body is not a KV table"),
        }
    }
}
