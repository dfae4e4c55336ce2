//! VRRP failover benchmark: the client-visible outage when the master node dies (its link goes
//! down and the daemon gets SIGKILL), when the daemon stops cleanly (SIGTERM: priority 0) and
//! when a higher-priority node returns and preempts, lb against keepalived with the same
//! settings, measured by a client probing the VIP every 10 ms: from the event (or the old
//! master's last answer, if later) to the new master's first answer, and the probes that got
//! no answer in between. Fresh lab per sample.

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
    /// node1 (higher priority) starts while node2 is master.
    Preempt,
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

/// One sample: the gap between the old master's last answer and the new one's first, and the
/// probes lost in between (node1 to node2 on a stop, node2 to node1 on a preemption).
fn sample(
    daemon: Daemon,
    how: Stop,
    version: u8,
    advert_ms: u64,
    rep: usize,
) -> anyhow::Result<(Duration, u32)> {
    let lab = vrrp_segment(&format!("fo{rep}"), 2).build()?;
    for i in 1..=2 {
        let name = format!("node{i}");
        lab.host(&name).spawn(move || async move {
            let listener = TcpListener::bind(("0.0.0.0", 7000)).await.expect("bind");
            line_echo_server(listener, name, Duration::from_secs(60)).await;
        })?;
    }
    let _node2 = start(&lab, "node2", daemon, 100, version, advert_ms)?;
    let master = if how == Stop::Preempt {
        None
    } else {
        Some(start(&lab, "node1", daemon, 150, version, advert_ms)?)
    };
    let (old, new) = if how == Stop::Preempt {
        ("node2", "node1")
    } else {
        ("node1", "node2")
    };
    let vip: SocketAddr = format!("{SEGMENT_VIP}:7000").parse()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stopped_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let stopped = stopped_at.clone();
    let prober = lab.host("client").spawn(move || async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last_old = None;
        let mut told = false;
        let mut lost = 0u32;
        while Instant::now() < deadline {
            let started = Instant::now();
            let answer = who_answers(vip, Duration::from_millis(20)).await;
            match answer.as_deref() {
                Some(name) if name == old => {
                    last_old = Some(Instant::now());
                    if !told {
                        let _ = ready_tx.send(());
                        told = true;
                    }
                }
                Some(name) if name == new && told => {
                    // Outage: from the later of the event and the old master's last answer.
                    let stop = stopped.lock().ok().and_then(|s| *s)?;
                    let from = last_old.map_or(stop, |t: Instant| t.max(stop));
                    return Some((from.elapsed(), lost));
                }
                None if told && stopped.lock().ok().and_then(|s| *s).is_some() => lost += 1,
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(10).saturating_sub(started.elapsed())).await;
        }
        None
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(15))
        .with_context(|| format!("{old} never became master"))?;
    std::thread::sleep(Duration::from_millis(300));
    if how == Stop::Preempt {
        if let Ok(mut at) = stopped_at.lock() {
            *at = Some(Instant::now());
        }
        let _node1 = start(&lab, "node1", daemon, 150, version, advert_ms)?;
        return match prober
            .join()
            .map_err(|_| anyhow::anyhow!("prober panicked"))?
        {
            Some(gap) => Ok(gap),
            None => bail!("node1 never answered after it returned"),
        };
    }
    let master = master.context("node1 runs")?;
    if how == Stop::Kill {
        // A crashed node goes silent as a whole: its link first, then the daemon.
        link_down(&lab, "node1")?;
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

/// Takes `node`'s segment link down.
fn link_down(lab: &Lab, node: &str) -> anyhow::Result<()> {
    let status = lab
        .host(node)
        .command("ip")?
        .args(["link", "set", "eth0", "down"])
        .status()?;
    anyhow::ensure!(status.success(), "ip link set eth0 down failed");
    Ok(())
}

/// Established flows kept across a fault of the master, in `mode`: (kept, total).
fn flows_kept(mode: &str, how: Stop, rep: usize) -> anyhow::Result<(usize, usize)> {
    use lb_tests::ha;
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let lab = ha::ha_lab(&format!("fk{mode}{rep}"), mode).build()?;
    ha::serve_reals(&lab);
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _node2 = ha::start_in(&lab, "node2", &dir2, 100, mode);
    let node1 = ha::start_in(&lab, "node1", &dir1, 150, mode);
    ha::wait_for_vip(&lab, "node1");
    std::thread::sleep(Duration::from_millis(300));
    let stop_flows = Arc::new(AtomicBool::new(false));
    let streaming = ha::start_streaming(&lab, &stop_flows);
    std::thread::sleep(Duration::from_secs(1));
    if how == Stop::Kill {
        link_down(&lab, "node1")?;
        lab.stop(node1.pid(), Signal::SIGKILL)?;
    } else {
        lab.stop(node1.pid(), Signal::SIGTERM)?;
    }
    std::thread::sleep(Duration::from_secs(2));
    stop_flows.store(true, Ordering::Relaxed);
    let flows = streaming
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))?;
    let kept = flows.iter().filter(|f| f.failure.is_none()).count();
    Ok((kept, flows.len()))
}

