//! Broker and message commands: clusterList, brokerStatus, queryMsgById, queryMsgByKey.
//!
//! queryMsgById takes an offset message id (store host + commit-log offset, what the broker
//! answers a send with) and asks that broker for the record (VIEW_MESSAGE_BY_ID);
//! queryMsgByKey asks every master of the topic (QUERY_MESSAGE) over the key index.
//!
//! What it leaves out: clusterList's `-m` (more) and `-i` (interval) flags and its TPS and
//! timer columns (our brokers report no rates), queryMsgById by UNIQ_KEY (client message id),
//! writing message bodies to files as mqadmin does (the body is printed instead).

use std::collections::BTreeMap;

use bytes::Bytes;
use clap::Args;
use proto_core::body::KVTable;
use proto_core::message::msg_id::{decode_offset_msg_id, encode_offset_msg_id};
use proto_core::message::properties::Properties;
use proto_core::message::record::{decode_all, MessageRecord};
use proto_core::RequestCode;

use super::{front, human_time, now_ms, request, Admin, AdminError, NamesrvArgs};

#[derive(Clone, Debug, Args)]
pub struct BrokerStatusArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 'b', long = "brokerAddr")]
    pub broker: Option<String>,
    #[arg(short = 'c', long = "clusterName")]
    pub cluster: Option<String>,
}

#[derive(Clone, Debug, Args)]
pub struct QueryMsgByIdArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    /// The offset message id.
    #[arg(short = 'i', long = "msgId")]
    pub msg_id: String,
}

#[derive(Clone, Debug, Args)]
pub struct QueryMsgByKeyArgs {
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    #[arg(short = 'k', long = "msgKey")]
    pub key: String,
    /// Earliest store time, ms (default 0).
    #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
    pub begin: i64,
    /// Latest store time, ms (default now).
    #[arg(short = 'e', long = "endTimestamp")]
    pub end: Option<i64>,
    /// Most messages to list.
    #[arg(short = 'c', long = "maxNum", default_value_t = 64)]
    pub max_num: i32,
}

pub(super) async fn cluster_list(args: NamesrvArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    let info = admin.cluster_info().await?;
    println!(
        "{:<22}  {:<22}  {:<4}  {:<22} {:<16}  {:>16}  {:>16}  {:<8}  {:<10}",
        "#Cluster Name",
        "#Broker Name",
        "#BID",
        "#Addr",
        "#Version",
        "#InTPS(LOAD)",
        "#OutTPS(LOAD)",
        "#SPACE",
        "#ACTIVATED"
    );
    for (cluster, names) in &info.cluster_addr_table {
        for name in names {
            let Some(data) = info.broker_addr_table.get(name) else {
                continue;
            };
            for (id, addr) in &data.broker_addrs {
                let kv = runtime_info(&mut admin, addr).await.unwrap_or_default();
                let get = |k: &str| kv.get(k).cloned().unwrap_or_default();
                let space = get("commitLogDiskRatio").parse::<f64>().unwrap_or(0.0);
                println!(
                    "{:<22}  {:<22}  {:<4}  {:<22} {:<16}  {:>16}  {:>16}  {:<8}  {:<10}",
                    front(cluster, 22),
                    front(name, 22),
                    id,
                    addr,
                    get("brokerVersionDesc"),
                    "0.00(0,0ms)",
                    "0.00(0,0ms)",
                    format!("{:.4}", space),
                    get("brokerActive")
                );
            }
        }
    }
    Ok(())
}

pub(super) async fn broker_status(args: BrokerStatusArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    let many = args.broker.is_none();
    let targets = admin
        .targets(args.broker.as_deref(), args.cluster.as_deref())
        .await?;
    for addr in targets {
        let kv = runtime_info(&mut admin, &addr).await?;
        for (key, value) in &kv {
            if many {
                println!("{addr:<24} {key:<32}: {value}");
            } else {
                println!("{key:<32}: {value}");
            }
        }
    }
    Ok(())
}

pub(super) async fn query_msg_by_id(args: QueryMsgByIdArgs) -> Result<(), AdminError> {
    let (host, offset) = decode_offset_msg_id(args.msg_id.trim())
        .map_err(|e| AdminError::Usage(format!("bad message id {}: {e}", args.msg_id)))?;
    let mut admin = Admin::connect(&args.namesrv).await?;
    let cmd = request(
        RequestCode::ViewMessageById,
        &[("offset", &offset.to_string())],
    );
    let resp = admin.ask_broker_ok(&host.to_string(), cmd).await?;
    for record in decode_all(resp.body.clone()) {
        let record = record.map_err(|e| AdminError::Response(e.into()))?;
        print_message(&record);
    }
    Ok(())
}

pub(super) async fn query_msg_by_key(args: QueryMsgByKeyArgs) -> Result<(), AdminError> {
    let mut admin = Admin::connect(&args.namesrv).await?;
    let end = args.end.unwrap_or_else(now_ms).to_string();
    let (begin, max) = (args.begin.to_string(), args.max_num.to_string());
    println!("{:<50} {:>4} {:>10}", "#Message ID", "#QID", "#Offset");
    for addr in admin.topic_masters(&args.topic).await?.into_values() {
        let cmd = request(
            RequestCode::QueryMessage,
            &[
                ("topic", &args.topic),
                ("key", &args.key),
                ("maxNum", &max),
                ("beginTimestamp", &begin),
                ("endTimestamp", &end),
            ],
        );
        // QUERY_NOT_FOUND from one broker only means that broker has none.
        let resp = admin.ask_broker(&addr, cmd).await?;
        for record in decode_all(resp.body.clone()) {
            let record = record.map_err(|e| AdminError::Response(e.into()))?;
            let id = encode_offset_msg_id(record.store_host, record.physical_offset);
            println!(
                "{id:<50} {:>4} {:>10}",
                record.queue_id, record.queue_offset
            );
        }
    }
    Ok(())
}

async fn runtime_info(
    admin: &mut Admin,
    addr: &str,
) -> Result<BTreeMap<String, String>, AdminError> {
    let cmd = request(RequestCode::GetBrokerRuntimeInfo, &[]);
    let resp = admin.ask_broker_ok(addr, cmd).await?;
    let kv = KVTable::decode(&resp.body).map_err(|e| AdminError::Response(e.into()))?;
    Ok(kv.table)
}

fn print_message(record: &MessageRecord) {
    let props = Properties::parse_bytes(&record.properties);
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let prop = |k: &str| props.get(k).unwrap_or("").to_string();
    let id = encode_offset_msg_id(record.store_host, record.physical_offset);
    let all: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let rows = [
        ("OffsetID:", id),
        ("Topic:", text(&record.topic)),
        ("Tags:", format!("[{}]", prop("TAGS"))),
        ("Keys:", format!("[{}]", prop("KEYS"))),
        ("Queue ID:", record.queue_id.to_string()),
        ("Queue Offset:", record.queue_offset.to_string()),
        ("CommitLog Offset:", record.physical_offset.to_string()),
        ("Reconsume Times:", record.reconsume_times.to_string()),
        ("Born Timestamp:", human_time(record.born_timestamp)),
        ("Store Timestamp:", human_time(record.store_timestamp)),
        ("Born Host:", record.born_host.to_string()),
        ("Store Host:", record.store_host.to_string()),
        ("System Flag:", record.sys_flag.to_string()),
        ("Properties:", format!("{{{}}}", all.join(", "))),
        ("Message Body:", text(&record.body)),
    ];
    for (label, value) in rows {
        println!("{label:<20} {value}");
    }
}
