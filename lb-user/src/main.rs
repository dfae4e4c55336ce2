//! `lb`: the command-line entry point of the agent.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use lb::config::{self, XdpModeSetting};
use tokio::signal::unix::{SignalKind, signal};

/// lb: L4 balancing in XDP, an L7 proxy and VRRP in one agent.
#[derive(Parser)]
#[command(name = "lb", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent: load and attach the XDP balancer, until SIGINT or SIGTERM.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
        /// Force the XDP attach mode on every interface (auto, native, generic).
        #[arg(long, value_parser = clap::value_parser!(XdpModeSetting))]
        xdp_mode: Option<XdpModeSetting>,
    },
    /// Validate a configuration file without running anything.
    Check {
        /// Configuration file.
        #[arg(short, long, default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
    },
    /// Print the data plane's counters (read from the running agent's pinned maps).
    Stats {
        /// bpffs directory the agent pins to (global.bpf_dir).
        #[arg(long, default_value = lb_common::maps::DEFAULT_PIN_DIR)]
        bpf_dir: PathBuf,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run_cli(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lb: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            let loaded = config::load_file(&config)?;
            println!(
                "{}: configuration is valid ({} interface(s))",
                config.display(),
                loaded.interfaces.len()
            );
            Ok(())
        }
        Command::Run { config, xdp_mode } => {
            let loaded = config::load_file(&config)?;
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(async {
                let mut terminate =
                    signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
                let mut interrupt =
                    signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
                let shutdown = async move {
                    tokio::select! {
                        _ = terminate.recv() => {},
                        _ = interrupt.recv() => {},
                    }
                };
                lb::agent::run(loaded, xdp_mode, shutdown).await?;
                anyhow::Ok(())
            })
        }
        Command::Stats { bpf_dir, json } => {
            let snapshot = lb::dataplane::read_counters(&bpf_dir).with_context(|| {
                format!(
                    "reading counters pinned under {} (is `lb run` running with this bpf_dir?)",
                    bpf_dir.display()
                )
            })?;
            if json {
                let fields: Vec<String> = snapshot
                    .values
                    .iter()
                    .map(|(c, v)| format!("\"{}\":{v}", c.name()))
                    .collect();
                println!("{{{}}}", fields.join(","));
            } else {
                for (counter, value) in &snapshot.values {
                    println!("{:<16} {value}", counter.name());
                }
            }
            Ok(())
        }
    }
}
