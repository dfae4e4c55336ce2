//! VRRP failover benchmark: the client-visible outage when the master node dies (its link goes
//! down and the daemon gets SIGKILL) and when the daemon stops cleanly (SIGTERM: priority 0),
//! lb against keepalived with the same settings, measured by a client probing the VIP every
//! 10 ms: from the stop (or the old master's last answer, if later) to the new master's first
//! answer. Fresh lab per sample.

use std::{
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir},
    netns::Lab,
    topology::{SEGMENT_VIP, vrrp_segment},
    traffic::{line_echo_server, who_answers},
};
use nix::sys::signal::Signal;
use tokio::net::TcpListener;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Daemon {
    Lb,
    Keepalived,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stop {
    Kill,
    Clean,
}

/// (version, advert in ms).
const SETTINGS: [(u8, u64); 2] = [(3, 100), (2, 1000)];

fn reps() -> usize {
    std::env::var("LB_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// A running node: how to stop it.
enum Node {
    Lb(RunningAgent),
    Keepalived { parent: u32, vrrp_pid_file: PathBuf },
}

fn start(
    lab: &Lab,
    host: &str,
    daemon: Daemon,
    priority: u8,
    version: u8,
    advert_ms: u64,
) -> anyhow::Result<Node> {
    let dir = tempfile::tempdir()?.keep();
    match daemon {
        Daemon::Lb => {
            let bpf_dir = unique_bpf_dir();
            let advert = if version == 2 {
                format!("{}s", advert_ms / 1000)
            } else {
                format!("{advert_ms}ms")
            };
            let config = format!(
                "[global]\nbpf_dir = \"{}\"\n\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\n\
                 priority = {priority}\nversion = {version}\nadvert = \"{advert}\"\nvips = [\"{SEGMENT_VIP}/24\"]\n",
                bpf_dir.display()
            );
            Ok(Node::Lb(RunningAgent::start(
                lab,
                lab.host(host),
                &config,
                &bpf_dir,
                &[],
            )?))
        }
        Daemon::Keepalived => {
            let advert = advert_ms as f64 / 1000.0;
            let config = format!(
                "global_defs {{\n  router_id {host}\n  vrrp_garp_master_delay 0\n}}\n\
                 vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  version {version}\n  \
                 virtual_router_id 51\n  priority {priority}\n  advert_int {advert}\n  \
                 virtual_ipaddress {{\n    {SEGMENT_VIP}/24\n  }}\n}}\n"
            );
            let file = dir.join("keepalived.conf");
            std::fs::write(&file, config)?;
            let vrrp_pid_file = dir.join("vrrp.pid");
            let mut command = lab.host(host).command("keepalived")?;
            command
                .args(["--dont-fork", "--no-syslog", "--vrrp", "-f"])
                .arg(&file)
                .arg("-p")
                .arg(dir.join("keepalived.pid"))
                .arg("-r")
                .arg(&vrrp_pid_file)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let parent = lab
                .start(command)
                .context("starting keepalived (run `cargo xtask setup`)")?;
            Ok(Node::Keepalived {
                parent,
                vrrp_pid_file,
            })
        }
    }
}

fn stop(lab: &Lab, node: Node, how: Stop) -> anyhow::Result<()> {
    let signal = if how == Stop::Kill {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    match node {
        Node::Lb(agent) => {
            lab.stop(agent.pid(), signal)?;
        }
        Node::Keepalived {
            parent,
            vrrp_pid_file,
        } => {
            if how == Stop::Kill {
                // A crash takes the whole daemon: its VRRP child first, so the parent cannot
                // restart it or make it leave cleanly.
                let child: i32 = std::fs::read_to_string(&vrrp_pid_file)?.trim().parse()?;
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), Signal::SIGKILL)?;
            }
            lab.stop(parent, signal)?;
        }
    }
    Ok(())
}

/// One sample: the gap between the last answer from node1 and the first from node2.
fn sample(
    daemon: Daemon,
    how: Stop,
    version: u8,
    advert_ms: u64,
    rep: usize,
) -> anyhow::Result<Duration> {
    let lab = vrrp_segment(&format!("fo{rep}"), 2).build()?;
    for i in 1..=2 {
        let name = format!("node{i}");
        lab.host(&name).spawn(move || async move {
            let listener = TcpListener::bind(("0.0.0.0", 7000)).await.expect("bind");
            line_echo_server(listener, name, Duration::from_secs(60)).await;
        })?;
    }
    let _backup = start(&lab, "node2", daemon, 100, version, advert_ms)?;
    let master = start(&lab, "node1", daemon, 150, version, advert_ms)?;
    let vip: SocketAddr = format!("{SEGMENT_VIP}:7000").parse()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stopped_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let stopped = stopped_at.clone();
    let prober = lab.host("client").spawn(move || async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_node1 = None;
        let mut told = false;
        while Instant::now() < deadline {
            let started = Instant::now();
            match who_answers(vip, Duration::from_millis(20)).await.as_deref() {
                Some("node1") => {
                    last_node1 = Some(Instant::now());
                    if !told {
                        let _ = ready_tx.send(());
                        told = true;
                    }
                }
                Some("node2") if told => {
                    // Outage: from the later of the stop and the old master's last answer.
                    let stop = stopped.lock().ok().and_then(|s| *s)?;
                    let from = last_node1.map_or(stop, |t: Instant| t.max(stop));
                    return Some(from.elapsed());
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(10).saturating_sub(started.elapsed())).await;
        }
        None
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(15))
        .context("node1 never became master")?;
    std::thread::sleep(Duration::from_millis(300));
    if how == Stop::Kill {
        // A crashed node goes silent as a whole: its link first, then the daemon.
        let status = lab
            .host("node1")
            .command("ip")?
            .args(["link", "set", "eth0", "down"])
            .status()?;
        anyhow::ensure!(status.success(), "ip link set eth0 down failed");
    }
    if let Ok(mut at) = stopped_at.lock() {
        *at = Some(Instant::now());
    }
    stop(&lab, master, how)?;
    match prober
        .join()
        .map_err(|_| anyhow::anyhow!("prober panicked"))?
    {
        Some(gap) => Ok(gap),
        None => bail!("node2 never answered after node1 stopped"),
    }
}

/// Runs the benchmark and prints the table.
pub fn failover() -> anyhow::Result<()> {
    println!(
        "failover: client probing the VIP every 10 ms; outage = from the stop (or the old master's last answer, \
         if later) to the new master's first answer; {} fresh-lab samples each, median [min-max]",
        reps()
    );
    println!(
        "{:<22} {:<14} {:>26} {:>26} {:>8}",
        "settings", "stop", "lb", "keepalived", "lb/ka"
    );
    for (version, advert_ms) in SETTINGS {
        for how in [Stop::Kill, Stop::Clean] {
            let mut medians = Vec::new();
            let mut cells = Vec::new();
            for daemon in [Daemon::Lb, Daemon::Keepalived] {
                let mut gaps = Vec::new();
                for rep in 0..reps() {
                    let gap = sample(daemon, how, version, advert_ms, rep).with_context(|| {
                        format!("{daemon:?} {how:?} v{version} {advert_ms} ms rep {rep}")
                    })?;
                    gaps.push(gap.as_secs_f64() * 1000.0);
                }
                gaps.sort_by(f64::total_cmp);
                let median = gaps[gaps.len() / 2];
                medians.push(median);
                cells.push(format!(
                    "{median:.0} ms [{:.0}-{:.0}]",
                    gaps[0],
                    gaps[gaps.len() - 1]
                ));
            }
            let stop = if how == Stop::Kill {
                "SIGKILL"
            } else {
                "clean stop"
            };
            println!(
                "{:<22} {:<14} {:>26} {:>26} {:>8.2}",
                format!("v{version}, advert {advert_ms} ms"),
                stop,
                cells[0],
                cells[1],
                medians[0] / medians[1]
            );
        }
    }
    Ok(())
}
