//! `node bench`: a load generator that speaks only what any RocketMQ client speaks (route
//! lookup at the name server, SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE, PULL_MESSAGE, GET_MAX_OFFSET),
//! so it drives our node and any other RocketMQ-protocol broker alike.
//!
//! # Files
//! - `produce.rs`: N concurrent senders, sync / async window / oneway, single or batch sends.
//! - `consume.rs`: pulls every queue of a topic, counting messages and bytes.
//! - `e2e.rs`: both at once; latency = receipt time − born timestamp.
//! - `shared.rs`: sync senders sharing one connection per broker (the default, as a RocketMQ
//!   client's threads share its producer's connection), one task per connection.
//! - `pipe.rs`: a connection owned by one sync sender (no tasks between request and answer).
//! - `template.rs`: a send request encoded once and patched per message (sync senders).
//! - `timer.rs`: timer-message delivery lateness under send load.
//! - `report.rs`: the shared counters, the per-second progress line and the summary.
//!
//! What it leaves out: heartbeats and rebalancing (a bench consumer pulls every queue itself),
//! offset commits, retries of failed sends (a failure is counted, not hidden), ordered,
//! delayed and transactional messages.

mod consume;
mod e2e;
mod pipe;
mod produce;
mod report;
mod shared;
mod template;
mod timer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};
use io_adapters::client::{ClientError, RemotingClient};
use proto_core::body::TopicRouteData;
use proto_core::client::{parse_route, route_request, ResponseError};
use proto_core::{RemotingCommand, ResponseCode};

pub use report::Summary;

/// How long a name-server request may take.
const NAMESRV_TIMEOUT: Duration = Duration::from_secs(3);
/// A run with neither `--count` nor `--duration` lasts this long.
const DEFAULT_DURATION: Duration = Duration::from_secs(30);

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Send messages as fast as the chosen mode allows.
    Produce(ProduceArgs),
    /// Pull every queue of a topic and count what arrives.
    Consume(ConsumeArgs),
    /// Produce and consume at once; reports born-to-receipt latency.
    E2e(E2eArgs),
    /// Timer messages under send load; reports delivery lateness (receipt − TIMER_DELIVER_MS).
    Timer(timer::TimerArgs),
}

#[derive(Clone, Debug, Args)]
pub struct ProduceArgs {
    /// Name server `host:port` (the first of a `;` list is used).
    #[arg(short = 'n', long = "namesrv")]
    pub namesrv: String,
    #[arg(short = 't', long)]
    pub topic: String,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 16)]
    pub threads: usize,
    /// Stop after this many messages in all.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long (`30s`, `500ms`, `2m`; a bare number is seconds).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Messages per SEND_BATCH_MESSAGE; 1 sends SEND_MESSAGE_V2.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Keep `--window` requests in flight per sender instead of one.
    #[arg(long = "async")]
    pub async_send: bool,
    /// In-flight requests per sender with `--async` (and between acknowledged sends with
    /// `--oneway`).
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Send without waiting for answers (every `--window`-th send waits, to bound the queue).
    #[arg(long)]
    pub oneway: bool,
    /// Give each message a tag.
    #[arg(long)]
    pub tags: bool,
    /// Give each message a key.
    #[arg(long)]
    pub keys: bool,
    /// Connections per broker, shared round-robin by the senders (sender i uses connection
    /// i mod N); 1, the default, is what a RocketMQ client opens: one per broker for all its
    /// threads. 0 = one per sender. Sync sends then put up to one request per sender on each
    /// connection; `--async`/`--oneway` go through the general client.
    #[arg(long, default_value_t = 1)]
    pub connections: usize,
    #[arg(long, default_value = "benchmark_producer")]
    pub producer_group: String,
    /// Request timeout in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
    /// Offered load in messages per second over all senders (0 = as fast as they can): each
    /// request waits for its slot on one shared schedule, so latency is measured at that load.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Print the summary as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// Offset 0 of every queue (the whole backlog).
    First,
    /// The current end of every queue.
    Last,
}

#[derive(Clone, Debug, Args)]
pub struct ConsumeArgs {
    #[arg(short = 'n', long = "namesrv")]
    pub namesrv: String,
    #[arg(short = 't', long)]
    pub topic: String,
    #[arg(short = 'g', long, default_value = "benchmark_consumer")]
    pub group: String,
    /// Stop after this long.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop once this many messages arrived.
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value = "first")]
    pub from: From,
    /// Messages asked for per pull.
    #[arg(long, default_value_t = 32)]
    pub pull_batch: i32,
    /// How long the broker may hold an empty pull (long polling), milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub suspend_ms: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    pub produce: ProduceArgs,
    #[arg(short = 'g', long, default_value = "benchmark_consumer")]
    pub group: String,
    /// Messages asked for per pull.
    #[arg(long, default_value_t = 32)]
    pub pull_batch: i32,
}

