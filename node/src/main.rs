//! `node`: namesrv | broker | standalone | controller | admin | bench. Parses the command line, sets up logging, runs the
//! chosen role until SIGINT/SIGTERM, then stops it cleanly.

use clap::Parser;
use node::cli::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() {
    // openraft narrates every vote and append at info; its warnings are what operators need.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut builder = if one_thread(&cli.command) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Namesrv { listen } => {
                node::roles::run_namesrv(&listen, shutdown_signal()).await
            }
            Command::Broker { conf, namesrv } => {
                node::roles::run_broker(conf, namesrv, shutdown_signal()).await
            }
            Command::Standalone { conf, data_dir } => {
                node::roles::run_standalone(conf, data_dir, shutdown_signal()).await
            }
            Command::Controller { conf } => {
                node::roles::run_controller(conf, shutdown_signal()).await
            }
            Command::Admin { admin } => {
                if let Err(e) = node::admin::run(admin).await {
                    fail(&e.to_string());
                }
                Ok(())
            }
            Command::Bench { bench } => {
                if let Err(e) = node::bench::run(bench).await {
                    fail(&e.to_string());
                }
                Ok(())
            }
        }
    });
    if let Err(e) = result {
        fail(&e.to_string());
    }
}

/// Whether `command` runs on a single-threaded runtime; `NODE_RUNTIME=current|multi`
/// overrides the choice.
///
/// The broker's machine runs on one core task anyway; what a multi-threaded runtime adds is
/// the per-connection readers on other threads, and every request then crosses threads (a
/// futex wake of the core). On this project's 2-core target, shared with the clients, one
/// thread measured cheaper: ~8.5 instead of ~12 µs of broker CPU per 128 B sync send, at equal
/// or better throughput, and no loss with 64-message batches (BENCHMARKS.md). Flushes still
/// run on tokio's blocking pool. The bench's sync senders are the same case (see
/// `node::bench::single_threaded`). Name servers and controllers keep the multi-threaded
/// runtime (not measured; their load is small).
fn one_thread(command: &Command) -> bool {
    match std::env::var("NODE_RUNTIME").as_deref() {
        Ok("current") => return true,
        Ok("multi") => return false,
        _ => {}
    }
    match command {
        Command::Broker { .. } | Command::Standalone { .. } => true,
        Command::Bench { bench } => node::bench::single_threaded(bench),
        _ => false,
    }
}

fn fail(message: &str) -> ! {
    eprintln!("node: {message}");
    std::process::exit(1);
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
