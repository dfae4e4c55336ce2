//! Netns lab: two balancer nodes as one system. Both run the same configuration (the hash
//! seed included) with a VRRP instance owning the VIP, an L4 service on it (DR, TUN or NAT)
//! forwarded by XDP on the master only, and an HTTP frontend on the same VIP (answering after
//! every fault, through whichever node is master); three reals and a client share the segment.
//! Fifty long-lived connections stream through the VIP while the master is killed, returns
//! and preempts, is stopped cleanly, returns again and loses its link: none is reset, none
//! loses an exchange, each stays on its real (both nodes build the same Maglev tables). While
//! a node is backup its XDP forwards nothing (service packets that reach it are dropped and
//! counted as `VipInactive`). Also: a clean stop and a preemption lose no probe
//! (make-before-break), and with `[sync]` flows keep their real even when the real set
//! changed before the failover (a real added, another drained), and closed flows leave the
//! peer. Needs root.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use lb_common::counters::Counter;
use lb_tests::{
    agent::{RunningAgent, start_decap, stat, unique_bpf_dir},
    ha::{
        FLOWS, Flow, PORT, REALS, broken, config_with, ha_lab, ha_lab_with, serve_reals,
        serve_reals_up_to, start, start_in, start_streaming, until_site_answers, wait_for_vip,
    },
    require_root,
    topology::SEGMENT_VIP,
};
use nix::sys::signal::Signal;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
};

