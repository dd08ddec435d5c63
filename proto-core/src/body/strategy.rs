//! proptest strategies for every body type, shared by the round-trip tests of each file.
//!
//! Strings are arbitrary Unicode (JSON must carry them all) except where a form cannot: topic
//! names in the compressed register body are space-free, as Java's topic name rules require.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::codec::command::LanguageCode;

fn text() -> impl Strategy<Value = String> {
    ".{0,8}"
}

/// Topic, group and broker names: RocketMQ's allowed characters.
fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z0-9%_|-]{0,12}"
}

/// Any finite double: JSON has no NaN or infinity, and fastjson writes none.
fn tps() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("finite", |f| f.is_finite())
}

pub(crate) fn message_queue() -> impl Strategy<Value = MessageQueue> {
    (ident(), any::<i32>(), ident()).prop_map(|(broker_name, queue_id, topic)| MessageQueue {
        broker_name,
        queue_id,
        topic,
    })
}

fn data_version() -> impl Strategy<Value = DataVersion> {
    (any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(counter, state_version, timestamp)| {
        DataVersion {
            counter,
            state_version,
            timestamp,
        }
    })
}

fn topic_config() -> impl Strategy<Value = TopicConfig> {
    (
        btree_map(text(), text(), 0..3),
        any::<bool>(),
        any::<i32>(),
        any::<i32>(),
        select(TopicFilterType::ALL),
        ident(),
        any::<i32>(),
        any::<i32>(),
    )
        .prop_map(
            |(attributes, order, perm, read, filter, name, sys_flag, write)| TopicConfig {
                attributes,
                order,
                perm,
                read_queue_nums: read,
                topic_filter_type: filter,
                topic_name: name,
                topic_sys_flag: sys_flag,
                write_queue_nums: write,
            },
        )
}

/// A topic config as the compressed register form carries it: no sys flag, not ordered.
fn topic_config_compressible() -> impl Strategy<Value = TopicConfig> {
    topic_config().prop_map(|c| TopicConfig {
        order: false,
        topic_sys_flag: 0,
        ..c
    })
}

pub(crate) fn mapping_info() -> impl Strategy<Value = TopicQueueMappingInfo> {
    (
        text(),
        btree_map(any::<i32>(), any::<i32>(), 0..4),
        any::<bool>(),
        any::<i64>(),
        text(),
        ident(),
        any::<i32>(),
    )
        .prop_map(
            |(bname, curr_id_map, dirty, epoch, scope, topic, total_queues)| {
                TopicQueueMappingInfo {
                    bname,
                    curr_id_map,
                    dirty,
                    epoch,
                    scope,
                    topic,
                    total_queues,
                }
            },
        )
}

fn mapping_item() -> impl Strategy<Value = LogicQueueMappingItem> {
    (text(), any::<[i64; 5]>(), any::<i32>(), any::<i32>()).prop_map(
        |(bname, [end, logic, start, t_end, t_start], gen, queue_id)| LogicQueueMappingItem {
            bname,
            end_offset: end,
            gen,
            logic_offset: logic,
            queue_id,
            start_offset: start,
            time_of_end: t_end,
            time_of_start: t_start,
        },
    )
}

pub(crate) fn mapping_detail() -> impl Strategy<Value = TopicQueueMappingDetail> {
    (
        mapping_info(),
        btree_map(any::<i32>(), vec(mapping_item(), 0..3), 0..3),
    )
        .prop_map(|(info, hosted_queues)| TopicQueueMappingDetail {
            bname: info.bname,
            curr_id_map: info.curr_id_map,
            dirty: info.dirty,
            epoch: info.epoch,
            hosted_queues,
            scope: info.scope,
            topic: info.topic,
            total_queues: info.total_queues,
        })
}

fn queue_data() -> impl Strategy<Value = QueueData> {
    (ident(), any::<[i32; 4]>()).prop_map(|(broker_name, [perm, read, sys_flag, write])| {
        QueueData {
            broker_name,
            perm,
            read_queue_nums: read,
            topic_sys_flag: sys_flag,
            write_queue_nums: write,
        }
    })
}

