//! jetstream-operator binary: parse the command line and hand over to the library.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use jetstream_operator::admin::{self, Readiness};
use jetstream_operator::cli::{Cli, Command};
use jetstream_operator::controller::{kinds, runner};
use jetstream_operator::metrics::Metrics;
use jetstream_operator::{inspect, telemetry};
use tracing::{error, info};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let raw: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let (args, nack_notes) = jetstream_operator::cli::translate_nack_args(raw);
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Crd => {
            print!("{}", kinds::crds_yaml()?);
            Ok(())
        }
        Command::Streams(conn) => {
            telemetry::init(telemetry::LogFormat::Text, Some("warn"));
            print!(
                "{}",
                inspect::streams_table(&conn.default_connection()).await?
            );
            Ok(())
        }
        Command::Run(args) => {
            telemetry::init(args.log_format, args.log_filter().as_deref());
            for note in &nack_notes {
                info!("{note}");
            }
            let settings = args.settings();
            let client = kube_client(args.kubeconfig.as_deref()).await?;
            let metrics = Arc::new(Metrics::new());
            kinds::init_metrics(&metrics);
            let readiness = Arc::new(Readiness::default());
            let (addr, server) =
                admin::bind(args.admin_address, metrics.clone(), readiness.clone())
                    .await
                    .with_context(|| format!("cannot listen on {}", args.admin_address))?;
            info!(%addr, "admin server listening (/livez /readyz /metrics)");
            tokio::spawn(async move {
                if let Err(e) = server.await {
                    error!(error = %e, "admin server stopped");
                }
            });
            match args.leader_election() {
                Some(election) => {
                    runner::run_elected(
                        client,
                        settings,
                        metrics,
                        readiness,
                        election,
                        shutdown_signal(),
                    )
                    .await
                }
                None => {
                    metrics.leader.set(1);
                    runner::run(client, settings, metrics, readiness, shutdown_signal()).await
                }
            }
        }
    }
}

/// A Kubernetes client from `kubeconfig`, else KUBECONFIG, ~/.kube/config or the pod's
/// service account.
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("cannot use kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("cannot build a Kubernetes client (KUBECONFIG or in-cluster config)")?,
    };
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    info!("shutting down");
}