/// Fails the test with what went wrong in each flow that broke, if any did.
fn assert_unbroken(flows: &[Flow]) {
    let failed = broken(flows);
    assert!(
        failed.is_empty(),
        "{} flows broke:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn established_dr_flows_survive_failover_preemption_and_clean_stop() {
    flows_survive("dr");
}

/// The same in TUN mode: the reals strip the IPIP header with `lb decap`; both nodes derive
/// the same outer source from the flow hash.
#[test]
fn established_tun_flows_survive_failover_preemption_and_clean_stop() {
    flows_survive("tun");
}

/// NAT mode: the new master has no NAT entry for a flow until the client's next packet
/// reaches it (it makes one as it forwards), and the reals' replies come back through the
/// gateway address that moved with the VIP.
#[test]
fn established_nat_flows_survive_failover_preemption_and_clean_stop() {
    flows_survive("nat");
}

fn flows_survive(mode: &str) {
    require_root();
    let lab = ha_lab(&format!("ha{mode}"), mode)
        .build()
        .expect("build the lab");
    if mode == "tun" {
        for i in 1..=REALS {
            let host = lab.host(&format!("real{i}"));
            start_decap(&lab, host, "eth0", &[SEGMENT_VIP], &unique_bpf_dir()).expect("lb decap");
        }
    }
    serve_reals(&lab);
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let node2 = start_in(&lab, "node2", &dir2, 100, mode);
    let node1 = start_in(&lab, "node1", &dir1, 150, mode);
    // node2, started first, was master alone for a moment; node1 preempts it.
    wait_for_vip(&lab, "node1");
    std::thread::sleep(Duration::from_millis(300));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = lab
        .host("client")
        .spawn(|| async {
            for _ in 0..100 {
                let connect = TcpStream::connect(format!("{SEGMENT_VIP}:{PORT}"));
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
        .expect("probe")
        .join()
        .expect("probe thread");
    assert!(probe, "the VIP never answered");

    let streaming = start_streaming(&lab, &stop);
    let backup_tx = stat(&node2.stats().expect("node2 stats"), Counter::Tx);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        stat(&node2.stats().expect("node2 stats"), Counter::Tx),
        backup_tx,
        "the backup forwarded VIP traffic"
    );

    // The L7 frontend on the same VIP answers through the master.
    until_site_answers(&lab, Duration::from_secs(2));

    // The master dies; node2 takes over, L4 and L7.
    lab.stop(node1.pid(), Signal::SIGKILL).expect("kill node1");
    std::thread::sleep(Duration::from_secs(2));
    until_site_answers(&lab, Duration::from_secs(3));
    let taken_over = stat(&node2.stats().expect("node2 stats"), Counter::Tx);
    assert!(taken_over > backup_tx, "node2 forwards after the failover");
    // node1 returns with the higher priority and preempts.
    let node1 = start_in(&lab, "node1", &dir1, 150, mode);
    std::thread::sleep(Duration::from_secs(2));
    until_site_answers(&lab, Duration::from_secs(3));
    // node1 stops cleanly; node2 takes over again.
    lab.stop(node1.pid(), Signal::SIGTERM).expect("stop node1");
    std::thread::sleep(Duration::from_secs(2));
    until_site_answers(&lab, Duration::from_secs(3));
    // node1 returns once more, preempts, and loses its link: node2 takes over.
    let _node1 = start_in(&lab, "node1", &dir1, 150, mode);
    wait_for_vip(&lab, "node1");
    std::thread::sleep(Duration::from_millis(1500));
    let down = lab
        .host("node1")
        .command("ip")
        .expect("ip")
        .args(["link", "set", "eth0", "down"])
        .status()
        .expect("ip link");
    assert!(down.success(), "link down");
    std::thread::sleep(Duration::from_secs(2));
    until_site_answers(&lab, Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let flows = streaming.join().expect("client thread");

    assert_unbroken(&flows);
    let reals: std::collections::BTreeSet<&str> = flows.iter().map(|f| f.real.as_str()).collect();
    assert_eq!(
        reals.len(),
        REALS,
        "flows spread over every real: {reals:?}"
    );
    let fewest = flows.iter().map(|f| f.exchanges).min().unwrap_or(0);
    assert!(
        fewest > 50,
        "every flow kept exchanging through the faults (fewest: {fewest})"
    );
    drop(node2);
}

/// Probes the VIP with a new connection and one exchange every 10 ms until `stop`; returns
/// (probes, lost), a probe lost when it does not complete within 300 ms (a dropped SYN is
/// retransmitted only after a second).
async fn probe_until(stop: Arc<AtomicBool>) -> (u32, Vec<String>) {
    let vip = format!("{SEGMENT_VIP}:{PORT}");
    let (mut probes, mut lost) = (0, Vec::new());
    let started = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        probes += 1;
        let exchange = async {
            let stream = TcpStream::connect(&vip).await?;
            let (reader, mut writer) = stream.into_split();
            writer.write_all(b"probe\n").await?;
            BufReader::new(reader)
                .lines()
                .next_line()
                .await?
                .ok_or_else(|| std::io::Error::other("closed"))
        };
        match tokio::time::timeout(Duration::from_millis(300), exchange).await {
            Ok(Ok(_)) => {}
            other => lost.push(format!("at {:?}: {other:?}", started.elapsed())),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (probes, lost)
}

/// Make-before-break: a master stopped cleanly keeps its VIP and forwards until it hears the
/// new master (which announces before it advertises and only once its maps forward), and a
/// returning higher-priority node preempts the same way: a probe every 10 ms loses nothing.
/// (keepalived removes the VIP at once and loses the backup's skew time.)
#[test]
fn clean_stop_and_preemption_lose_no_probe() {
    require_root();
    let lab = ha_lab("hastop", "dr").build().expect("build the lab");
    serve_reals(&lab);
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _node2 = start(&lab, "node2", &dir2, 100);
    let node1 = start(&lab, "node1", &dir1, 150);
    wait_for_vip(&lab, "node1");
    std::thread::sleep(Duration::from_millis(500));
    let stop = Arc::new(AtomicBool::new(false));
    let probing = {
        let stop = stop.clone();
        lab.host("client")
            .spawn(move || probe_until(stop))
            .expect("prober")
    };
    std::thread::sleep(Duration::from_millis(500));
    lab.stop(node1.pid(), Signal::SIGTERM).expect("stop node1");
    wait_for_vip(&lab, "node2");
    std::thread::sleep(Duration::from_millis(1500));
    let _node1 = start(&lab, "node1", &dir1, 150);
    wait_for_vip(&lab, "node1");
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let (probes, lost) = probing.join().expect("prober thread");
    eprintln!("{probes} probes, {} lost", lost.len());
    assert!(probes > 100, "{probes} probes");
    assert!(lost.is_empty(), "lost probes:\n{}", lost.join("\n"));
}

const SYNC: &str = "\n[sync]\npeers = [\"10.0.5.11\", \"10.0.5.12\"]\nkey = \"lab sync key, 16+ bytes\"\n\
                    fin_timeout = \"1s\"\nrst_timeout = \"1s\"\n";

/// Connection-table sync: flows start on node1 while it runs alone; node2 joins and asks for
/// a copy of node1's tables; then the real set changes on both nodes (reload): a fourth real
/// joins and real1 is drained (weight 0), so Maglev now sends real1's slots and about a
/// quarter of the others elsewhere. node1 keeps the flows by its connection table, and node2
/// has the same entries from the copy. node1 is killed: every flow stays on its real through
/// node2, real1's included. (Without the sync, the moved flows reach another real and are
/// reset: checked by hand with `[sync]` left out.) node1 then returns as a new machine, takes
/// node2's copy before it preempts, and the flows carry on through it; new connections avoid
/// the drained real. When the flows end, the node that forwarded them tells its peer, which
/// removes them once the closing timeout has passed.
#[test]
fn synced_flows_keep_their_real_when_the_real_set_changed_before_a_failover() {
    require_root();
    let lab = ha_lab_with("hasync", "dr", 4)
        .build()
        .expect("build the lab");
    serve_reals_up_to(&lab, 4);
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let agent = |node: &str, dir: &std::path::Path, priority: u8, sync: &str| {
        RunningAgent::start(
            &lab,
            lab.host(node),
            &config_with(dir, priority, "dr", &[1; REALS], sync),
            dir,
            &[],
        )
        .unwrap_or_else(|e| panic!("{node}: {e:#}"))
    };
    // node1 starts with other closing timeouts: its reload below restarts its sync.
    let node1 = agent(
        "node1",
        &dir1,
        150,
        &SYNC.replace("fin_timeout = \"1s\"", "fin_timeout = \"5s\""),
    );
    wait_for_vip(&lab, "node1");
    let stop = Arc::new(AtomicBool::new(false));
    let streaming = start_streaming(&lab, &stop);
    std::thread::sleep(Duration::from_secs(1));
    // node2 joins the running flows: its copy request brings them.
    let node2 = agent("node2", &dir2, 100, SYNC);
    std::thread::sleep(Duration::from_millis(1500));
    // A fourth real on both nodes, and real1 drained.
    for (node, dir, priority, sync) in [
        (&node1, &dir1, 150, "sync restarted"),
        (&node2, &dir2, 100, "sync kept"),
    ] {
        let answer = node
            .reload(&config_with(dir, priority, "dr", &CHANGED, SYNC))
            .expect("reload");
        assert!(answer.contains(sync), "{answer}");
    }
    // Until both nodes resolved the new real's MAC (the next-hop refresh runs every 2 s) and
    // Maglev sends part of the slots to it.
    std::thread::sleep(Duration::from_secs(3));
    // A message under another key (a forgery) is refused and counted, and changes nothing.
    let forged = lb::sync::wire::encode(
        &lb::sync::wire::Message {
            kind: lb::sync::wire::Kind::Flows,
            hash_seed: 0x5eed,
            sender: 1,
            sequence: 1,
            entries: Vec::new(),
        },
        b"not the key the nodes share",
    );
    lab.host("client")
        .spawn(move || async move {
            let socket = tokio::net::UdpSocket::bind("0.0.0.0:0")
                .await
                .expect("bind");
            socket
                .send_to(&forged, "10.0.5.12:7950")
                .await
                .expect("send");
        })
        .expect("forger")
        .join()
        .expect("forger thread");
    std::thread::sleep(Duration::from_millis(200));
    let shown = node2.ctl("show sync").expect("show sync");
    lab.stop(node1.pid(), Signal::SIGKILL).expect("kill node1");
    std::thread::sleep(Duration::from_secs(2));
    // node1 returns with nothing pinned (a new machine: its old pins, link included, go): it
    // gets node2's copy, and only then preempts; the flows stay on their reals through it.
    drop(dir1);
    let fresh = unique_bpf_dir();
    let node1 = RunningAgent::start(
        &lab,
        lab.host("node1"),
        &config_with(&fresh, 150, "dr", &CHANGED, SYNC),
        &fresh,
        &[],
    )
    .expect("node1 again");
    wait_for_vip(&lab, "node1");
    std::thread::sleep(Duration::from_millis(1500));
    let returned = node1.ctl("show sync").expect("show sync");
    let fresh_reals = lab
        .host("client")
        .spawn(|| async { new_connections_reach(20).await })
        .expect("client")
        .join()
        .expect("client thread");
    stop.store(true, Ordering::Relaxed);
    let flows = streaming.join().expect("client thread");
    assert!(
        !returned.contains("applied 0 "),
        "the returning node applied the copy: {returned}"
    );
    let applied = field(&shown, "applied");
    assert!(
        applied >= FLOWS as u64,
        "node2 applied {applied} synced flows: {shown}"
    );
    assert!(
        shown.contains("refused 1 "),
        "the forged message was refused: {shown}"
    );
    assert_unbroken(&flows);
    assert!(
        flows.iter().any(|f| f.real == "real1"),
        "some flows were on the drained real"
    );
    assert!(
        !fresh_reals.iter().any(|r| r == "real1") && fresh_reals.len() == 20,
        "new connections avoid the drained real: {fresh_reals:?}"
    );
    // The flows ended (the client closed them through node1): node2 removes them after the
    // closing timeout (1 s here).
    std::thread::sleep(Duration::from_secs(3));
    let after = node2.ctl("show sync").expect("show sync");
    let removed = field(&after, "removed");
    assert!(
        removed >= FLOWS as u64,
        "node2 removed the {FLOWS} closed flows: {after}"
    );
    drop(node2);
}

/// Weights after the change: real1 drained, real4 added.
const CHANGED: [u32; 4] = [0, 1, 1, 1];

/// The number after `name` in a `show sync` line.
fn field(shown: &str, name: &str) -> u64 {
    shown
        .split_whitespace()
        .skip_while(|w| *w != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `count` new connections with one exchange each; the reals that answered.
async fn new_connections_reach(count: usize) -> Vec<String> {
    let mut reals = Vec::new();
    for i in 0..count {
        let exchange = async {
            let stream = TcpStream::connect(format!("{SEGMENT_VIP}:{PORT}")).await?;
            let (reader, mut writer) = stream.into_split();
            writer.write_all(format!("new-{i}\n").as_bytes()).await?;
            let line = BufReader::new(reader)
                .lines()
                .next_line()
                .await?
                .ok_or_else(|| std::io::Error::other("closed"))?;
            Ok::<_, std::io::Error>(line.split(':').next().unwrap_or_default().to_string())
        };
        if let Ok(Ok(real)) = tokio::time::timeout(Duration::from_secs(2), exchange).await {
            reals.push(real);
        }
    }
    reals
}
