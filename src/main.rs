//! `bellows`: the operator (`run`), its CRD (`crd`), and the kubectl plugin
//! verbs (`status`, `approve`, `pause`, `resume`, `list`); installed as
//! `kubectl-bellows` it is run by kubectl as `kubectl bellows ...`.

use bellows::api::SchemaRollout;
use bellows::telemetry::http::{self, Probe};
use bellows::telemetry::metrics::Metrics;
use bellows::telemetry::{LogFormat, init_logging};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use kube::CustomResourceExt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Phased (expand/contract) database schema rollouts for Kubernetes.
#[derive(Parser)]
#[command(name = "bellows", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the current kubeconfig or in-cluster config.
    Run {
        /// Address of the /metrics, /healthz and /readyz endpoints.
        #[arg(long, env = "BELLOWS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        /// Log format.
        #[arg(long, env = "BELLOWS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Print the CustomResourceDefinition YAML.
    Crd,
    #[command(flatten)]
    Plugin(bellows::plugin::Verb),
}

/// Parses the command line; started as `kubectl-bellows`, help and usage
/// name the command the way users type it (`kubectl bellows`).
fn parse() -> Cli {
    let mut command = Cli::command();
    let argv0 = std::env::args().next().unwrap_or_default();
    if bellows::plugin::invoked_as_plugin(&argv0) {
        command = command.bin_name("kubectl bellows");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    match parse().command {
        Command::Plugin(verb) => bellows::plugin::run(verb),
        Command::Crd => {
            print!("{}", crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run {
            metrics_addr,
            log_format,
        } => {
            init_logging(log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(run(metrics_addr)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "bellows stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn crd_yaml() -> String {
    let yaml = serde_saphyr::to_string(&SchemaRollout::crd()).expect("the CRD serializes");
    format!("---\n{yaml}")
}

async fn run(metrics_addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let client = kube::Client::try_default().await?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();

    let flag = ready.clone();
    let http_metrics = metrics.clone();
    let (store_tx, store_rx) = tokio::sync::oneshot::channel();
    let controller = bellows::controller::run(client, metrics, move |store| {
        flag.store(true, Ordering::Relaxed);
        tracing::info!("watches synced; ready");
        let _ = store_tx.send(store);
    });
    let server = tokio::spawn(async move {
        let Ok(store) = store_rx.await else {
            return Ok(());
        };
        let probe = Probe {
            metrics: http_metrics,
            store,
            ready,
        };
        http::serve(metrics_addr, probe, async {
            let _ = http_stopped.await;
        })
        .await
    });
    controller.await;
    let _ = stop_http.send(());
    server.await??;
    Ok(())
}
