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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
