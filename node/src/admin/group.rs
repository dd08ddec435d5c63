//! Consumer-group commands: updateSubGroup, consumerProgress, resetOffsetByTime.
//!
//! resetOffsetByTime sends INVOKE_BROKER_TO_RESET_OFFSET to every master serving the topic (or
//! to `-b` only, with `-q` for one queue); each broker moves the group's committed offsets,
//! tells the group's live consumers and answers the new offsets, which are printed as mqadmin
//! prints them. `-s` takes `now`, milliseconds, or `yyyy-MM-dd#HH:mm:ss:SSS`; `-1` means the
//! end of each queue (skip everything) and `0` its start.
//!
//! What it leaves out: updateSubGroup's `-i` broker id and `-w` slow-consumer broker, the
//! client-side-only reset of old brokers (ResetOffsetByTimeOldCommand) and consumerProgress's
//! client addresses per queue (it prints `N/A`).

use std::collections::BTreeMap;

use clap::Args;
use proto_core::body::SubscriptionGroupConfig;
use proto_core::body::{ConsumeStats, MessageQueue, OffsetWrapper, ResetOffsetBody};
use proto_core::header::{encode_header, ResetOffsetRequestHeader};
use proto_core::{RemotingCommand, RequestCode};

use super::{front, human_time, parse_time, request, Admin, AdminError};

#[derive(Clone, Debug, Args)]
pub struct UpdateSubGroupArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 'g', long = "groupName")]
    pub group: String,
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker: Option<String>,
    /// consumeEnable.
    #[arg(short = 's', long = "consumeEnable", default_value_t = true, action = clap::ArgAction::Set)]
    pub consume_enable: bool,
    /// consumeFromMinEnable.
    #[arg(short = 'm', long = "consumeFromMinEnable", default_value_t = false, action = clap::ArgAction::Set)]
    pub consume_from_min_enable: bool,
    /// consumeBroadcastEnable.
    #[arg(short = 'd', long = "consumeBroadcastEnable", default_value_t = true, action = clap::ArgAction::Set)]
    pub consume_broadcast_enable: bool,
    /// consumeMessageOrderly.
    #[arg(short = 'o', long = "consumeMessageOrderly", default_value_t = false, action = clap::ArgAction::Set)]
    pub consume_message_orderly: bool,
    #[arg(short = 'q', long = "retryQueueNums", default_value_t = 1)]
    pub retry_queue_nums: i32,
    #[arg(short = 'r', long = "retryMaxTimes", default_value_t = 16)]
    pub retry_max_times: i32,
    /// notifyConsumerIdsChangedEnable.
    #[arg(short = 'a', long = "notifyConsumerIdsChanged", default_value_t = true, action = clap::ArgAction::Set)]
    pub notify_consumer_ids_changed: bool,
}

#[derive(Clone, Debug, Args)]
pub struct ConsumerProgressArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 'g', long = "groupName")]
    pub group: String,
    /// Only this topic.
    #[arg(short = 't', long = "topicName")]
    pub topic: Option<String>,
}

#[derive(Clone, Debug, Args)]
pub struct ResetOffsetByTimeArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 'g', long = "group")]
    pub group: String,
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// `now`, milliseconds since the epoch, or `yyyy-MM-dd#HH:mm:ss:SSS`.
    #[arg(short = 's', long = "timestamp", allow_hyphen_values = true)]
    pub timestamp: String,
    /// Move offsets forward too (mqadmin's default).
    #[arg(short = 'f', long = "force", default_value_t = true, action = clap::ArgAction::Set)]
    pub force: bool,
    /// Only this broker.
    #[arg(short = 'b', long = "broker")]
    pub broker: Option<String>,
    /// Only this queue (with `-b`).
    #[arg(short = 'q', long = "queue")]
    pub queue: Option<i32>,
    /// The queue offset to set (with `-b` and `-q`).
    #[arg(short = 'o', long = "offset")]
    pub offset: Option<i64>,
}

