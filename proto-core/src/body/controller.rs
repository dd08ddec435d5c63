//! Controller-mode bodies: [`SyncStateSet`] (the in-sync replica ids of a broker set and the epoch
//! of that set, carried by register, replica-info, alter, elect and role-change commands) and
//! [`BrokerReplicasInfo`] (CONTROLLER_GET_SYNC_STATE_DATA's answer), in Java's JSON shapes.
//!
//! Broker ids are Java `Long`s; a Java `Set` is a `BTreeSet` here (no duplicates, stable order
//! on the wire). What it leaves out: Java's ElectMasterResponseBody (our election answer carries
//! a SyncStateSet instead) and the broker-member-group part of it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::lenient::or_default;

/// `{"syncStateSet":[ids],"syncStateSetEpoch":n}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SyncStateSet {
    #[serde(deserialize_with = "or_default")]
    pub sync_state_set: BTreeSet<i64>,
    pub sync_state_set_epoch: i32,
}

/// CONTROLLER_GET_SYNC_STATE_DATA response: per broker set, its master and replicas.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BrokerReplicasInfo {
    #[serde(deserialize_with = "or_default")]
    pub replicas_info_table: BTreeMap<String, ReplicasInfo>,
}

/// One broker set in [`BrokerReplicasInfo`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicasInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_broker_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_address: Option<String>,
    pub master_epoch: i32,
    pub sync_state_set_epoch: i32,
    #[serde(deserialize_with = "or_default")]
    pub in_sync_replicas: Vec<ReplicaIdentity>,
    #[serde(deserialize_with = "or_default")]
    pub not_in_sync_replicas: Vec<ReplicaIdentity>,
}

/// One registered broker of a set, with whether the controller leader thinks it alive.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReplicaIdentity {
    #[serde(deserialize_with = "or_default")]
    pub broker_name: String,
    pub broker_id: i64,
    #[serde(deserialize_with = "or_default")]
    pub broker_address: String,
    pub alive: bool,
}

json_body!(SyncStateSet, BrokerReplicasInfo);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_state_set_reads_and_writes_java_s_shape() {
        let body = SyncStateSet::decode(br#"{"syncStateSet":[2,1],"syncStateSetEpoch":3}"#);
        let expected = SyncStateSet {
            sync_state_set: [1, 2].into_iter().collect(),
            sync_state_set_epoch: 3,
        };
        assert_eq!(body.ok(), Some(expected.clone()));
        assert_eq!(
            expected.encode(),
            br#"{"syncStateSet":[1,2],"syncStateSetEpoch":3}"#.to_vec()
        );
        let null = SyncStateSet::decode(br#"{"syncStateSet":null}"#);
        assert_eq!(null.ok(), Some(SyncStateSet::default()));
        assert!(SyncStateSet::decode(br#"{"syncStateSet":"x"}"#).is_err());
    }

    #[test]
    fn replicas_info_round_trips() {
        let mut table = BrokerReplicasInfo::default();
        table.replicas_info_table.insert(
            "broker-a".to_owned(),
            ReplicasInfo {
                master_broker_id: Some(1),
                master_address: Some("127.0.0.1:10911".to_owned()),
                master_epoch: 2,
                sync_state_set_epoch: 4,
                in_sync_replicas: vec![ReplicaIdentity {
                    broker_name: "broker-a".to_owned(),
                    broker_id: 1,
                    broker_address: "127.0.0.1:10911".to_owned(),
                    alive: true,
                }],
                not_in_sync_replicas: Vec::new(),
            },
        );
        let back = BrokerReplicasInfo::decode(&table.encode());
        assert_eq!(back.ok(), Some(table));
    }
}
