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
    traffic::{line_echo_server, who_answers},
};
use nix::sys::signal::Signal;
use tokio::net::TcpListener;

const ADVERT_MS: u64 = 100;

fn lb_config(bpf_dir: &std::path::Path, priority: u8, preempt: bool) -> String {
    format!(
        "[global]\nbpf_dir = \"{}\"\n\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         version = 3\nadvert = \"{ADVERT_MS}ms\"\npreempt = {preempt}\nvips = [\"{SEGMENT_VIP}/24 label eth0:vip\"]\n",
        bpf_dir.display()
    )
}

/// Runs `lb run` with `config` on `node`, pinning to `dir`.
fn agent(lab: &Lab, node: &str, config: &str, dir: &std::path::Path, what: &str) -> RunningAgent {
    RunningAgent::start(lab, lab.host(node), config, dir, &[])
        .unwrap_or_else(|e| panic!("{what}: {e:#}"))
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

/// Takes interface `dev` of lab host `host` down.
fn link_down(lab: &Lab, host: &str, dev: &str) {
    let down = lab
        .host(host)
        .command("ip")
        .expect("ip")
        .args(["link", "set", dev, "down"])
        .status()
        .expect("ip");
    assert!(down.success(), "ip link set {dev} down");
}

/// Probes the VIP every 10 ms until `node` answers; returns how long that took.
fn until_answered_by(lab: &Lab, node: &str, limit: Duration) -> Duration {
    until_vip_answered_by(lab, &format!("{SEGMENT_VIP}:7000"), node, limit)
}

/// Probes `vip` (address:port) every 10 ms until `node` answers; returns how long that took.
fn until_vip_answered_by(lab: &Lab, vip: &str, node: &str, limit: Duration) -> Duration {
    let node = node.to_string();
    let vip: SocketAddr = vip.parse().expect("vip");
    lab.host("client")
        .spawn(move || async move {
            let start = Instant::now();
            let mut last = None;
            while start.elapsed() < limit {
                last = who_answers(vip, Duration::from_millis(100)).await;
                if last.as_deref() == Some(node.as_str()) {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("{node} did not answer on {vip} within {limit:?} (last answer: {last:?})");
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
    let _backup = agent(&lab, "node2", &lb_config(&dir2, 100, true), &dir2, "node2");
    let master = agent(&lab, "node1", &lb_config(&dir1, 150, true), &dir1, "node1");
    until_answered_by(&lab, "node1", Duration::from_secs(5));
    // The VIP sits on the master's interface with its prefix and label, as `ip addr` shows.
    let shown = lab
        .host("node1")
        .command("ip")
        .expect("ip")
        .args(["-o", "-4", "addr", "show", "dev", "eth0"])
        .output()
        .expect("ip addr");
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains(&format!("{SEGMENT_VIP}/24")) && shown.contains("eth0:vip"),
        "{shown}"
    );

    // The master dies: the backup waits Master_Down_Interval (3 x 100 ms + skew 61 ms).
    lab.stop(master.pid(), Signal::SIGKILL).expect("kill node1");
    let took = until_answered_by(&lab, "node2", Duration::from_secs(3));
    eprintln!("master killed: node2 answers after {took:?} (master down interval 361 ms)");
    assert!(took < Duration::from_millis(1500), "failover took {took:?}");

    // It comes back with the higher priority and preempts.
    let master = agent(
        &lab,
        "node1",
        &lb_config(&dir1, 150, true),
        &dir1,
        "node1 again",
    );
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
    let _node2 = agent(&lab, "node2", &lb_config(&dir2, 100, false), &dir2, "node2");
    until_answered_by(&lab, "node2", Duration::from_secs(5));
    // A higher priority arriving later does not take over with nopreempt.
    let _node1 = agent(&lab, "node1", &lb_config(&dir1, 150, false), &dir1, "node1");
    std::thread::sleep(Duration::from_millis(ADVERT_MS * 10));
    until_answered_by(&lab, "node2", Duration::from_millis(500));
}

/// Starts a real keepalived in `host` with one VRRP instance for the segment's VIP.
fn start_keepalived(
    lab: &Lab,
    host: &str,
    priority: u8,
    version: u8,
    advert: &str,
    auth: Option<&str>,
) -> u32 {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let auth = auth
        .map(|p| format!("  authentication {{\n    auth_type PASS\n    auth_pass {p}\n  }}\n"))
        .unwrap_or_default();
    let config = format!(
        "global_defs {{\n  router_id {host}\n  vrrp_garp_master_delay 0\n}}\n\
         vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  version {version}\n  virtual_router_id 51\n  \
         priority {priority}\n  advert_int {advert}\n{auth}  virtual_ipaddress {{\n    {SEGMENT_VIP}/24\n  }}\n}}\n"
    );
    lb_tests::daemons::keepalived(lab, host, &config, &dir).expect("keepalived")
}

fn lb_config_v2(bpf_dir: &std::path::Path, priority: u8) -> String {
    format!(
        "[global]\nbpf_dir = \"{}\"\n\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         version = 2\nadvert = \"1s\"\nauth_pass = \"secret\"\nvips = [\"{SEGMENT_VIP}/24\"]\n",
        bpf_dir.display()
    )
}

/// keepalived backup, lb master (VRRPv3, 100 ms): lb wins by priority; when lb dies
/// keepalived takes over; when lb comes back it preempts keepalived.
#[test]
fn interop_v3_lb_master_keepalived_backup() {
    require_root();
    let lab = vrrp_segment("ka-v3", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    start_keepalived(&lab, "node2", 100, 3, "0.1", None);
    let dir = unique_bpf_dir();
    let lb = agent(&lab, "node1", &lb_config(&dir, 150, true), &dir, "lb");
    until_answered_by(&lab, "node1", Duration::from_secs(5));
    lab.stop(lb.pid(), Signal::SIGKILL).expect("kill lb");
    let took = until_answered_by(&lab, "node2", Duration::from_secs(3));
    eprintln!("v3: lb killed, keepalived answers after {took:?}");
    let _lb = agent(&lab, "node1", &lb_config(&dir, 150, true), &dir, "lb again");
    let took = until_answered_by(&lab, "node1", Duration::from_secs(3));
    eprintln!("v3: lb back, preempts keepalived after {took:?}");
}

/// keepalived master, lb backup (VRRPv2 with PASS, 1 s): lb accepts keepalived's adverts and
/// stays backup; when keepalived stops cleanly (it sends priority 0), lb takes over fast.
#[test]
fn interop_v2_pass_keepalived_master_lb_backup() {
    require_root();
    let lab = vrrp_segment("ka-v2", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    let keepalived = start_keepalived(&lab, "node2", 150, 2, "1", Some("secret"));
    let dir = unique_bpf_dir();
    let _lb = agent(&lab, "node1", &lb_config_v2(&dir, 100), &dir, "lb");
    until_answered_by(&lab, "node2", Duration::from_secs(6));
    // Well past lb's master down interval (3.6 s): lb must have stayed backup.
    std::thread::sleep(Duration::from_secs(4));
    until_answered_by(&lab, "node2", Duration::from_millis(500));
    lab.stop(keepalived, Signal::SIGTERM)
        .expect("stop keepalived");
    let took = until_answered_by(&lab, "node1", Duration::from_secs(5));
    eprintln!("v2: keepalived stopped, lb answers after {took:?} (skew 0.61 s)");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

fn executable(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// A failing `track_script` with weight -60 drops the master below the backup, which
/// preempts; an uplink whose carrier goes away puts the master in FAULT; notify scripts run
/// with keepalived's arguments.
#[test]
fn tracking_moves_the_vip() {
    require_root();
    let lab = vrrp_segment("track", 2)
        .veth(("node1", "uplink"), ("switch", "up1"))
        .build()
        .expect("build the lab");
    serve_names(&lab, 2);
    let scratch = tempfile::tempdir().expect("temp dir");
    let fail_flag = scratch.path().join("fail");
    let check = executable(
        scratch.path(),
        "check.sh",
        &format!("test ! -e {}", fail_flag.display()),
    );
    let notes = scratch.path().join("notes");
    let notify = executable(
        scratch.path(),
        "notify.sh",
        &format!("echo \"$@\" >> {}", notes.display()),
    );
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let node1 = format!(
        "{}track_interfaces = [\"uplink\"]\ntrack_scripts = [{{ script = \"{}\", interval = \"100ms\", weight = -60 }}]\n\
         notify = \"{}\"\n",
        lb_config(&dir1, 150, true),
        check.display(),
        notify.display()
    );
    let _backup = agent(&lab, "node2", &lb_config(&dir2, 100, true), &dir2, "node2");
    let _master = agent(&lab, "node1", &node1, &dir1, "node1");
    until_answered_by(&lab, "node1", Duration::from_secs(5));

    std::fs::write(&fail_flag, "").expect("flag");
    let took = until_answered_by(&lab, "node2", Duration::from_secs(3));
    eprintln!("track script failing: node2 answers after {took:?}");
    std::fs::remove_file(&fail_flag).expect("flag");
    until_answered_by(&lab, "node1", Duration::from_secs(3));

    link_down(&lab, "switch", "up1");
    let took = until_answered_by(&lab, "node2", Duration::from_secs(3));
    eprintln!("tracked uplink down: node2 answers after {took:?}");
    let notes = std::fs::read_to_string(&notes).unwrap_or_default();
    assert!(notes.contains("INSTANCE VI_1 MASTER 150"), "{notes}");
    assert!(notes.contains("INSTANCE VI_1 FAULT"), "{notes}");
}

/// Dual master: two instances (two VRIDs, two VIPs) on the same interfaces, each node master
/// of one; unicast advertisements between the nodes instead of multicast.
#[test]
fn dual_master_with_unicast_peers() {
    require_root();
    let lab = vrrp_segment("dual", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    let second_vip = "10.0.5.101";
    let config = |dir: &std::path::Path, peer: usize, p51: u8, p52: u8| {
        format!(
            "[global]\nbpf_dir = \"{}\"\n\n\
             [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {p51}\nadvert = \"100ms\"\n\
             vips = [\"{SEGMENT_VIP}/24\"]\nunicast_peers = [\"10.0.5.{}\"]\n\n\
             [[vrrp]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvrid = 52\npriority = {p52}\nadvert = \"100ms\"\n\
             vips = [\"{second_vip}/24\"]\nunicast_peers = [\"10.0.5.{}\"]\n",
            dir.display(),
            10 + peer,
            10 + peer
        )
    };
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _n1 = agent(&lab, "node1", &config(&dir1, 2, 150, 100), &dir1, "node1");
    let n2 = agent(&lab, "node2", &config(&dir2, 1, 100, 150), &dir2, "node2");
    until_answered_by(&lab, "node1", Duration::from_secs(5));
    let second = format!("{second_vip}:7000");
    until_vip_answered_by(&lab, &second, "node2", Duration::from_secs(5));
    // node2 stops: node1 owns both.
    lab.stop(n2.pid(), Signal::SIGTERM).expect("stop node2");
    let took = until_vip_answered_by(&lab, &second, "node1", Duration::from_secs(3));
    eprintln!("dual master: node1 took the second VIP after {took:?}");
    until_answered_by(&lab, "node1", Duration::from_millis(500));
}

/// A sync group: two instances that move together. node1 is master of both; its uplink,
/// tracked by one instance only, goes down: the whole group goes to FAULT and node2 takes over
/// both addresses.
#[test]
fn sync_group_fails_over_together() {
    require_root();
    let lab = vrrp_segment("sync", 2)
        .veth(("node1", "uplink"), ("switch", "up1"))
        .build()
        .expect("build the lab");
    serve_names(&lab, 2);
    let config = |dir: &std::path::Path, priority: u8, track: &str| {
        format!(
            "[global]\nbpf_dir = \"{}\"\n\n\
             [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\nadvert = \"100ms\"\n\
             vips = [\"{SEGMENT_VIP}/24\"]\n\n\
             [[vrrp]]\nname = \"VI_2\"\ninterface = \"eth0\"\nvrid = 52\npriority = {priority}\nadvert = \"100ms\"\n\
             vips = [\"10.0.5.101/24\"]\n{track}\n\
             [[vrrp_sync_group]]\nname = \"G1\"\ngroup = [\"VI_1\", \"VI_2\"]\n",
            dir.display()
        )
    };
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _n2 = agent(&lab, "node2", &config(&dir2, 100, ""), &dir2, "node2");
    // node2 becomes master first and announces both addresses; node1 preempts within a
    // second of that, inside the client's neighbour lock time: it must still be heard (the
    // re-announcement past the lock time; without it the client kept node2's MAC ~5 s).
    std::thread::sleep(Duration::from_millis(700));
    let node1 = config(&dir1, 150, "track_interfaces = [\"uplink\"]\n");
    let _n1 = agent(&lab, "node1", &node1, &dir1, "node1");
    until_answered_by(&lab, "node1", Duration::from_secs(5));
    until_vip_answered_by(&lab, "10.0.5.101:7000", "node1", Duration::from_secs(5));
    link_down(&lab, "switch", "up1");
    let took = until_answered_by(&lab, "node2", Duration::from_secs(3));
    until_vip_answered_by(&lab, "10.0.5.101:7000", "node2", Duration::from_secs(3));
    eprintln!("sync group: untracked VI_1 followed VI_2 to node2 after {took:?}");
}

/// VRRPv3 over IPv6: advertisements from link-local addresses to ff02::12, the address moved
/// without duplicate address detection, unsolicited neighbour advertisements updating the
/// client's neighbour cache.
#[test]
fn ipv6_failover() {
    require_root();
    let mut spec = vrrp_segment("vrrp6", 2).addr(("client", "eth0"), "fd00:5::2/64");
    for (host, addr) in [
        ("client", ""),
        ("node1", "fd00:5::11/64"),
        ("node2", "fd00:5::12/64"),
    ] {
        spec = spec.sysctl(host, "net/ipv6/conf/eth0/accept_dad", "0");
        if !addr.is_empty() {
            spec = spec.addr((host, "eth0"), addr);
        }
    }
    let lab = spec.build().expect("build the lab");
    for i in 1..=2 {
        let name = format!("node{i}");
        lab.host(&name)
            .spawn(move || async move {
                let listener = TcpListener::bind("[::]:7000").await.expect("bind");
                line_echo_server(listener, name, Duration::from_secs(60)).await;
            })
            .expect("server");
    }
    let config = |dir: &std::path::Path, priority: u8| {
        format!(
            "[global]\nbpf_dir = \"{}\"\n\n[[vrrp]]\nname = \"VI_6\"\ninterface = \"eth0\"\nvrid = 61\n\
             priority = {priority}\nadvert = \"100ms\"\nvips = [\"fd00:5::100/64\"]\n",
            dir.display()
        )
    };
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _n2 = agent(&lab, "node2", &config(&dir2, 100), &dir2, "node2");
    let n1 = agent(&lab, "node1", &config(&dir1, 150), &dir1, "node1");
    until_vip_answered_by(&lab, "[fd00:5::100]:7000", "node1", Duration::from_secs(5));
    lab.stop(n1.pid(), Signal::SIGTERM).expect("stop node1");
    let took = until_vip_answered_by(&lab, "[fd00:5::100]:7000", "node2", Duration::from_secs(3));
    eprintln!("IPv6: node2 answers after {took:?} (clean stop, skew 61 ms)");
    assert!(took < Duration::from_millis(500), "{took:?}");
}

/// `track_services` with an L7 backend: when no server of the master's backend is up, its
/// priority drops by the weight and the VIP moves to the node whose backend still has one;
/// when the server returns, the master preempts back. One health verdict drives the proxy
/// and VRRP.
#[test]
fn tracking_an_l7_backend_moves_the_vip() {
    require_root();
    let lab = vrrp_segment("trackbe", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    let app_server = |lifetime: Duration| {
        move || async move {
            let listener = TcpListener::bind("127.0.0.1:9000").await.expect("bind");
            line_echo_server(listener, "app".into(), lifetime).await;
        }
    };
    // node1's only application server lives 4 s; node2's stays.
    lab.host("node1")
        .spawn(app_server(Duration::from_secs(4)))
        .expect("node1 app");
    lab.host("node2")
        .spawn(app_server(Duration::from_secs(60)))
        .expect("node2 app");
    let with_backend = |dir: &std::path::Path, priority: u8| {
        format!(
            "{}track_services = [{{ backend = \"app\", weight = -100 }}]\n\n\
             [[listen]]\nname = \"app\"\nbind = [\"127.0.0.1:8080\"]\n\
             servers = [{{ name = \"s1\", addr = \"127.0.0.1:9000\" }}]\n\
             check = {{ kind = \"tcp\", inter = \"100ms\", timeout = \"100ms\", rise = 1, fall = 2 }}\n",
            lb_config(dir, priority, true)
        )
    };
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let _backup = agent(&lab, "node2", &with_backend(&dir2, 100), &dir2, "node2");
    let _master = agent(&lab, "node1", &with_backend(&dir1, 150), &dir1, "node1");
    until_answered_by(&lab, "node1", Duration::from_secs(5));
    let took = until_answered_by(&lab, "node2", Duration::from_secs(8));
    eprintln!("node1's backend lost its server: node2 answers after {took:?}");
    lab.host("node1")
        .spawn(app_server(Duration::from_secs(60)))
        .expect("node1 app again");
    let took = until_answered_by(&lab, "node1", Duration::from_secs(5));
    eprintln!("node1's server is back: node1 answers after {took:?}");
}

/// Make-before-break with keepalived as the peer: an lb master stopped cleanly sends priority
/// 0 and keeps answering for the VIP until keepalived, the backup, takes over the RFC way and
/// is heard: a probe every 10 ms loses nothing (two keepalived nodes lose the skew time).
#[test]
fn interop_clean_stop_of_an_lb_master_loses_no_probe_to_a_keepalived_backup() {
    require_root();
    let lab = vrrp_segment("ka-mbb", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    start_keepalived(&lab, "node2", 100, 3, "0.1", None);
    let dir = unique_bpf_dir();
    let lb = agent(&lab, "node1", &lb_config(&dir, 150, true), &dir, "lb");
    until_answered_by(&lab, "node1", Duration::from_secs(5));
    let vip: SocketAddr = format!("{SEGMENT_VIP}:7000").parse().expect("vip");
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let stopped = stopped.clone();
        lab.host("client")
            .spawn(move || async move {
                let start = Instant::now();
                let mut lost = 0;
                while start.elapsed() < Duration::from_secs(10) {
                    // 300 ms: a busy machine can be slow to answer, while a dropped SYN
                    // would only be sent again after a second.
                    let answer = who_answers(vip, Duration::from_millis(300)).await;
                    match answer.as_deref() {
                        Some("node2") => return Some(lost),
                        Some(_) => {}
                        None if stopped.load(std::sync::atomic::Ordering::Relaxed) => lost += 1,
                        None => {}
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                None
            })
            .expect("prober")
    };
    std::thread::sleep(Duration::from_millis(300));
    stopped.store(true, std::sync::atomic::Ordering::Relaxed);
    lab.stop(lb.pid(), Signal::SIGTERM).expect("stop lb");
    let lost = prober.join().expect("prober thread");
    assert_eq!(
        lost,
        Some(0),
        "keepalived took over and no probe was lost (None: it never answered)"
    );
}

/// Make-before-break on preemption with keepalived as the old master: lb returns with the
/// higher priority, adds the VIP and announces it before it advertises, and keepalived (which
/// hears the higher priority and steps down the RFC way) loses the VIP only after clients
/// were sent to lb: a probe every 10 ms loses nothing, before, during and after the switch.
#[test]
fn interop_lb_preempting_a_keepalived_master_loses_no_probe() {
    require_root();
    let lab = vrrp_segment("ka-pre", 2).build().expect("build the lab");
    serve_names(&lab, 2);
    start_keepalived(&lab, "node2", 100, 3, "0.1", None);
    until_answered_by(&lab, "node2", Duration::from_secs(5));
    let vip: SocketAddr = format!("{SEGMENT_VIP}:7000").parse().expect("vip");
    let prober = lab
        .host("client")
        .spawn(move || async move {
            let start = Instant::now();
            let mut answers = Vec::new();
            while start.elapsed() < Duration::from_secs(4) {
                answers.push(who_answers(vip, Duration::from_millis(300)).await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answers
        })
        .expect("prober");
    std::thread::sleep(Duration::from_millis(500));
    let dir = unique_bpf_dir();
    let _lb = agent(&lab, "node1", &lb_config(&dir, 150, true), &dir, "lb");
    let answers = prober.join().expect("prober thread");
    let lost = answers.iter().filter(|a| a.is_none()).count();
    let by = |node: &str| {
        answers
            .iter()
            .filter(|a| a.as_deref() == Some(node))
            .count()
    };
    eprintln!(
        "{} probes: {} by keepalived, {} by lb, {lost} lost",
        answers.len(),
        by("node2"),
        by("node1")
    );
    assert_eq!(lost, 0, "no probe was lost: {answers:?}");
    assert_eq!(answers.first().cloned().flatten().as_deref(), Some("node2"));
    assert_eq!(
        answers.last().cloned().flatten().as_deref(),
        Some("node1"),
        "lb preempted keepalived"
    );
}