/// Why a bench could not run at all (failures of single requests are counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("name server {addr}: {source}")]
    Namesrv { addr: String, source: ClientError },
    #[error("route of {topic}: {source}")]
    Route {
        topic: String,
        source: ResponseError,
    },
    #[error("broker {addr}: {source}")]
    Broker { addr: String, source: ClientError },
    #[error("topic {0} has no queue with a master broker")]
    NoQueues(String),
    #[error("bad option: {0}")]
    Option(String),
}

/// Runs one bench command to its end and prints its summary.
pub async fn run(cmd: BenchCommand) -> Result<(), BenchError> {
    match cmd {
        BenchCommand::Produce(args) => {
            let json = args.json;
            let summary = produce::run(args).await?;
            print_summary(&summary, json, "send RT");
        }
        BenchCommand::Consume(args) => {
            let json = args.json;
            let summary = consume::run(args).await?;
            print_summary(&summary, json, "pull RT");
        }
        BenchCommand::E2e(args) => {
            let json = args.produce.json;
            let (sent, received) = e2e::run(args).await?;
            if json {
                let mut line = received.json();
                line.pop();
                println!("{line},\"send\":{}}}", sent.json());
            } else {
                println!("{}", sent.text("send RT"));
                println!("{}", received.text("end-to-end (born to receipt)"));
            }
        }
        BenchCommand::Timer(args) => {
            let json = args.json;
            let summary = timer::run(args).await?;
            if json {
                println!("{}", summary.json());
            } else {
                println!("{}", summary.text());
            }
        }
    }
    Ok(())
}

/// Whether `cmd` runs best on one thread: sync senders on their own connections (pipes) or on
/// shared ones (one task per connection) share nothing across tasks, so a single-threaded
/// runtime polls them with no cross-thread wake-ups, on the two cores the broker under test
/// needs too.
pub fn single_threaded(cmd: &BenchCommand) -> bool {
    matches!(cmd, BenchCommand::Produce(args)
        if produce::uses_pipes(args) || produce::uses_shared(args))
}

fn print_summary(summary: &Summary, json: bool, latency_name: &str) {
    if json {
        println!("{}", summary.json());
    } else {
        println!("{}", summary.text(latency_name));
    }
}

/// `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    }
}

/// Wall-clock milliseconds since the epoch, as born timestamps carry.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The first name server of a `;`-separated list.
fn first_namesrv(list: &str) -> &str {
    list.split(';').next().unwrap_or(list).trim()
}

/// The route of `topic`; TOPIC_NOT_EXIST comes back as `Ok(None)`.
async fn lookup_route(namesrv: &str, topic: &str) -> Result<Option<TopicRouteData>, BenchError> {
    let addr = first_namesrv(namesrv);
    let client = RemotingClient::connect(addr)
        .await
        .map_err(|source| BenchError::Namesrv {
            addr: addr.to_string(),
            source,
        })?;
    let resp = client
        .invoke(route_request(topic), NAMESRV_TIMEOUT)
        .await
        .map_err(|source| BenchError::Namesrv {
            addr: addr.to_string(),
            source,
        })?;
    if ResponseCode::from_value(resp.code) == ResponseCode::TopicNotExist {
        return Ok(None);
    }
    parse_route(&resp)
        .map(Some)
        .map_err(|source| BenchError::Route {
            topic: topic.to_string(),
            source,
        })
}

/// One connection per distinct address.
async fn connect_all(
    addrs: impl IntoIterator<Item = String>,
    per_addr: usize,
) -> Result<BTreeMap<String, Vec<Arc<RemotingClient>>>, BenchError> {
    let mut out = BTreeMap::new();
    for addr in addrs {
        if out.contains_key(&addr) {
            continue;
        }
        let mut conns = Vec::with_capacity(per_addr);
        for _ in 0..per_addr.max(1) {
            let c = RemotingClient::connect(&addr)
                .await
                .map_err(|source| BenchError::Broker {
                    addr: addr.clone(),
                    source,
                })?;
            conns.push(Arc::new(c));
        }
        out.insert(addr, conns);
    }
    Ok(out)
}

/// The kind a failed request is counted under.
fn client_error_kind(e: &ClientError) -> String {
    match e {
        ClientError::Connect { .. } => "connect".to_string(),
        ClientError::Closed(_) => "connection closed".to_string(),
        ClientError::Timeout(_) => "timeout".to_string(),
    }
}

/// The kind a refused response is counted under: its code.
fn response_kind(resp: &RemotingCommand) -> String {
    code_kind(resp.code)
}

/// The kind a refused response with `code` is counted under.
fn code_kind(code: i32) -> String {
    format!("{:?}", ResponseCode::from_value(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn first_namesrv_of_a_list() {
        assert_eq!(first_namesrv("a:1;b:2"), "a:1");
        assert_eq!(first_namesrv("a:1"), "a:1");
    }
}