/// Runs the benchmark and prints the table.
pub fn failover() -> anyhow::Result<()> {
    println!(
        "failover: client probing the VIP every 10 ms; outage = from the stop (or the old master's last answer, \
         if later) to the new master's first answer; {} fresh-lab samples each, median [min-max]",
        reps()
    );
    println!(
        "{:<22} {:<14} {:>34} {:>34} {:>8}",
        "settings", "event", "lb (lost probes)", "keepalived (lost probes)", "lb/ka"
    );
    for (version, advert_ms) in SETTINGS {
        for how in [Stop::Kill, Stop::Clean, Stop::Preempt] {
            let mut medians = Vec::new();
            let mut cells = Vec::new();
            for daemon in [Daemon::Lb, Daemon::Keepalived] {
                let mut gaps = Vec::new();
                let mut lost = Vec::new();
                for rep in 0..reps() {
                    let (gap, lost_probes) = sample(daemon, how, version, advert_ms, rep)
                        .with_context(|| {
                            format!("{daemon:?} {how:?} v{version} {advert_ms} ms rep {rep}")
                        })?;
                    gaps.push(gap.as_secs_f64() * 1000.0);
                    lost.push(lost_probes);
                }
                gaps.sort_by(f64::total_cmp);
                lost.sort_unstable();
                let median = gaps[gaps.len() / 2];
                medians.push(median);
                cells.push(format!(
                    "{median:.0} ms [{:.0}-{:.0}] ({} lost)",
                    gaps[0],
                    gaps[gaps.len() - 1],
                    lost[lost.len() / 2]
                ));
            }
            let event = match how {
                Stop::Kill => "SIGKILL",
                Stop::Clean => "clean stop",
                Stop::Preempt => "preemption",
            };
            println!(
                "{:<22} {:<14} {:>34} {:>34} {:>8.2}",
                format!("v{version}, advert {advert_ms} ms"),
                event,
                cells[0],
                cells[1],
                medians[0] / medians[1].max(1.0)
            );
        }
    }
    println!(
        "\nestablished flows kept: {} streaming connections through the VIP (L4 in XDP, VRRP v3 \
         100 ms, two nodes, one config) while the master fails; {} fresh-lab samples each",
        lb_tests::ha::FLOWS,
        reps()
    );
    println!("{:<8} {:<14} {:>14}", "mode", "event", "lb kept");
    for mode in ["dr", "nat"] {
        for how in [Stop::Kill, Stop::Clean] {
            let (mut kept, mut total) = (0, 0);
            for rep in 0..reps() {
                let (k, t) = flows_kept(mode, how, rep)
                    .with_context(|| format!("flows kept, {mode} {how:?} rep {rep}"))?;
                kept += k;
                total += t;
            }
            let event = if how == Stop::Kill {
                "SIGKILL"
            } else {
                "clean stop"
            };
            println!(
                "{mode:<8} {event:<14} {:>13.1}%",
                100.0 * kept as f64 / total.max(1) as f64
            );
        }
    }
    println!(
        "(keepalived has no L4 balancer of its own here: IPVS is not in this kernel; IPVS without \
         its sync daemon loses NAT flows on a failover)"
    );
    Ok(())
}