pub(super) async fn update_sub_group(args: UpdateSubGroupArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    let targets = admin
        .targets(args.broker.as_deref(), args.cluster.as_deref())
        .await?;
    let config = SubscriptionGroupConfig {
        group_name: args.group.clone(),
        consume_enable: args.consume_enable,
        consume_from_min_enable: args.consume_from_min_enable,
        consume_broadcast_enable: args.consume_broadcast_enable,
        consume_message_orderly: args.consume_message_orderly,
        retry_queue_nums: args.retry_queue_nums,
        retry_max_times: args.retry_max_times,
        notify_consumer_ids_changed_enable: args.notify_consumer_ids_changed,
        ..SubscriptionGroupConfig::default()
    };
    for addr in targets {
        let cmd =
            RemotingCommand::request(RequestCode::UpdateAndCreateSubscriptionGroup.value(), 0)
                .with_body(config.encode());
        admin.ask_broker_ok(&addr, cmd).await?;
        println!("create subscription group to {addr} success.");
    }
    println!("{}", String::from_utf8_lossy(&config.encode()));
    Ok(())
}

pub(super) async fn consumer_progress(args: ConsumerProgressArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    // Every consumer group subscribes to its retry topic, so its route names the brokers.
    let retry_topic = format!("%RETRY%{}", args.group);
    let masters = admin.topic_masters(&retry_topic).await?;
    let mut table: BTreeMap<MessageQueue, OffsetWrapper> = BTreeMap::new();
    let mut tps = 0.0;
    for addr in masters.into_values() {
        let mut fields = vec![("consumerGroup", args.group.as_str())];
        if let Some(topic) = &args.topic {
            fields.push(("topic", topic.as_str()));
        }
        let cmd = request(RequestCode::GetConsumeStats, &fields);
        let resp = admin.ask_broker_ok(&addr, cmd).await?;
        let stats = ConsumeStats::decode(&resp.body).map_err(|e| AdminError::Response(e.into()))?;
        tps += stats.consume_tps;
        table.extend(stats.offset_table);
    }
    println!(
        "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20}  {:<20}  #LastTime",
        "#Topic",
        "#Broker Name",
        "#QID",
        "#Broker Offset",
        "#Consumer Offset",
        "#Client IP",
        "#Diff",
    );
    let mut diff_total = 0;
    for (mq, offsets) in &table {
        let diff = offsets.broker_offset - offsets.consumer_offset.max(0);
        diff_total += diff;
        let last = if offsets.last_timestamp > 0 {
            human_time(offsets.last_timestamp)
        } else {
            "N/A".to_string()
        };
        println!(
            "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20}  {:<20}  {}",
            front(&mq.topic, 64),
            front(&mq.broker_name, 32),
            mq.queue_id,
            offsets.broker_offset,
            offsets.consumer_offset,
            "N/A",
            diff,
            last
        );
    }
    println!();
    println!("Consume TPS: {tps:.2}");
    println!("Consume Diff Total: {diff_total}");
    Ok(())
}

pub(super) async fn reset_offset_by_time(args: ResetOffsetByTimeArgs) -> Result<(), AdminError> {
    let timestamp = parse_time(&args.timestamp)?;
    let mut admin = Admin::connect(&args.namesrv).await?;
    let targets: Vec<String> = match &args.broker {
        Some(addr) => vec![addr.clone()],
        None => admin
            .topic_masters(&args.topic)
            .await?
            .into_values()
            .collect(),
    };
    let queue_id = match (args.queue, &args.broker) {
        (Some(queue), Some(_)) => queue,
        (Some(_), None) => return Err(AdminError::Usage("-q needs -b".into())),
        (None, _) => -1,
    };
    let header = ResetOffsetRequestHeader {
        group: args.group.clone(),
        topic: args.topic.clone(),
        queue_id,
        offset: args.offset.filter(|_| queue_id >= 0),
        timestamp,
        is_force: args.force,
    };
    let mut table = BTreeMap::new();
    for addr in targets {
        let mut cmd = RemotingCommand::request(RequestCode::InvokeBrokerToResetOffset.value(), 0);
        encode_header(&mut cmd, &header);
        let resp = admin.ask_broker_ok(&addr, cmd).await?;
        let body =
            ResetOffsetBody::decode(&resp.body).map_err(|e| AdminError::Response(e.into()))?;
        table.extend(body.offset_table);
    }
    println!(
        "start reset consumer offset by specified, group[{}], topic[{}], force[{}], timestamp(string)[{}], timestamp(long)[{}]",
        args.group, args.topic, args.force, args.timestamp, timestamp
    );
    println!(
        "{:<40}  {:<40}  {:<40}",
        "#brokerName", "#queueId", "#offset"
    );
    for (mq, offset) in &table {
        println!(
            "{:<40}  {:<40}  {:<40}",
            front(&mq.broker_name, 32),
            mq.queue_id,
            offset
        );
    }
    Ok(())
}
