//! The controller's responses: how an [`Applied`] outcome or the local state becomes the
//! RocketMQ response a broker or admin tool expects (headers from `header/controller.rs`, body
//! [`SyncStateSet`] or [`BrokerReplicasInfo`]), and the NOTIFY_BROKER_ROLE_CHANGED request.
//!
//! What it leaves out: deciding anything. The callers in `mod.rs` choose what to answer.

use super::heartbeat::Liveness;
use super::state::{Applied, ControllerState, ReplicaInfo};
use crate::body::{BrokerReplicasInfo, ReplicaIdentity, ReplicasInfo, SyncStateSet};
use crate::header::{
    encode_header, AlterSyncStateSetResponseHeader, ElectMasterResponseHeader,
    GetReplicaInfoResponseHeader, NotifyBrokerRoleChangedRequestHeader,
    RegisterBrokerToControllerResponseHeader,
};
use crate::reply::reply;
use crate::{RemotingCommand, RequestCode, ResponseCode};

/// The response to a write request whose command was applied with outcome `applied`.
pub(super) fn applied_response(
    request: &RemotingCommand,
    applied: &Applied,
    liveness: &Liveness,
    now_ms: u64,
) -> RemotingCommand {
    let code = ResponseCode::from_value(applied.code);
    let mut response = RemotingCommand::response_to(request, applied.code, applied.remark.clone());
    let Some(info) = &applied.replica else {
        return response;
    };
    match RequestCode::from_value(request.code) {
        RequestCode::ControllerRegisterBroker if code == ResponseCode::Success => {
            // Like Java, name the master only while it is alive, so a registering broker never
            // follows a master the controller is about to replace.
            let master = info
                .master_broker_id
                .filter(|id| liveness.is_alive(&info.broker_name, *id, now_ms));
            let header = RegisterBrokerToControllerResponseHeader {
                cluster_name: Some(info.cluster_name.clone()),
                broker_name: Some(info.broker_name.clone()),
                master_broker_id: master,
                master_address: master.and(info.master_address.clone()),
                master_epoch: master.map(|_| info.master_epoch),
                sync_state_set_epoch: master.map(|_| info.sync_state_set_epoch),
            };
            encode_header(&mut response, &header);
            response.body = sync_state_set(info).encode().into();
        }
        RequestCode::ControllerAlterSyncStateSet if code == ResponseCode::Success => {
            let header = AlterSyncStateSetResponseHeader {
                new_sync_state_set_epoch: info.sync_state_set_epoch,
            };
            encode_header(&mut response, &header);
            response.body = sync_state_set(info).encode().into();
        }
        RequestCode::ControllerElectMaster
            if matches!(
                code,
                ResponseCode::Success | ResponseCode::ControllerMasterStillExist
            ) =>
        {
            let header = ElectMasterResponseHeader {
                master_broker_id: info.master_broker_id,
                master_address: info.master_address.clone(),
                master_epoch: Some(info.master_epoch),
                sync_state_set_epoch: Some(info.sync_state_set_epoch),
            };
            encode_header(&mut response, &header);
            response.body = sync_state_set(info).encode().into();
        }
        _ => {}
    }
    response
}

/// CONTROLLER_GET_REPLICA_INFO's answer from the local state.
pub(super) fn replica_info_response(
    request: &RemotingCommand,
    state: &ControllerState,
    broker_name: &str,
) -> RemotingCommand {
    let Some(info) = state.replica_info(broker_name) else {
        return reply(
            request,
            ResponseCode::ControllerBrokerMetadataNotExist,
            "Broker metadata is not existed",
        );
    };
    let mut response = RemotingCommand::response_to(request, ResponseCode::Success.value(), None);
    let header = GetReplicaInfoResponseHeader {
        master_broker_id: info.master_broker_id,
        master_address: info.master_address.clone(),
        master_epoch: Some(info.master_epoch),
    };
    encode_header(&mut response, &header);
    response.with_body(sync_state_set(&info).encode())
}

/// CONTROLLER_GET_SYNC_STATE_DATA's body: `names` (every set when empty), with liveness.
pub(super) fn sync_state_data(
    state: &ControllerState,
    names: &[String],
    liveness: &Liveness,
    now_ms: u64,
) -> BrokerReplicasInfo {
    let mut body = BrokerReplicasInfo::default();
    let wanted = |name: &String| names.is_empty() || names.contains(name);
    for name in state.broker_sets.keys().filter(|name| wanted(name)) {
        let Some(info) = state.replica_info(name) else {
            continue;
        };
        let mut entry = ReplicasInfo {
            master_broker_id: info.master_broker_id,
            master_address: info.master_address.clone(),
            master_epoch: info.master_epoch,
            sync_state_set_epoch: info.sync_state_set_epoch,
            ..ReplicasInfo::default()
        };
        for (id, addr) in &info.brokers {
            let identity = ReplicaIdentity {
                broker_name: name.clone(),
                broker_id: *id,
                broker_address: addr.clone(),
                alive: liveness.is_alive(name, *id, now_ms),
            };
            if info.sync_state_set.contains(id) {
                entry.in_sync_replicas.push(identity);
            } else {
                entry.not_in_sync_replicas.push(identity);
            }
        }
        body.replicas_info_table.insert(name.clone(), entry);
    }
    body
}

/// The oneway NOTIFY_BROKER_ROLE_CHANGED request telling a broker of `info`'s set who leads it
/// now (Java sends it oneway too: a lost notice only delays the broker's next poll).
pub(super) fn role_changed_notice(info: &ReplicaInfo, opaque: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::NotifyBrokerRoleChanged.value(), opaque);
    let header = NotifyBrokerRoleChangedRequestHeader {
        master_address: info.master_address.clone(),
        master_epoch: Some(info.master_epoch),
        sync_state_set_epoch: Some(info.sync_state_set_epoch),
        master_broker_id: info.master_broker_id,
        broker_name: Some(info.broker_name.clone()),
    };
    encode_header(&mut cmd, &header);
    cmd.mark_oneway();
    cmd.with_body(sync_state_set(info).encode())
}

fn sync_state_set(info: &ReplicaInfo) -> SyncStateSet {
    SyncStateSet {
        sync_state_set: info.sync_state_set.clone(),
        sync_state_set_epoch: info.sync_state_set_epoch,
    }
}
