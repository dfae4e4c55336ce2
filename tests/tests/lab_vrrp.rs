//! Netns lab: two balancer nodes run VRRP for one VIP on a shared segment; a client reaches
//! the VIP with real TCP connections. Election by priority, failover when the master is
//! killed and when it stops cleanly (priority 0: the backup takes over after its skew time),
//! preemption on return, and a real keepalived as the peer. Needs root.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir},
    netns::Lab,
    require_root,
    topology::{SEGMENT_VIP, vrrp_segment},
    traffic::line_echo_server,
};
use nix::sys::signal::Signal;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};

const ADVERT_MS: u64 = 100;

fn lb_config(bpf_dir: &std::path::Path, priority: u8, preempt: bool) -> String {
    format!(
        "[global]\nbpf_dir = \"{}\"\n\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         version = 3\nadvert = \"{ADVERT_MS}ms\"\npreempt = {preempt}\nvips = [\"{SEGMENT_VIP}/24\"]\n",
        bpf_dir.display()
    )
}

/// Every node answers on port 7000 with its own name.
fn serve_names(lab: &Lab, nodes: usize) {
    for i in 1..=nodes {
        let name = format!("node{i}");
        lab.host(&name)
            .spawn(move || async move {
                let listener = TcpListener::bind(("0.0.0.0", 7000)).await.expect("bind");
                line_echo_server(listener, name, Duration::from_secs(120)).await;
            })
            .expect("server");
    }
}

/// Which node answers on the VIP right now (None if nobody does within 100 ms).
async fn who(vip: SocketAddr) -> Option<String> {
    let attempt = async {
        let stream = TcpStream::connect(vip).await.ok()?;
        let (reader, mut writer) = stream.into_split();
        writer.write_all(b"who\n").await.ok()?;
        let line = BufReader::new(reader).lines().next_line().await.ok()??;
        line.split_once(':').map(|(name, _)| name.to_string())
    };
    tokio::time::timeout(Duration::from_millis(100), attempt)
        .await
        .ok()
        .flatten()
}

/// Probes the VIP every 10 ms until `node` answers; returns how long that took.
fn until_answered_by(lab: &Lab, node: &str, limit: Duration) -> Duration {
    let node = node.to_string();
    lab.host("client")
        .spawn(move || async move {
            let vip: SocketAddr = format!("{SEGMENT_VIP}:7000").parse().expect("vip");
            let start = Instant::now();
            let mut last = None;
            while start.elapsed() < limit {
                last = who(vip).await;
                if last.as_deref() == Some(node.as_str()) {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{node} did not answer on the VIP within {limit:?} (last answer: {last:?})");
        })
        .expect("client")
        .join()
        .expect("client thread")
}

#[test]
fn election_failover_clean_stop_and_preemption() {
    require_root();
    let lab = vrrp_segment("vrrp", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _backup = RunningAgent::start(
        &lab,
        lab.host("node2"),
        &lb_config(&dir2, 100, true),
        &dir2,
        &[],
    )
    .expect("node2");
    let master = RunningAgent::start(
        &lab,
        lab.host("node1"),
        &lb_config(&dir1, 150, true),
        &dir1,
        &[],
    )
    .expect("node1");
    until_answered_by(&lab, "node1", Duration::from_secs(5));

    // The master dies: the backup waits Master_Down_Interval (3 x 100 ms + skew 61 ms).
    lab.stop(master.pid(), Signal::SIGKILL).expect("kill node1");
    let took = until_answered_by(&lab, "node2", Duration::from_secs(3));
    eprintln!("master killed: node2 answers after {took:?} (master down interval 361 ms)");
    assert!(took < Duration::from_millis(1500), "failover took {took:?}");

    // It comes back with the higher priority and preempts.
    let master = RunningAgent::start(
        &lab,
        lab.host("node1"),
        &lb_config(&dir1, 150, true),
        &dir1,
        &[],
    )
    .expect("node1 again");
    let took = until_answered_by(&lab, "node1", Duration::from_secs(3));
    eprintln!("node1 back: answers after {took:?}");

    // A clean stop sends priority 0: the backup takes over after its skew time only.
    lab.stop(master.pid(), Signal::SIGTERM).expect("stop node1");
    let took = until_answered_by(&lab, "node2", Duration::from_secs(3));
    eprintln!("master stopped cleanly: node2 answers after {took:?} (skew 61 ms)");
    assert!(
        took < Duration::from_millis(300),
        "clean failover took {took:?}"
    );
}

#[test]
fn nopreempt_keeps_the_current_master() {
    require_root();
    let lab = vrrp_segment("nopreempt", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _node2 = RunningAgent::start(
        &lab,
        lab.host("node2"),
        &lb_config(&dir2, 100, false),
        &dir2,
        &[],
    )
    .expect("node2");
    until_answered_by(&lab, "node2", Duration::from_secs(5));
    // A higher priority arriving later does not take over with nopreempt.
    let _node1 = RunningAgent::start(
        &lab,
        lab.host("node1"),
        &lb_config(&dir1, 150, false),
        &dir1,
        &[],
    )
    .expect("node1");
    std::thread::sleep(Duration::from_millis(ADVERT_MS * 10));
    until_answered_by(&lab, "node2", Duration::from_millis(500));
}
