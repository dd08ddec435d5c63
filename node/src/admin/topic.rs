//! Topic commands: updateTopic, deleteTopic, topicList, topicRoute, topicStatus, printing what
//! mqadmin prints.
//!
//! What it leaves out: updateTopic's `-u` unit, `-s` has-unit-sub and `-a` attribute flags,
//! topicStatus of static topics.

use clap::Args;
use proto_core::body::{PermName, TopicList, TopicStatsTable};
use proto_core::header::{encode_header, CreateTopicRequestHeader};
use proto_core::{RemotingCommand, RequestCode};

use super::{front, human_time, request, Admin, AdminError, NamesrvArgs};

#[derive(Clone, Debug, Args)]
pub struct UpdateTopicArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Create on every master of this cluster.
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
    /// Create on this broker only.
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker: Option<String>,
    #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
    pub read_queue_nums: i32,
    #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
    pub write_queue_nums: i32,
    /// PermName bits: 2 write, 4 read, 6 both.
    #[arg(short = 'p', long = "perm", default_value_t = 6)]
    pub perm: i32,
    /// Mark the topic as ordered.
    #[arg(short = 'o', long = "order", default_value_t = false)]
    pub order: bool,
}

#[derive(Clone, Debug, Args)]
pub struct DeleteTopicArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: String,
}

#[derive(Clone, Debug, Args)]
pub struct TopicArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 't', long = "topic")]
    pub topic: String,
}

pub(super) async fn update_topic(args: UpdateTopicArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    let targets = admin
        .targets(args.broker.as_deref(), args.cluster.as_deref())
        .await?;
    let header = CreateTopicRequestHeader {
        topic: args.topic.clone(),
        default_topic: "TBW102".to_string(),
        read_queue_nums: args.read_queue_nums,
        write_queue_nums: args.write_queue_nums,
        perm: args.perm,
        topic_filter_type: "SINGLE_TAG".to_string(),
        topic_sys_flag: Some(0),
        order: args.order,
        attributes: None,
        force: false,
    };
    for addr in targets {
        let mut cmd = RemotingCommand::request(RequestCode::UpdateAndCreateTopic.value(), 0);
        encode_header(&mut cmd, &header);
        admin.ask_broker_ok(&addr, cmd).await?;
        println!("create topic to {addr} success.");
    }
    println!(
        "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}, topicFilterType=SINGLE_TAG, topicSysFlag=0, order={}, attributes={{}}]",
        args.topic,
        args.read_queue_nums,
        args.write_queue_nums,
        PermName::to_text(args.perm),
        args.order
    );
    Ok(())
}

pub(super) async fn delete_topic(args: DeleteTopicArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    for addr in admin.cluster_masters(&args.cluster).await?.into_values() {
        let cmd = request(RequestCode::DeleteTopicInBroker, &[("topic", &args.topic)]);
        admin.ask_broker_ok(&addr, cmd).await?;
    }
    println!(
        "delete topic [{}] from cluster [{}] success.",
        args.topic, args.cluster
    );
    let cmd = request(
        RequestCode::DeleteTopicInNamesrv,
        &[("topic", &args.topic), ("clusterName", &args.cluster)],
    );
    admin.ask_namesrv(cmd).await?;
    println!("delete topic [{}] from NameServer success.", args.topic);
    Ok(())
}

pub(super) async fn topic_list(args: NamesrvArgs) -> Result<(), AdminError> {
    let admin = Admin::connect(&args.namesrv).await?;
    let cmd = RemotingCommand::request(RequestCode::GetAllTopicListFromNameserver.value(), 0);
    let resp = admin.ask_namesrv(cmd).await?;
    let list = TopicList::decode(&resp.body).map_err(|e| AdminError::Response(e.into()))?;
    for topic in list.topic_list {
        println!("{topic}");
    }
    Ok(())
}

pub(super) async fn topic_route(args: TopicArgs) -> Result<(), AdminError> {
    let admin = Admin::connect(&args.namesrv).await?;
    let route = admin.route(&args.topic).await?;
    println!("{}", String::from_utf8_lossy(&route.encode()));
    Ok(())
}

pub(super) async fn topic_status(args: TopicArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    println!(
        "{:<32}  {:<4}  {:<20}  {:<20}  #Last Updated",
        "#Broker Name", "#QID", "#Min Offset", "#Max Offset"
    );
    for addr in admin.topic_masters(&args.topic).await?.into_values() {
        let cmd = request(RequestCode::GetTopicStatsInfo, &[("topic", &args.topic)]);
        let resp = admin.ask_broker_ok(&addr, cmd).await?;
        let stats =
            TopicStatsTable::decode(&resp.body).map_err(|e| AdminError::Response(e.into()))?;
        for (mq, offsets) in &stats.offset_table {
            let updated = if offsets.last_update_timestamp > 0 {
                human_time(offsets.last_update_timestamp)
            } else {
                String::new()
            };
            println!(
                "{:<32}  {:<4}  {:<20}  {:<20}  {}",
                front(&mq.broker_name, 32),
                mq.queue_id,
                offsets.min_offset,
                offsets.max_offset,
                updated
            );
        }
    }
    Ok(())
}
