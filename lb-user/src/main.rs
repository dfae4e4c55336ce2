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
    /// Run the agent (XDP balancer, health checks, VRRP, proxy) until SIGINT or SIGTERM;
    /// SIGHUP reloads the configuration.
    Run {
        /// Configuration file.
        #[arg(short, long, env = "LB_CONFIG", default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
        /// Force the XDP attach mode on every interface (auto, native, generic).
        #[arg(long, value_parser = clap::value_parser!(XdpModeSetting))]
        xdp_mode: Option<XdpModeSetting>,
        /// Take over from the agent running with the same bpf_dir (binary upgrade): inherit
        /// its listening sockets and VRRP mastership; it finishes its connections and exits.
        #[arg(long)]
        upgrade: bool,
    },
    /// Make the running agent re-read its configuration file (as SIGHUP does) and print
    /// what changed; a configuration with an error is refused and the running one stays.
    Reload {
        /// Configuration file of the running agent: checked first (an error in it is
        /// reported and nothing is reloaded), and it must be the file the agent runs with
        /// (default /etc/lb/lb.toml unless --bpf-dir names the agent).
        #[arg(short, long, env = "LB_CONFIG")]
        config: Option<PathBuf>,
        /// bpffs directory of the agent (global.bpf_dir), instead of reading it from -c.
        #[arg(long, env = "LB_BPF_DIR")]
        bpf_dir: Option<PathBuf>,
    },
    /// Validate a configuration file without running anything.
    Check {
        /// Configuration file.
        #[arg(short, long, env = "LB_CONFIG", default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
    },
    /// Print the data plane's counters (read from the running agent's pinned maps); with
    /// `-c`, also per-service and per-real traffic under their configured names.
    Stats {
        /// bpffs directory the agent pins to (global.bpf_dir; taken from the config with -c).
        #[arg(long, env = "LB_BPF_DIR")]
        bpf_dir: Option<PathBuf>,
        /// Configuration of the running agent, for service and real names.
        #[arg(short, long, env = "LB_CONFIG")]
        config: Option<PathBuf>,
        /// Print one JSON object of the counters instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Which real a new flow gets: computed from the config with the kernel's own hash and
    /// Maglev table (every real taken as healthy).
    Simulate {
        /// Configuration file.
        #[arg(short, long, env = "LB_CONFIG", default_value = "/etc/lb/lb.toml")]
        config: PathBuf,
        /// Client address and port (`192.0.2.7:40000`).
        #[arg(long)]
        client: std::net::SocketAddr,
        /// VIP and port (`10.0.0.100:80`).
        #[arg(long)]
        vip: std::net::SocketAddr,
        /// Protocol: tcp or udp.
        #[arg(long, default_value = "tcp")]
        protocol: String,
    },
    /// Send a command to the running agent's runtime API (`show servers`, `show stat`,
    /// `set server <service>/<server> state <ready|drain|maint>`,
    /// `set weight <backend>/<server> <0-256>`, `reload`, `help`).
    Ctl {
        /// bpffs directory of the agent (global.bpf_dir; taken from the config with -c).
        #[arg(long, env = "LB_BPF_DIR")]
        bpf_dir: Option<PathBuf>,
        /// Configuration of the running agent.
        #[arg(short, long, env = "LB_CONFIG")]
        config: Option<PathBuf>,
        /// The command's words.
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Real-server side of TUN mode: strip IPIP / IP6IP6 for these VIPs (this kernel has no
    /// tunnel module), until SIGINT or SIGTERM.
    Decap {
        /// Interface the tunnelled packets arrive on.
        #[arg(long)]
        iface: String,
        /// VIPs served here (repeat the flag).
        #[arg(long = "vip", required = true)]
        vips: Vec<std::net::IpAddr>,
        /// bpffs directory for the decap program's pins.
        #[arg(long, default_value = "/sys/fs/bpf/lb-decap")]
        bpf_dir: PathBuf,
        /// XDP attach mode.
        #[arg(long, default_value = "auto", value_parser = clap::value_parser!(XdpModeSetting))]
        xdp_mode: XdpModeSetting,
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
        Command::Run {
            config,
            xdp_mode,
            upgrade,
        } => {
            let loaded = config::load_file(&config)?;
            // One thread: a current-thread runtime, with no cross-thread scheduling to pay for
            // (HAProxy's `nbthread 1` is one event loop too).
            let mut builder = match loaded.global.threads {
                1 => tokio::runtime::Builder::new_current_thread(),
                _ => tokio::runtime::Builder::new_multi_thread(),
            };
            if loaded.global.threads > 1 {
                builder.worker_threads(loaded.global.threads);
            }
            let runtime = builder
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                let launch = if upgrade {
                    lb::agent::Launch::Upgrade
                } else {
                    lb::agent::Launch::Fresh
                };
                lb::agent::run(loaded, config, xdp_mode, launch, shutdown).await?;
                anyhow::Ok(())
            })
        }
        Command::Stats {
            bpf_dir,
            config,
            json,
        } => stats(bpf_dir, config, json),
        Command::Reload { config, bpf_dir } => reload(config, bpf_dir),
        Command::Ctl {
            bpf_dir,
            config,
            command,
        } => ctl(bpf_dir, config, &command),
        Command::Simulate {
            config,
            client,
            vip,
            protocol,
        } => {
            let loaded = config::load_file(&config)?;
            let protocol = match protocol.as_str() {
                "tcp" => config::L4Protocol::Tcp,
                "udp" => config::L4Protocol::Udp,
                other => anyhow::bail!("--protocol: expected tcp or udp, found `{other}`"),
            };
            let model = lb::dataplane::model::L4Model::from_config(&loaded);
            match model.simulate(client, vip, protocol) {
                Some((service, real)) => {
                    println!(
                        "{client} -> {vip} ({protocol:?}): service `{}`, real {} port {} (id {})",
                        service.name, real.addr, real.port, real.id
                    );
                    Ok(())
                }
                None => anyhow::bail!(
                    "no service for {vip} ({protocol:?}) with a real to choose in {}",
                    config.display()
                ),
            }
        }
        Command::Decap {
            iface,
            vips,
            bpf_dir,
            xdp_mode,
        } => {
            let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                lb::dataplane::decap::run(&bpf_dir, &iface, &vips, xdp_mode, shutdown).await?;
                anyhow::Ok(())
            })
        }
    }
}

