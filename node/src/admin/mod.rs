//! `node admin`: the operator commands of RocketMQ's `mqadmin`, with its command names, its
//! flags (`-n` name server, `-t` topic, `-g` group, `-c` cluster, `-b` broker address...) and
//! its table layouts, over any RocketMQ-protocol cluster.
//!
//! # Files
//! - `mod.rs`: the command line and [`Admin`], one name-server connection plus broker
//!   connections opened on demand, with the request/response plumbing every command shares.
//! - `topic.rs`: updateTopic, deleteTopic, topicList, topicRoute, topicStatus.
//! - `group.rs`: updateSubGroup, consumerProgress, resetOffsetByTime.
//! - `broker.rs`: clusterList, brokerStatus, queryMsgById, queryMsgByKey.
//!
//! What it leaves out: ACL, static topics, controller and HA commands, message tracing, the
//! `-h`/`-m` flags of mqadmin's option parser, and consumerProgress without `-g` (listing every
//! group).

mod broker;
mod group;
mod topic;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use io_adapters::client::{ClientError, RemotingClient};
use proto_core::body::{ClusterInfo, TopicRouteData};
use proto_core::client::{parse_route, route_request, ResponseError};
use proto_core::{RemotingCommand, RequestCode, ResponseCode};

/// How long any one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// `node admin <command>`: mqadmin's commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create or update a topic on every master of a cluster (`-c`) or on one broker (`-b`).
    #[command(name = "updateTopic")]
    UpdateTopic(topic::UpdateTopicArgs),
    /// Delete a topic from every master of a cluster and from the name servers.
    #[command(name = "deleteTopic")]
    DeleteTopic(topic::DeleteTopicArgs),
    /// List every topic the name server knows.
    #[command(name = "topicList")]
    TopicList(NamesrvArgs),
    /// Print a topic's route as JSON.
    #[command(name = "topicRoute")]
    TopicRoute(topic::TopicArgs),
    /// Print each queue's min and max offsets and last update time.
    #[command(name = "topicStatus")]
    TopicStatus(topic::TopicArgs),
    /// List the brokers of every cluster with their version and disk use.
    #[command(name = "clusterList")]
    ClusterList(NamesrvArgs),
    /// Print a broker's runtime figures (GET_BROKER_RUNTIME_INFO).
    #[command(name = "brokerStatus")]
    BrokerStatus(broker::BrokerStatusArgs),
    /// Create or update a consumer group's settings.
    #[command(name = "updateSubGroup")]
    UpdateSubGroup(group::UpdateSubGroupArgs),
    /// A consumer group's progress per queue: broker offset, consumer offset, lag.
    #[command(name = "consumerProgress")]
    ConsumerProgress(group::ConsumerProgressArgs),
    /// Move a group's offsets to the first message stored at or after a time.
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime(group::ResetOffsetByTimeArgs),
    /// Print a message by its offset message id.
    #[command(name = "queryMsgById")]
    QueryMsgById(broker::QueryMsgByIdArgs),
    /// List the messages of a topic with a key.
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey(broker::QueryMsgByKeyArgs),
}

/// Only the name server.
#[derive(Clone, Debug, Args)]
pub struct NamesrvArgs {
    /// Name server `host:port` (the first of a `;` list is used).
    #[arg(short = 'n', long = "namesrvAddr")]
    pub namesrv: String,
}

/// Why a command failed; the message is what the operator sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Response(#[from] ResponseError),
    #[error("{0}")]
    Usage(String),
}

/// Runs one command, printing its result to stdout.
///
/// # Errors
/// [`AdminError`]: a connection failed, a server refused, or the arguments do not fit.
pub async fn run(command: AdminCommand) -> Result<(), AdminError> {
    match command {
        AdminCommand::UpdateTopic(args) => topic::update_topic(args).await,
        AdminCommand::DeleteTopic(args) => topic::delete_topic(args).await,
        AdminCommand::TopicList(args) => topic::topic_list(args).await,
        AdminCommand::TopicRoute(args) => topic::topic_route(args).await,
        AdminCommand::TopicStatus(args) => topic::topic_status(args).await,
        AdminCommand::ClusterList(args) => broker::cluster_list(args).await,
        AdminCommand::BrokerStatus(args) => broker::broker_status(args).await,
        AdminCommand::UpdateSubGroup(args) => group::update_sub_group(args).await,
        AdminCommand::ConsumerProgress(args) => group::consumer_progress(args).await,
        AdminCommand::ResetOffsetByTime(args) => group::reset_offset_by_time(args).await,
        AdminCommand::QueryMsgById(args) => broker::query_msg_by_id(args).await,
        AdminCommand::QueryMsgByKey(args) => broker::query_msg_by_key(args).await,
    }
}