fn broker_data() -> impl Strategy<Value = BrokerData> {
    (
        btree_map(any::<i64>(), text(), 0..3),
        ident(),
        ident(),
        any::<bool>(),
        option::of(text()),
    )
        .prop_map(
            |(broker_addrs, broker_name, cluster, enable_acting_master, zone_name)| BrokerData {
                broker_addrs,
                broker_name,
                cluster,
                enable_acting_master,
                zone_name,
            },
        )
}

pub(crate) fn topic_route_data() -> impl Strategy<Value = TopicRouteData> {
    (
        vec(broker_data(), 0..3),
        btree_map(text(), vec(text(), 0..2), 0..2),
        option::of(text()),
        vec(queue_data(), 0..3),
        option::of(btree_map(ident(), mapping_info(), 0..2)),
    )
        .prop_map(
            |(broker_datas, filter_server_table, order_topic_conf, queue_datas, mapping)| {
                TopicRouteData {
                    broker_datas,
                    filter_server_table,
                    order_topic_conf,
                    queue_datas,
                    topic_queue_mapping_by_broker: mapping,
                }
            },
        )
}

pub(crate) fn cluster_info() -> impl Strategy<Value = ClusterInfo> {
    (
        btree_map(ident(), broker_data(), 0..3),
        btree_map(ident(), btree_set(ident(), 0..3), 0..3),
    )
        .prop_map(|(broker_addr_table, cluster_addr_table)| ClusterInfo {
            broker_addr_table,
            cluster_addr_table,
        })
}

pub(crate) fn broker_member_group() -> impl Strategy<Value = BrokerMemberGroup> {
    (btree_map(any::<i64>(), text(), 0..3), ident(), ident()).prop_map(
        |(broker_addrs, broker_name, cluster)| BrokerMemberGroup {
            broker_addrs,
            broker_name,
            cluster,
        },
    )
}

fn subscription_data() -> impl Strategy<Value = SubscriptionData> {
    (
        any::<bool>(),
        btree_set(any::<i32>(), 0..3),
        text(),
        text(),
        any::<i64>(),
        btree_set(text(), 0..3),
        ident(),
    )
        .prop_map(
            |(
                class_filter_mode,
                code_set,
                expression_type,
                sub_string,
                sub_version,
                tags_set,
                topic,
            )| {
                SubscriptionData {
                    class_filter_mode,
                    code_set,
                    expression_type,
                    sub_string,
                    sub_version,
                    tags_set,
                    topic,
                }
            },
        )
}

