//! The command line, in the exact forms users and tests rely on.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "node",
    version,
    about = "RocketMQ-compatible name server and broker"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a name server.
    Namesrv {
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:9876")]
        listen: String,
    },
    /// Run a broker that registers with the name servers in `-n` / `namesrvAddr`.
    Broker {
        #[command(flatten)]
        conf: ConfArgs,
        /// Name servers, `host:port;host:port` (overrides namesrvAddr).
        #[arg(short = 'n', long = "namesrv")]
        namesrv: Option<String>,
    },
    /// Name server and broker in one process (name server on 9876, broker on 10911).
    Standalone {
        #[command(flatten)]
        conf: ConfArgs,
        /// Where the store lives (overrides storePathRootDir).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Run a controller of a RocketMQ 5 controller group (automatic master failover), with
    /// `controllerDLegerPeers`, `controllerDLegerSelfId`, `controllerStorePath`, `listenPort`.
    Controller {
        #[command(flatten)]
        conf: ConfArgs,
    },
    /// Operator commands with mqadmin's names and flags (updateTopic, resetOffsetByTime...).
    Admin {
        #[command(subcommand)]
        admin: crate::admin::AdminCommand,
    },
    /// Load generator for any RocketMQ-protocol cluster: produce, consume, e2e.
    Bench {
        #[command(subcommand)]
        bench: crate::bench::BenchCommand,
    },
}

#[derive(Debug, Args)]
pub struct ConfArgs {
    /// A RocketMQ broker.conf (Java properties, RocketMQ key names).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// Overrides any config key: `--set listenPort=10911`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}