/// `lb reload`: the file is checked here first, so its error is reported as `lb check` would;
/// the agent is told which file was meant and refuses another than its own.
fn reload(config: Option<PathBuf>, bpf_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let config = match (config, &bpf_dir) {
        (Some(config), _) => config,
        (None, Some(_)) => return ctl(bpf_dir, None, &["reload".into()]),
        (None, None) => PathBuf::from("/etc/lb/lb.toml"),
    };
    let loaded = config::load_file(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let path = std::fs::canonicalize(&config)
        .with_context(|| format!("resolving {}", config.display()))?;
    let bpf_dir = bpf_dir.unwrap_or(loaded.global.bpf_dir);
    ctl(
        Some(bpf_dir),
        None,
        &["reload".into(), path.to_string_lossy().into_owned()],
    )
}

/// `lb ctl` and `lb reload`: one command to the running agent's runtime API.
fn ctl(
    bpf_dir: Option<PathBuf>,
    config: Option<PathBuf>,
    command: &[String],
) -> anyhow::Result<()> {
    let bpf_dir = match (bpf_dir, config) {
        (Some(dir), _) => dir,
        // The running agent's bpf_dir: read leniently, the file may hold the very error the
        // reload is about to report.
        (None, Some(config)) => bpf_dir_of(&config),
        (None, None) => PathBuf::from(lb_common::maps::DEFAULT_PIN_DIR),
    };
    let path = lb::admin::socket_path(&bpf_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime
        .block_on(lb::admin::request(&path, &command.join(" ")))
        .with_context(|| {
            format!(
                "talking to the agent at {} (is `lb run` running?)",
                path.display()
            )
        })?;
    print!("{answer}");
    if answer.starts_with("error:") {
        anyhow::bail!("the agent refused the command");
    }
    Ok(())
}

/// `global.bpf_dir` of a configuration file, or the default when the file cannot be read.
fn bpf_dir_of(config: &std::path::Path) -> PathBuf {
    config::load_file(config).map_or_else(
        |_| {
            std::fs::read_to_string(config)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|table| {
                    table
                        .get("global")?
                        .get("bpf_dir")?
                        .as_str()
                        .map(PathBuf::from)
                })
                .unwrap_or_else(|| PathBuf::from(lb_common::maps::DEFAULT_PIN_DIR))
        },
        |c| c.global.bpf_dir,
    )
}

/// Resolves on SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

/// `lb stats`.
fn stats(bpf_dir: Option<PathBuf>, config: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let loaded = config.as_deref().map(config::load_file).transpose()?;
    let bpf_dir = bpf_dir
        .or_else(|| loaded.as_ref().map(|c| c.global.bpf_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(lb_common::maps::DEFAULT_PIN_DIR));
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
        return Ok(());
    }
    for (counter, value) in &snapshot.values {
        println!("{:<16} {value}", counter.name());
    }
    let Some(loaded) = loaded else {
        return Ok(());
    };
    let status = lb::agent::health_status_path(&bpf_dir);
    if let Ok(text) = std::fs::read_to_string(&status)
        && text.lines().count() > 1
    {
        println!();
        print!("{text}");
    }
    if !loaded.resolved.frontends.is_empty() {
        // Proxy counters live in the agent: ask its runtime API.
        let socket = lb::admin::socket_path(&bpf_dir);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        match runtime.block_on(lb::admin::request(&socket, "show stat")) {
            Ok(text) => {
                println!();
                print!("{text}");
            }
            Err(error) => println!(
                "\n(proxy counters unavailable at {}: {error})",
                socket.display()
            ),
        }
    }
    // The running agent may have kept ids from before a restart: name them as it did.
    let previous = lb::dataplane::pinned_ids(&bpf_dir)?;
    let model = lb::dataplane::model::L4Model::from_config_keeping(&loaded, &previous);
    let services = lb::dataplane::read_traffic(
        &bpf_dir,
        lb_common::maps::SERVICE_STATS_MAP,
        model.services.len() as u32,
    )?;
    let reals = lb::dataplane::read_traffic(
        &bpf_dir,
        lb_common::maps::REAL_STATS_MAP,
        model.reals.len() as u32,
    )?;
    println!();
    println!(
        "{:<20} {:<28} {:>12} {:>14} {:>10}",
        "service", "vip", "packets", "bytes", "new_flows"
    );
    for service in &model.services {
        let t = &services[service.value.id as usize];
        let vip = format!("{} {:?}", service.vip, service.protocol).to_lowercase();
        println!(
            "{:<20} {:<28} {:>12} {:>14} {:>10}",
            service.name, vip, t.packets, t.bytes, t.new_flows
        );
    }
    println!();
    println!(
        "{:<28} {:>12} {:>14} {:>10}",
        "real", "packets", "bytes", "new_flows"
    );
    for real in &model.reals {
        let t = &reals[real.id as usize];
        let name = std::net::SocketAddr::new(real.addr, real.port).to_string();
        println!(
            "{:<28} {:>12} {:>14} {:>10}",
            name, t.packets, t.bytes, t.new_flows
        );
    }
    Ok(())
}
