//! Netns lab: the seed deployment end to end. Two balancer nodes run VRRP for a VIP on the
//! client segment and an HTTP frontend on that VIP (bound before the VIP arrives, on the
//! backup too), routing to two application servers on a back segment with health checks.
//! The site answers through the master; when the master is killed, the backup takes the VIP
//! and the site answers through it. Needs root.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir},
    app::{AppStats, app_server, get, keepalive_exchange},
    netns::{Lab, LabSpec},
    require_root,
};
use nix::sys::signal::Signal;
use tokio::net::TcpListener;

const VIP: &str = "10.0.5.100";

fn seed_lab() -> LabSpec {
    let mut spec = LabSpec::new("seed")
        .host("client")
        .host("front")
        .host("back")
        .bridge("front", "br0")
        .bridge("back", "br0")
        .veth(("client", "eth0"), ("front", "pc"))
        .bridge_port("front", "br0", "pc")
        .addr(("client", "eth0"), "10.0.5.2/24");
    for i in 1..=2 {
        let node = format!("node{i}");
        spec = spec
            .host(&node)
            .veth((&node, "eth0"), ("front", &format!("n{i}")))
            .bridge_port("front", "br0", &format!("n{i}"))
            .addr((&node, "eth0"), &format!("10.0.5.{}/24", 10 + i))
            .veth((&node, "eth1"), ("back", &format!("n{i}")))
            .bridge_port("back", "br0", &format!("n{i}"))
            .addr((&node, "eth1"), &format!("10.0.6.{}/24", 10 + i));
        let app = format!("app{i}");
        spec = spec
            .host(&app)
            .veth((&app, "eth0"), ("back", &format!("a{i}")))
            .bridge_port("back", "br0", &format!("a{i}"))
            .addr((&app, "eth0"), &format!("10.0.6.{}/24", 20 + i));
    }
    spec
}

fn node_config(bpf_dir: &std::path::Path, node: &str, priority: u8) -> String {
    format!(
        "[global]\nbpf_dir = \"{}\"\n\n\
         [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         version = 3\nadvert = \"100ms\"\nvips = [\"{VIP}/24\"]\n\n\
         [defaults]\noptions = [\"forwardfor\", \"redispatch\"]\nlog = \"none\"\n\n\
         [[frontend]]\nname = \"www\"\nbind = [\"{VIP}:80\"]\ndefault_backend = \"app\"\n\
         http_response = [\"set-header X-LB {node}\"]\n\n\
         [[backend]]\nname = \"app\"\n\
         servers = [{{ name = \"app1\", addr = \"10.0.6.21:80\" }}, {{ name = \"app2\", addr = \"10.0.6.22:80\" }}]\n\
         check = {{ kind = \"http\", path = \"/\", inter = \"500ms\", rise = 1, fall = 2 }}\n",
        bpf_dir.display()
    )
}

/// One GET to the site; the node that proxied it and the server that answered.
fn visit(lab: &Lab) -> Option<(String, String)> {
    lab.host("client")
        .spawn(|| async {
            let site: SocketAddr = format!("{VIP}:80").parse().expect("site");
            let answer = tokio::time::timeout(
                Duration::from_millis(300),
                keepalive_exchange(site, &[get("/", "Connection: close\r\n")]),
            )
            .await
            .ok()?
            .ok()?
            .remove(0);
            (answer.status == 200).then(|| {
                (
                    answer.header("x-lb").unwrap_or_default().to_string(),
                    answer.body,
                )
            })
        })
        .expect("client")
        .join()
        .expect("client thread")
}

fn until_served_by(lab: &Lab, node: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < limit {
        last = visit(lab);
        if last.as_ref().is_some_and(|(n, _)| n == node) {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{node} did not serve the site within {limit:?} (last: {last:?})");
}

#[test]
fn the_site_survives_the_master_balancer_dying() {
    require_root();
    let lab = seed_lab().build().expect("lab");
    for i in 1..=2 {
        let stats = Arc::new(AppStats::default());
        lab.host(&format!("app{i}"))
            .spawn(move || async move {
                let listener = TcpListener::bind("0.0.0.0:80").await.expect("bind");
                app_server(listener, format!("app{i}"), stats, Duration::from_secs(120)).await;
            })
            .expect("app");
    }
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    // The backup starts first: its frontend binds the VIP it does not hold (IP_FREEBIND).
    let _backup = RunningAgent::start(
        &lab,
        lab.host("node2"),
        &node_config(&dir2, "node2", 100),
        &dir2,
        &[],
    )
    .expect("node2");
    let master = RunningAgent::start(
        &lab,
        lab.host("node1"),
        &node_config(&dir1, "node1", 150),
        &dir1,
        &[],
    )
    .expect("node1");
    until_served_by(&lab, "node1", Duration::from_secs(5));
    // Both application servers serve through the master.
    let mut servers = std::collections::BTreeSet::new();
    for _ in 0..6 {
        if let Some((_, server)) = visit(&lab) {
            servers.insert(server);
        }
    }
    assert_eq!(servers.len(), 2, "{servers:?}");

    lab.stop(master.pid(), Signal::SIGKILL).expect("kill node1");
    let took = until_served_by(&lab, "node2", Duration::from_secs(3));
    eprintln!("master killed: the site answers through node2 after {took:?}");
    assert!(took < Duration::from_millis(1500), "failover took {took:?}");
    for _ in 0..4 {
        let (node, _) = visit(&lab).expect("the site answers");
        assert_eq!(node, "node2");
    }
}