/// A name-server connection and the broker connections opened so far.
pub(crate) struct Admin {
    namesrv: RemotingClient,
    brokers: BTreeMap<String, RemotingClient>,
}

impl Admin {
    pub(crate) async fn connect(namesrv: &str) -> Result<Admin, AdminError> {
        let first = namesrv.split(';').map(str::trim).find(|a| !a.is_empty());
        let Some(addr) = first else {
            return Err(AdminError::Usage("-n needs a name server address".into()));
        };
        Ok(Admin {
            namesrv: RemotingClient::connect(addr).await?,
            brokers: BTreeMap::new(),
        })
    }

    /// A request to the name server; a non-SUCCESS answer is an error.
    pub(crate) async fn ask_namesrv(
        &self,
        cmd: RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        let resp = self.namesrv.invoke(cmd, REQUEST_TIMEOUT).await?;
        expect_success(resp)
    }

    /// A request to the broker at `addr`; the answer whatever its code.
    pub(crate) async fn ask_broker(
        &mut self,
        addr: &str,
        cmd: RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        if !self.brokers.contains_key(addr) {
            let client = RemotingClient::connect(addr).await?;
            self.brokers.insert(addr.to_string(), client);
        }
        let Some(client) = self.brokers.get(addr) else {
            unreachable!("inserted just above");
        };
        Ok(client.invoke(cmd, REQUEST_TIMEOUT).await?)
    }

    /// [`Admin::ask_broker`], with a non-SUCCESS answer as an error.
    pub(crate) async fn ask_broker_ok(
        &mut self,
        addr: &str,
        cmd: RemotingCommand,
    ) -> Result<RemotingCommand, AdminError> {
        let resp = self.ask_broker(addr, cmd).await?;
        expect_success(resp)
    }

    pub(crate) async fn cluster_info(&self) -> Result<ClusterInfo, AdminError> {
        let cmd = RemotingCommand::request(RequestCode::GetBrokerClusterInfo.value(), 0);
        let resp = self.ask_namesrv(cmd).await?;
        ClusterInfo::decode(&resp.body).map_err(|e| AdminError::Response(e.into()))
    }

    /// The master address of every broker of `cluster`, by broker name.
    pub(crate) async fn cluster_masters(
        &self,
        cluster: &str,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let info = self.cluster_info().await?;
        let Some(names) = info.cluster_addr_table.get(cluster) else {
            return Err(AdminError::Usage(format!("cluster {cluster} not found")));
        };
        Ok(names
            .iter()
            .filter_map(|name| {
                let data = info.broker_addr_table.get(name)?;
                Some((name.clone(), data.broker_addrs.get(&0)?.clone()))
            })
            .collect())
    }

    pub(crate) async fn route(&self, topic: &str) -> Result<TopicRouteData, AdminError> {
        let resp = self
            .namesrv
            .invoke(route_request(topic), REQUEST_TIMEOUT)
            .await?;
        Ok(parse_route(&resp)?)
    }

    /// The master address of every broker serving `topic`, by broker name.
    pub(crate) async fn topic_masters(
        &self,
        topic: &str,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let route = self.route(topic).await?;
        Ok(route
            .broker_datas
            .iter()
            .filter_map(|b| Some((b.broker_name.clone(), b.broker_addrs.get(&0)?.clone())))
            .collect())
    }