fn consumer_data() -> impl Strategy<Value = ConsumerData> {
    (
        select(ConsumeFromWhere::ALL),
        select(ConsumeType::ALL),
        ident(),
        select(MessageModel::ALL),
        vec(subscription_data(), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(consume_from_where, consume_type, group_name, message_model, subs, unit_mode)| {
                ConsumerData {
                    consume_from_where,
                    consume_type,
                    group_name,
                    message_model,
                    subscription_data_set: subs,
                    unit_mode,
                }
            },
        )
}

pub(crate) fn heartbeat_data() -> impl Strategy<Value = HeartbeatData> {
    (
        text(),
        vec(consumer_data(), 0..3),
        any::<i32>(),
        vec(
            ident().prop_map(|group_name| ProducerData { group_name }),
            0..3,
        ),
        any::<bool>(),
    )
        .prop_map(
            |(client_id, consumers, fingerprint, producers, without_sub)| HeartbeatData {
                client_id,
                consumer_data_set: consumers,
                heartbeat_fingerprint: fingerprint,
                producer_data_set: producers,
                without_sub,
            },
        )
}

fn connection() -> impl Strategy<Value = Connection> {
    (text(), text(), any::<u8>(), any::<i32>()).prop_map(
        |(client_addr, client_id, language, version)| Connection {
            client_addr,
            client_id,
            language: LanguageCode::from_code(language),
            version,
        },
    )
}

pub(crate) fn consumer_connection() -> impl Strategy<Value = ConsumerConnection> {
    (
        vec(connection(), 0..3),
        select(ConsumeFromWhere::ALL),
        select(ConsumeType::ALL),
        select(MessageModel::ALL),
        btree_map(ident(), subscription_data(), 0..3),
    )
        .prop_map(
            |(connection_set, consume_from_where, consume_type, message_model, subs)| {
                ConsumerConnection {
                    connection_set,
                    consume_from_where,
                    consume_type,
                    message_model,
                    subscription_table: subs,
                }
            },
        )
}

pub(crate) fn producer_connection() -> impl Strategy<Value = ProducerConnection> {
    vec(connection(), 0..3).prop_map(|connection_set| ProducerConnection { connection_set })
}

pub(crate) fn consume_stats() -> impl Strategy<Value = ConsumeStats> {
    let offsets = any::<[i64; 4]>().prop_map(|[broker, consumer, last, pull]| OffsetWrapper {
        broker_offset: broker,
        consumer_offset: consumer,
        last_timestamp: last,
        pull_offset: pull,
    });
    (tps(), btree_map(message_queue(), offsets, 0..4)).prop_map(|(consume_tps, offset_table)| {
        ConsumeStats {
            consume_tps,
            offset_table,
        }
    })
}

pub(crate) fn topic_stats_table() -> impl Strategy<Value = TopicStatsTable> {
    let offsets = any::<[i64; 3]>().prop_map(|[last, max, min]| TopicOffset {
        last_update_timestamp: last,
        max_offset: max,
        min_offset: min,
    });
    (btree_map(message_queue(), offsets, 0..4), tps()).prop_map(|(offset_table, topic_put_tps)| {
        TopicStatsTable {
            offset_table,
            topic_put_tps,
        }
    })
}

pub(crate) fn reset_offset_body() -> impl Strategy<Value = ResetOffsetBody> {
    btree_map(message_queue(), any::<i64>(), 0..4)
        .prop_map(|offset_table| ResetOffsetBody { offset_table })
}

pub(crate) fn consumer_offsets() -> impl Strategy<Value = ConsumerOffsetSerializeWrapper> {
    (
        option::of(data_version()),
        btree_map(text(), btree_map(any::<i32>(), any::<i64>(), 0..4), 0..3),
    )
        .prop_map(
            |(data_version, offset_table)| ConsumerOffsetSerializeWrapper {
                data_version,
                offset_table,
            },
        )
}

pub(crate) fn topic_list() -> impl Strategy<Value = TopicList> {
    (option::of(text()), btree_set(text(), 0..4)).prop_map(|(broker_addr, topic_list)| TopicList {
        broker_addr,
        topic_list,
    })
}

pub(crate) fn kv_table() -> impl Strategy<Value = KVTable> {
    btree_map(text(), text(), 0..4).prop_map(|table| KVTable { table })
}

pub(crate) fn group_list() -> impl Strategy<Value = GroupList> {
    btree_set(text(), 0..4).prop_map(|group_list| GroupList { group_list })
}

pub(crate) fn consumer_list() -> impl Strategy<Value = GetConsumerListByGroupResponseBody> {
    vec(text(), 0..4)
        .prop_map(|consumer_id_list| GetConsumerListByGroupResponseBody { consumer_id_list })
}

pub(crate) fn lock_batch_request() -> impl Strategy<Value = LockBatchRequestBody> {
    (
        text(),
        ident(),
        btree_set(message_queue(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(client_id, consumer_group, mq_set, only_this_broker)| {
            LockBatchRequestBody {
                client_id,
                consumer_group,
                mq_set,
                only_this_broker,
            }
        })
}

pub(crate) fn lock_batch_response() -> impl Strategy<Value = LockBatchResponseBody> {
    btree_set(message_queue(), 0..4)
        .prop_map(|lock_ok_mq_set| LockBatchResponseBody { lock_ok_mq_set })
}

pub(crate) fn subscription_group_config() -> impl Strategy<Value = SubscriptionGroupConfig> {
    let retry = (
        option::of(vec(any::<i64>(), 0..4).prop_map(|next| CustomizedRetryPolicy { next })),
        option::of(any::<[i64; 3]>().prop_map(|[initial, max, multiplier]| {
            ExponentialRetryPolicy {
                initial,
                max,
                multiplier,
            }
        })),
        select(GroupRetryPolicyType::ALL),
    )
        .prop_map(|(customized, exponential, kind)| GroupRetryPolicy {
            customized_retry_policy: customized,
            exponential_retry_policy: exponential,
            kind,
        });
    let simple = (text(), text(), ident(), any::<i64>()).prop_map(
        |(expression, expression_type, topic, version)| SimpleSubscriptionData {
            expression,
            expression_type,
            topic,
            version,
        },
    );
    (
        (
            btree_map(text(), text(), 0..3),
            any::<i64>(),
            any::<[bool; 5]>(),
            any::<i32>(),
            ident(),
        ),
        (
            retry,
            any::<[i32; 3]>(),
            option::of(vec(simple, 0..3)),
            any::<i64>(),
        ),
    )
        .prop_map(
            |(
                (attributes, broker_id, flags, timeout, group_name),
                (retry, [sys_flag, max_times, queue_nums], subs, slowly),
            )| {
                let [broadcast, enable, from_min, orderly, notify] = flags;
                SubscriptionGroupConfig {
                    attributes,
                    broker_id,
                    consume_broadcast_enable: broadcast,
                    consume_enable: enable,
                    consume_from_min_enable: from_min,
                    consume_message_orderly: orderly,
                    consume_timeout_minute: timeout,
                    group_name,
                    group_retry_policy: retry,
                    group_sys_flag: sys_flag,
                    notify_consumer_ids_changed_enable: notify,
                    retry_max_times: max_times,
                    retry_queue_nums: queue_nums,
                    subscription_data_set: subs,
                    which_broker_when_consume_slowly: slowly,
                }
            },
        )
}

pub(crate) fn topic_config_wrapper() -> impl Strategy<Value = TopicConfigSerializeWrapper> {
    (data_version(), btree_map(ident(), topic_config(), 0..4)).prop_map(
        |(data_version, topic_config_table)| TopicConfigSerializeWrapper {
            data_version,
            topic_config_table,
        },
    )
}

pub(crate) fn topic_config_and_mapping_wrapper(
) -> impl Strategy<Value = TopicConfigAndMappingSerializeWrapper> {
    (
        data_version(),
        data_version(),
        btree_map(ident(), topic_config(), 0..4),
        btree_map(ident(), mapping_detail(), 0..2),
        btree_map(ident(), mapping_info(), 0..2),
    )
        .prop_map(
            |(data_version, mapping_data_version, table, details, infos)| {
                TopicConfigAndMappingSerializeWrapper {
                    data_version,
                    mapping_data_version,
                    topic_config_table: table,
                    topic_queue_mapping_detail_map: details,
                    topic_queue_mapping_info_map: infos,
                }
            },
        )
}

pub(crate) fn register_broker_body() -> impl Strategy<Value = RegisterBrokerBody> {
    (vec(text(), 0..3), topic_config_and_mapping_wrapper()).prop_map(
        |(filter_server_list, wrapper)| RegisterBrokerBody {
            filter_server_list,
            topic_config_serialize_wrapper: wrapper,
        },
    )
}

/// A register body holding only what the compressed form carries: topics keyed by their own
/// names, mappings keyed by their topics, no mapping version or details.
pub(crate) fn register_broker_body_compressible() -> impl Strategy<Value = RegisterBrokerBody> {
    (
        vec(text(), 0..3),
        data_version(),
        vec(topic_config_compressible(), 0..4),
        vec(mapping_info(), 0..3),
    )
        .prop_map(|(filter_server_list, data_version, configs, infos)| {
            let topic_config_table: BTreeMap<_, _> = configs
                .into_iter()
                .map(|c| (c.topic_name.clone(), c))
                .collect();
            let topic_queue_mapping_info_map: BTreeMap<_, _> =
                infos.into_iter().map(|i| (i.topic.clone(), i)).collect();
            RegisterBrokerBody {
                filter_server_list,
                topic_config_serialize_wrapper: TopicConfigAndMappingSerializeWrapper {
                    data_version,
                    topic_config_table,
                    topic_queue_mapping_info_map,
                    ..TopicConfigAndMappingSerializeWrapper::default()
                },
            }
        })
}
