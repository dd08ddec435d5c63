//! Controller-mode headers (RocketMQ 5 automatic failover): what brokers send to the controller
//! group (register, replica info, sync state set changes, elections, metadata) and the
//! NOTIFY_BROKER_ROLE_CHANGED request the controller sends back. Keys are Java's field names in
//! `remoting/.../protocol/header/controller/` and `NotifyBrokerRoleChangedRequestHeader`.
//!
//! Java fills `invokeTime` with the sender's clock; we carry it but never read it. Java's boxed
//! fields (`Long`, `Integer`) that a response leaves unset are `opt` here, because Java omits a
//! null field. What it leaves out: GET_NEXT_BROKER_ID / APPLY_BROKER_ID (brokers use their
//! configured id), CLEAN_BROKER_DATA and the controller config headers. The sync state set
//! itself travels in the body ([`crate::body::SyncStateSet`]).

command_header! {
    /// CONTROLLER_REGISTER_BROKER (1003) request: a broker announces its id and address.
    pub struct RegisterBrokerToControllerRequestHeader {
        cluster_name: String = req "clusterName",
        broker_name: String = req "brokerName",
        broker_id: i64 = req "brokerId",
        /// `ip:port` the controller gives to other brokers as the master address.
        broker_address: String = req "brokerAddress",
        invoke_time: i64 = or(0) "invokeTime",
    }
}

command_header! {
    /// CONTROLLER_REGISTER_BROKER (1003) response; the master fields are set only when the
    /// broker set has a live master. The body is the SyncStateSet.
    pub struct RegisterBrokerToControllerResponseHeader {
        cluster_name: String = opt "clusterName",
        broker_name: String = opt "brokerName",
        master_broker_id: i64 = opt "masterBrokerId",
        master_address: String = opt "masterAddress",
        master_epoch: i32 = opt "masterEpoch",
        sync_state_set_epoch: i32 = opt "syncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_GET_REPLICA_INFO (1004) request.
    pub struct GetReplicaInfoRequestHeader {
        broker_name: String = req "brokerName",
    }
}

command_header! {
    /// CONTROLLER_GET_REPLICA_INFO (1004) response; the body is the SyncStateSet.
    pub struct GetReplicaInfoResponseHeader {
        /// Absent when the broker set has no master.
        master_broker_id: i64 = opt "masterBrokerId",
        master_address: String = opt "masterAddress",
        master_epoch: i32 = opt "masterEpoch",
    }
}

command_header! {
    /// CONTROLLER_ALTER_SYNC_STATE_SET (1001) request from a master; the body is the proposed
    /// SyncStateSet carrying the sync state set epoch the master holds.
    pub struct AlterSyncStateSetRequestHeader {
        broker_name: String = req "brokerName",
        master_broker_id: i64 = req "masterBrokerId",
        master_epoch: i32 = req "masterEpoch",
        invoke_time: i64 = or(0) "invokeTime",
    }
}

command_header! {
    /// CONTROLLER_ALTER_SYNC_STATE_SET (1001) response; the body is the new SyncStateSet.
    pub struct AlterSyncStateSetResponseHeader {
        /// A Java `int`, so always written (0 on a refusal).
        new_sync_state_set_epoch: i32 = or(0) "newSyncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_ELECT_MASTER (1002) request: from a broker that sees no master (naming
    /// itself), or from an admin tool designating a broker (`designateElect`).
    pub struct ElectMasterRequestHeader {
        cluster_name: String = or(String::new()) "clusterName",
        broker_name: String = or(String::new()) "brokerName",
        /// -1: no broker named (Java's default).
        broker_id: i64 = or(-1) "brokerId",
        designate_elect: bool = or(false) "designateElect",
        invoke_time: i64 = or(0) "invokeTime",
    }
}

command_header! {
    /// CONTROLLER_ELECT_MASTER (1002) response; our body is the SyncStateSet (Java's differs).
    pub struct ElectMasterResponseHeader {
        master_broker_id: i64 = opt "masterBrokerId",
        master_address: String = opt "masterAddress",
        master_epoch: i32 = opt "masterEpoch",
        sync_state_set_epoch: i32 = opt "syncStateSetEpoch",
    }
}

command_header! {
    /// CONTROLLER_GET_METADATA_INFO (1005) response: who leads the controller group. Any
    /// controller answers it, so brokers use it to find the leader.
    pub struct GetMetaDataResponseHeader {
        group: String = opt "group",
        controller_leader_id: String = opt "controllerLeaderId",
        /// The leader's remoting address (the one brokers send requests to).
        controller_leader_address: String = opt "controllerLeaderAddress",
        is_leader: bool = or(false) "isLeader",
        /// The group's peers, as configured (`controllerDLegerPeers`).
        peers: String = opt "peers",
    }
}

command_header! {
    /// NOTIFY_BROKER_ROLE_CHANGED (1008) request, controller to broker, after an election; the
    /// body is the SyncStateSet.
    pub struct NotifyBrokerRoleChangedRequestHeader {
        master_address: String = opt "masterAddress",
        master_epoch: i32 = opt "masterEpoch",
        sync_state_set_epoch: i32 = opt "syncStateSetEpoch",
        master_broker_id: i64 = opt "masterBrokerId",
        /// Ours, not Java's (which ignores unknown keys): which broker set the news is about, so
        /// a broker can check it before acting.
        broker_name: String = opt "brokerName",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::check_header;
    use super::super::CommandHeader;
    use super::*;
    use crate::codec::command::ExtFields;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn register_round_trips(h in RegisterBrokerToControllerRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn register_response_round_trips(
            h in RegisterBrokerToControllerResponseHeader::arbitrary()
        ) {
            check_header(&h)?;
        }

        #[test]
        fn replica_info_round_trips(h in GetReplicaInfoRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn replica_info_response_round_trips(h in GetReplicaInfoResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn alter_round_trips(h in AlterSyncStateSetRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn alter_response_round_trips(h in AlterSyncStateSetResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn elect_round_trips(h in ElectMasterRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn elect_response_round_trips(h in ElectMasterResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn metadata_round_trips(h in GetMetaDataResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn notify_round_trips(h in NotifyBrokerRoleChangedRequestHeader::arbitrary()) {
            check_header(&h)?;
        }
    }

    #[test]
    fn an_empty_elect_request_takes_java_s_defaults() {
        let h = ElectMasterRequestHeader::decode(&ExtFields::new());
        assert_eq!(
            h,
            Ok(ElectMasterRequestHeader {
                cluster_name: String::new(),
                broker_name: String::new(),
                broker_id: -1,
                designate_elect: false,
                invoke_time: 0,
            })
        );
    }

    #[test]
    fn keys_are_java_s_field_names() {
        let h = AlterSyncStateSetRequestHeader {
            broker_name: "broker-a".to_owned(),
            master_broker_id: 1,
            master_epoch: 3,
            invoke_time: 1_700_000_000_000,
        };
        let mut fields = ExtFields::new();
        h.encode(&mut fields);
        assert_eq!(fields.get("brokerName"), Some("broker-a"));
        assert_eq!(fields.get("masterBrokerId"), Some("1"));
        assert_eq!(fields.get("masterEpoch"), Some("3"));
        assert_eq!(fields.get("invokeTime"), Some("1700000000000"));
    }
}