    /// Brokers named by `-b` or, with `-c`, every master of that cluster.
    pub(crate) async fn targets(
        &self,
        broker: Option<&str>,
        cluster: Option<&str>,
    ) -> Result<Vec<String>, AdminError> {
        match (broker, cluster) {
            (Some(addr), _) => Ok(vec![addr.to_string()]),
            (None, Some(cluster)) => {
                Ok(self.cluster_masters(cluster).await?.into_values().collect())
            }
            (None, None) => Err(AdminError::Usage(
                "give -b brokerAddr or -c clusterName".into(),
            )),
        }
    }
}

/// A request with `fields` as its extFields.
pub(crate) fn request(code: RequestCode, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code.value(), 0);
    for (k, v) in fields {
        cmd.ext_fields_mut().insert(*k, *v);
    }
    cmd
}

fn expect_success(resp: RemotingCommand) -> Result<RemotingCommand, AdminError> {
    if resp.code == ResponseCode::Success.value() {
        Ok(resp)
    } else {
        Err(AdminError::Response(ResponseError::Refused {
            code: ResponseCode::from_value(resp.code),
            remark: resp.remark,
        }))
    }
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// mqadmin's time argument: `now`, milliseconds since the epoch, or local
/// `yyyy-MM-dd#HH:mm:ss:SSS`.
pub(crate) fn parse_time(text: &str) -> Result<i64, AdminError> {
    let text = text.trim();
    if text == "now" {
        return Ok(now_ms());
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        AdminError::Usage(format!(
            "bad time {text:?}: want now, millis or yyyy-MM-dd#HH:mm:ss:SSS"
        ))
    };
    let (date, time) = text.split_once('#').ok_or_else(bad)?;
    let num = |s: &str| s.parse::<i32>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let t: Vec<&str> = time.split(':').collect();
    let ([year, month, day], [hour, minute, second, millis]) = (d.as_slice(), t.as_slice()) else {
        return Err(bad());
    };
    let local = LocalTime {
        year: num(year)?,
        month: num(month)?,
        day: num(day)?,
        hour: num(hour)?,
        minute: num(minute)?,
        second: num(second)?,
    };
    let seconds = local.to_epoch_seconds().ok_or_else(bad)?;
    Ok(seconds * 1_000 + i64::from(num(millis)?))
}

/// A wall-clock time in the local time zone, as Java's `SimpleDateFormat` reads it.
struct LocalTime {
    year: i32,
    month: i32,
    day: i32,
    hour: i32,
    minute: i32,
    second: i32,
}

impl LocalTime {
    fn to_epoch_seconds(&self) -> Option<i64> {
        // SAFETY: `tm` is a plain C struct for which all-zero bytes are a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        tm.tm_year = self.year - 1900;
        tm.tm_mon = self.month - 1;
        tm.tm_mday = self.day;
        tm.tm_hour = self.hour;
        tm.tm_min = self.minute;
        tm.tm_sec = self.second;
        tm.tm_isdst = -1;
        // SAFETY: mktime reads and normalises the struct we own; it keeps no pointer to it.
        let t = unsafe { libc::mktime(&mut tm) };
        // `time_t` is narrower than i64 on some targets.
        #[allow(clippy::useless_conversion)]
        (t != -1).then_some(i64::from(t))
    }
}

/// Java `UtilAll.timeMillisToHumanString2`: `yyyy-MM-dd HH:mm:ss,SSS` in local time.
pub(crate) fn human_time(ms: i64) -> String {
    let secs = ms.div_euclid(1_000) as libc::time_t;
    // SAFETY: as above, an all-zero `tm` is valid; localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals for the duration of the call.
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return ms.to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ms.rem_euclid(1_000)
    )
}

/// Java `UtilAll.frontStringAtLeast`: at most `size` characters.
pub(crate) fn front(text: &str, size: usize) -> String {
    text.chars().take(size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_mqadmin() {
        assert_eq!(parse_time("1700000000123").unwrap(), 1_700_000_000_123);
        assert!(parse_time("now").unwrap() > 1_700_000_000_000);
        let ms = parse_time("2024-03-05#06:07:08:009").unwrap();
        assert_eq!(human_time(ms), "2024-03-05 06:07:08,009");
        assert!(parse_time("2024-03-05 06:07").is_err());
        assert!(parse_time("yesterday").is_err());
    }
}
