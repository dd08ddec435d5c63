//! Route bodies from the name server (protocol reference §13.2, §13.3, §17.4):
//! [`TopicRouteData`] (GET_ROUTEINFO_BY_TOPIC, REGISTER_TOPIC_IN_NAMESRV), [`ClusterInfo`]
//! (GET_BROKER_CLUSTER_INFO) and [`BrokerMemberGroup`] (GET_BROKER_MEMBER_GROUP).
//!
//! `brokerAddrs` maps are keyed by broker id (0 = master). Java name servers write them with
//! bare number keys (`{0:"…"}`) in ClusterInfo and in old-client routes; they are read through
//! `super::normalize` and written quoted (`{"0":"…"}`), which every Java version reads back.
//!
//! What it leaves out: route computation and the acting-master rewrite (`crate` name-server
//! logic) and the BrowserCompatible escaping of non-ASCII text.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::lenient::or_default;
use super::static_topic::TopicQueueMappingInfo;

/// The route of one topic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicRouteData {
    /// One per broker name in `queue_datas`, with all its replicas.
    #[serde(deserialize_with = "or_default")]
    pub broker_datas: Vec<BrokerData>,
    /// Broker address -> filter server addresses (legacy; normally empty).
    #[serde(deserialize_with = "or_default")]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// `brokerA:4;brokerB:4` when the name server serves ordered topics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_topic_conf: Option<String>,
    /// One per broker name hosting the topic.
    #[serde(deserialize_with = "or_default")]
    pub queue_datas: Vec<QueueData>,
    /// Static topics only: broker name -> mapping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic_queue_mapping_by_broker: Option<BTreeMap<String, TopicQueueMappingInfo>>,
}

/// A topic's queues on one broker name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueueData {
    #[serde(deserialize_with = "or_default")]
    pub broker_name: String,
    /// [`super::PermName`] bits.
    pub perm: i32,
    pub read_queue_nums: i32,
    pub topic_sys_flag: i32,
    pub write_queue_nums: i32,
}

/// One broker name (a master and its slaves) of a cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BrokerData {
    /// Broker id (0 = master, 1.. = slaves) -> `ip:port`.
    #[serde(deserialize_with = "or_default")]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(deserialize_with = "or_default")]
    pub broker_name: String,
    #[serde(deserialize_with = "or_default")]
    pub cluster: String,
    pub enable_acting_master: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_name: Option<String>,
}

/// Every broker and cluster a name server knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterInfo {
    /// Broker name -> its data.
    #[serde(deserialize_with = "or_default")]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    /// Cluster name -> its broker names.
    #[serde(deserialize_with = "or_default")]
    pub cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
}

/// The live members of one broker name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BrokerMemberGroup {
    /// Broker id -> address.
    #[serde(deserialize_with = "or_default")]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(deserialize_with = "or_default")]
    pub broker_name: String,
    #[serde(deserialize_with = "or_default")]
    pub cluster: String,
}

/// The GET_BROKER_MEMBER_GROUP response body.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GetBrokerMemberGroupResponseBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_member_group: Option<BrokerMemberGroup>,
}

json_body!(
    TopicRouteData,
    QueueData,
    BrokerData,
    ClusterInfo,
    BrokerMemberGroup,
    GetBrokerMemberGroupResponseBody,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::{broker_member_group, cluster_info, topic_route_data};
    use proptest::prelude::*;

    #[test]
    fn reads_the_standard_route_example() {
        // Protocol reference §13.2.
        let json =
            br#"{"brokerDatas":[{"brokerAddrs":{"0":"192.168.0.10:10911","1":"192.168.0.11:10911"},
  "brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],
 "filterServerTable":{},
 "queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,
  "topicSysFlag":0,"writeQueueNums":4}]}"#;
        let route = TopicRouteData::decode(json).unwrap();
        let broker = &route.broker_datas[0];
        assert_eq!(broker.broker_addrs[&0], "192.168.0.10:10911");
        assert_eq!(broker.broker_addrs[&1], "192.168.0.11:10911");
        assert_eq!(route.queue_datas[0].perm, 6);
        assert_eq!(route.order_topic_conf, None);
    }

    #[test]
    fn reads_fastjson_number_keys_in_cluster_info() {
        // Protocol reference §13.3, fastjson's default form.
        let json = br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"192.168.0.10:10911"},
  "brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},
 "clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
        let info = ClusterInfo::decode(json).unwrap();
        assert_eq!(
            info.broker_addr_table["broker-a"].broker_addrs[&0],
            "192.168.0.10:10911"
        );
        assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));
    }

    #[test]
    fn writes_quoted_broker_ids_in_fastjson_order() {
        let broker = BrokerData {
            broker_addrs: BTreeMap::from([(0, "10.0.0.1:10911".to_string())]),
            broker_name: "broker-a".into(),
            cluster: "c".into(),
            enable_acting_master: false,
            zone_name: None,
        };
        assert_eq!(
            String::from_utf8(broker.encode()).unwrap(),
            concat!(
                r#"{"brokerAddrs":{"0":"10.0.0.1:10911"},"brokerName":"broker-a","cluster":"c","#,
                r#""enableActingMaster":false}"#
            )
        );
    }

    #[test]
    fn rejects_a_route_of_the_wrong_shape() {
        let err = TopicRouteData::decode(br#"{"queueDatas":{"a":1}}"#).unwrap_err();
        assert!(matches!(
            err,
            crate::body::BodyError::Shape {
                body: "TopicRouteData",
                ..
            }
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn route_round_trip(route in topic_route_data()) {
            prop_assert_eq!(TopicRouteData::decode(&route.encode()).unwrap(), route);
        }

        #[test]
        fn cluster_info_round_trip(info in cluster_info()) {
            prop_assert_eq!(ClusterInfo::decode(&info.encode()).unwrap(), info);
        }

        #[test]
        fn member_group_round_trip(group in broker_member_group()) {
            let body = GetBrokerMemberGroupResponseBody { broker_member_group: Some(group) };
            let back = GetBrokerMemberGroupResponseBody::decode(&body.encode()).unwrap();
            prop_assert_eq!(back, body);
        }
    }
}
