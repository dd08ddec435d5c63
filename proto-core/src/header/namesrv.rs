//! Name-server headers (§6.11, §17, §18): broker registration and liveness, route and topic
//! queries, write-permission changes and the KV config store. Leaves out controller-mode and
//! static-topic headers.

/// REGISTER_BROKER extFields key: the broker's zone, for zone-aware routing (Java's
/// `MixAll.ZONE_NAME`).
pub const ZONE_NAME: &str = "__ZONE_NAME";

command_header! {
    /// REGISTER_BROKER (103) request; the body is a RegisterBrokerBody.
    pub struct RegisterBrokerRequestHeader {
        broker_name: String = req "brokerName",
        /// `ip:port` clients connect to.
        broker_addr: String = req "brokerAddr",
        cluster_name: String = req "clusterName",
        /// `ip:haPort` slaves replicate from.
        ha_server_addr: String = req "haServerAddr",
        /// 0 for a master, ≥ 1 for slaves.
        broker_id: i64 = req "brokerId",
        /// Absent: the name server's default (120 s).
        heartbeat_timeout_millis: i64 = opt "heartbeatTimeoutMillis",
        /// Present only from 5.x brokers; absent means an old broker.
        enable_acting_master: bool = opt "enableActingMaster",
        /// Whether the body is zlib-compressed. 5.x brokers always say false; sniff the body.
        compressed: bool = or(false) "compressed",
        /// Masked CRC-32 of the body; 0 means unchecked.
        body_crc32: i32 = or(0) "bodyCrc32",
    }
}

command_header! {
    /// REGISTER_BROKER (103) response: where a slave finds its master.
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: String = opt "haServerAddr",
        master_addr: String = opt "masterAddr",
    }
}

command_header! {
    /// UNREGISTER_BROKER (104) request.
    pub struct UnRegisterBrokerRequestHeader {
        broker_name: String = req "brokerName",
        broker_addr: String = req "brokerAddr",
        cluster_name: String = req "clusterName",
        broker_id: i64 = req "brokerId",
    }
}

command_header! {
    /// BROKER_HEARTBEAT (904) request: refreshes liveness only.
    pub struct BrokerHeartbeatRequestHeader {
        cluster_name: String = req "clusterName",
        broker_addr: String = req "brokerAddr",
        broker_name: String = req "brokerName",
        broker_id: i64 = opt "brokerId",
        epoch: i32 = opt "epoch",
        max_offset: i64 = opt "maxOffset",
        confirm_offset: i64 = opt "confirmOffset",
        /// Java's spelling ("Mills"), kept as the key.
        heartbeat_timeout_mills: i64 = opt "heartbeatTimeoutMills",
        election_priority: i32 = opt "electionPriority",
    }
}

command_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105) request.
    pub struct GetRouteInfoRequestHeader {
        topic: String = req "topic",
        /// Ask for standard JSON even from an old-version sender (§13.1).
        accept_standard_json_only: bool = opt "acceptStandardJsonOnly",
    }
}

command_header! {
    /// QUERY_DATA_VERSION (322) request; the body is the broker's DataVersion.
    pub struct QueryDataVersionRequestHeader {
        broker_name: String = req "brokerName",
        broker_addr: String = req "brokerAddr",
        cluster_name: String = req "clusterName",
        broker_id: i64 = req "brokerId",
    }
}

command_header! {
    /// QUERY_DATA_VERSION (322) response.
    pub struct QueryDataVersionResponseHeader {
        /// Whether the name server's stored DataVersion differs from the broker's.
        changed: bool = req "changed",
    }
}

command_header! {
    /// GET_TOPICS_BY_CLUSTER (224) request.
    pub struct GetTopicsByClusterRequestHeader {
        cluster: String = req "cluster",
    }
}

command_header! {
    /// REGISTER_TOPIC_IN_NAMESRV (217) request; the body is a TopicRouteData.
    pub struct RegisterTopicRequestHeader {
        topic: String = req "topic",
    }
}

command_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216) request.
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: String = req "topic",
        /// Only remove the topic from this cluster's brokers.
        cluster_name: String = opt "clusterName",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) request.
    pub struct WipeWritePermOfBrokerRequestHeader {
        broker_name: String = req "brokerName",
    }
}

command_header! {
    /// WIPE_WRITE_PERM_OF_BROKER (205) response.
    pub struct WipeWritePermOfBrokerResponseHeader {
        wipe_topic_count: i32 = req "wipeTopicCount",
    }
}

command_header! {
    /// ADD_WRITE_PERM_OF_BROKER (327) request.
    pub struct AddWritePermOfBrokerRequestHeader {
        broker_name: String = req "brokerName",
    }
}

command_header! {
    /// ADD_WRITE_PERM_OF_BROKER (327) response.
    pub struct AddWritePermOfBrokerResponseHeader {
        add_topic_count: i32 = req "addTopicCount",
    }
}

command_header! {
    /// PUT_KV_CONFIG (100) request.
    pub struct PutKVConfigRequestHeader {
        namespace: String = req "namespace",
        key: String = req "key",
        value: String = req "value",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) request.
    pub struct GetKVConfigRequestHeader {
        namespace: String = req "namespace",
        key: String = req "key",
    }
}

command_header! {
    /// GET_KV_CONFIG (101) response; absent value comes with QUERY_NOT_FOUND.
    pub struct GetKVConfigResponseHeader {
        value: String = opt "value",
    }
}

command_header! {
    /// DELETE_KV_CONFIG (102) request.
    pub struct DeleteKVConfigRequestHeader {
        namespace: String = req "namespace",
        key: String = req "key",
    }
}

command_header! {
    /// GET_KVLIST_BY_NAMESPACE (219) request; the pairs come back as a KVTable body.
    pub struct GetKVListByNamespaceRequestHeader {
        namespace: String = req "namespace",
    }
}

command_header! {
    /// GET_BROKER_MEMBER_GROUP (901) request: the replicas of one broker name.
    pub struct GetBrokerMemberGroupRequestHeader {
        cluster_name: String = req "clusterName",
        broker_name: String = req "brokerName",
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{check_header, request_ext_fields, BROKER_TO_NAMESRV};
    use super::super::CommandHeader;
    use super::*;
    use crate::codec::code::RequestCode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn register_broker_round_trips(h in RegisterBrokerRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn register_broker_response_round_trips(h in RegisterBrokerResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn unregister_broker_round_trips(h in UnRegisterBrokerRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn broker_heartbeat_round_trips(h in BrokerHeartbeatRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn route_info_round_trips(h in GetRouteInfoRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn data_version_round_trips(h in QueryDataVersionRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn data_version_response_round_trips(h in QueryDataVersionResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn topics_by_cluster_round_trips(h in GetTopicsByClusterRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn register_topic_round_trips(h in RegisterTopicRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn delete_topic_round_trips(h in DeleteTopicFromNamesrvRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn wipe_write_perm_round_trips(h in WipeWritePermOfBrokerRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn wipe_write_perm_response_round_trips(
            h in WipeWritePermOfBrokerResponseHeader::arbitrary()
        ) {
            check_header(&h)?;
        }

        #[test]
        fn add_write_perm_round_trips(h in AddWritePermOfBrokerRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn add_write_perm_response_round_trips(
            h in AddWritePermOfBrokerResponseHeader::arbitrary()
        ) {
            check_header(&h)?;
        }

        #[test]
        fn put_kv_round_trips(h in PutKVConfigRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn get_kv_round_trips(h in GetKVConfigRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn get_kv_response_round_trips(h in GetKVConfigResponseHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn delete_kv_round_trips(h in DeleteKVConfigRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn kv_list_round_trips(h in GetKVListByNamespaceRequestHeader::arbitrary()) {
            check_header(&h)?;
        }

        #[test]
        fn member_group_round_trips(h in GetBrokerMemberGroupRequestHeader::arbitrary()) {
            check_header(&h)?;
        }
    }

    #[test]
    fn broker_registration_from_the_vectors_decodes() {
        let registers = request_ext_fields(BROKER_TO_NAMESRV, RequestCode::RegisterBroker.value());
        assert_eq!(registers.len(), 7);
        let first = RegisterBrokerRequestHeader::decode(&registers[0]).expect("register");
        assert_eq!(
            first,
            RegisterBrokerRequestHeader {
                broker_name: "broker-a".to_owned(),
                broker_addr: "127.0.0.1:10911".to_owned(),
                cluster_name: "DefaultCluster".to_owned(),
                ha_server_addr: "127.0.0.1:10912".to_owned(),
                broker_id: 0,
                heartbeat_timeout_millis: None,
                enable_acting_master: Some(false),
                compressed: false,
                body_crc32: 174_272_011,
            }
        );
        let unregisters =
            request_ext_fields(BROKER_TO_NAMESRV, RequestCode::UnregisterBroker.value());
        assert_eq!(unregisters.len(), 1);
        let header = UnRegisterBrokerRequestHeader::decode(&unregisters[0]).expect("unregister");
        assert_eq!(header.broker_id, 0);
        assert_eq!(header.cluster_name, "DefaultCluster");
        let topics = request_ext_fields(
            BROKER_TO_NAMESRV,
            RequestCode::RegisterTopicInNamesrv.value(),
        );
        assert_eq!(topics.len(), 8);
        for fields in &topics {
            RegisterTopicRequestHeader::decode(fields).expect("register topic");
        }
    }

    #[test]
    fn route_requests_from_the_vectors_decode() {
        for jsonl in [
            super::super::testing::CPP_PRODUCER,
            super::super::testing::RUST_CLIENT,
        ] {
            let routes = request_ext_fields(jsonl, RequestCode::GetRouteinfoByTopic.value());
            assert!(!routes.is_empty());
            for fields in &routes {
                let header = GetRouteInfoRequestHeader::decode(fields).expect("route request");
                assert!(!header.topic.is_empty());
            }
        }
    }
}
