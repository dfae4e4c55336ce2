//! The two-node HA lab shared by `lab_ha` and `cargo xtask bench failover`: two balancer
//! nodes and a client on one segment (`topology::vrrp_segment`) plus real servers, the one
//! configuration both nodes run, and streaming connections that report whether they broke.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};
use std::time::Duration;

use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};

use crate::{
    agent::RunningAgent,
    app::{AppStats, app_server, get, keepalive_exchange},
    netns::{Lab, LabSpec},
    topology::{SEGMENT_VIP, real_on_switch, vrrp_segment},
    traffic::line_echo_server,
};

pub const REALS: usize = 3;
pub const FLOWS: usize = 50;
pub const PORT: u16 = 7000;
/// The L7 frontend's port on the VIP, and the reals' HTTP port behind it.
pub const SITE_PORT: u16 = 80;
pub const APP_PORT: u16 = 8080;

pub fn real_addr(i: usize) -> String {
    format!("10.0.5.{}", 20 + i)
}

/// The reals' gateway in NAT mode: a second address of the VRRP instance, so replies go to
/// whichever node is master.
pub const GATEWAY: &str = "10.0.5.254";

/// [`vrrp_segment`] with `REALS` reals on the same switch: the VIP on `lo` without ARP for it
/// (DR, TUN), and the client reached through the VRRP gateway (NAT: replies must come back
/// through the master to be turned back into the VIP's).
pub fn ha_lab(test: &str, mode: &str) -> LabSpec {
    ha_lab_with(test, mode, REALS)
}

pub fn ha_lab_with(test: &str, mode: &str, reals: usize) -> LabSpec {
    let mut spec = vrrp_segment(test, 2);
    for i in 1..=reals {
        let host = format!("real{i}");
        spec = real_on_switch(spec, &host, &format!("r{i}"), &real_addr(i), SEGMENT_VIP);
        if mode == "nat" {
            spec = spec.route(&host, "10.0.5.2/32", GATEWAY);
        }
    }
    spec
}

/// The one configuration both nodes run (the L4 service in `mode` and an HTTP frontend on the
/// same VIP, both over the `REALS` reals); only the priority differs.
pub fn config(bpf_dir: &std::path::Path, priority: u8, mode: &str) -> String {
    config_with(bpf_dir, priority, mode, &[1; REALS], "")
}

/// [`config`] with one real per weight (`realN` has the N-th; 0 drains it: its flows stay,
/// new ones go elsewhere) and `extra` appended (a `[sync]` table).
pub fn config_with(
    bpf_dir: &std::path::Path,
    priority: u8,
    mode: &str,
    weights: &[u32],
    extra: &str,
) -> String {
    let reals: Vec<String> = weights
        .iter()
        .enumerate()
        .map(|(i, weight)| format!("{{ addr = \"{}\", weight = {weight} }}", real_addr(i + 1)))
        .collect();
    let servers: Vec<String> = (1..=weights.len())
        .map(|i| {
            format!(
                "{{ name = \"real{i}\", addr = \"{}:{APP_PORT}\" }}",
                real_addr(i)
            )
        })
        .collect();
    format!(
        "[global]\nbpf_dir = \"{}\"\nxdp_mode = \"generic\"\nhash_seed = 0x5eed\n\n\
         [[interface]]\nname = \"eth0\"\n\n\
         [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         version = 3\nadvert = \"100ms\"\npreempt = true\nvips = [\"{SEGMENT_VIP}/24\", \"{GATEWAY}/24\"]\n\n\
         [[l4]]\nname = \"web\"\nvip = \"{SEGMENT_VIP}:{PORT}\"\nmode = \"{mode}\"\nreals = [{}]\n\n\
         [[frontend]]\nname = \"www\"\nbind = [\"{SEGMENT_VIP}:{SITE_PORT}\"]\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nservers = [{}]\n{extra}",
        bpf_dir.display(),
        reals.join(", "),
        servers.join(", ")
    )
}

/// Every real answers each line on `PORT` with its name and the line, and HTTP requests on
/// `APP_PORT` with its name.
pub fn serve_reals(lab: &Lab) {
    serve_reals_up_to(lab, REALS);
}

pub fn serve_reals_up_to(lab: &Lab, reals: usize) {
    for i in 1..=reals {
        let name = format!("real{i}");
        lab.host(&name)
            .spawn(move || async move {
                let listener = TcpListener::bind(("0.0.0.0", PORT)).await.expect("bind");
                let site = TcpListener::bind(("0.0.0.0", APP_PORT))
                    .await
                    .expect("bind");
                let stats = Arc::new(AppStats::default());
                let lifetime = Duration::from_secs(120);
                tokio::join!(
                    line_echo_server(listener, name.clone(), lifetime),
                    app_server(site, name, stats, lifetime)
                );
            })
            .expect("real server");
    }
}

/// Waits (up to `limit`) until a GET through the L7 frontend on the VIP answers 200; the
/// real that answered.
pub fn until_site_answers(lab: &Lab, limit: Duration) -> String {
    let started = std::time::Instant::now();
    let mut last = None;
    while started.elapsed() < limit {
        let answer = lab
            .host("client")
            .spawn(|| async {
                let site = format!("{SEGMENT_VIP}:{SITE_PORT}").parse().expect("site");
                tokio::time::timeout(
                    Duration::from_millis(500),
                    keepalive_exchange(site, &[get("/", "Connection: close\r\n")]),
                )
                .await
            })
            .expect("client")
            .join()
            .expect("client thread");
        match answer {
            Ok(Ok(mut answers)) if answers.first().is_some_and(|a| a.status == 200) => {
                return answers.remove(0).body;
            }
            other => last = Some(format!("{other:?}")),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the site on the VIP did not answer within {limit:?} (last: {last:?})");
}

/// Waits (up to 5 s) until `node` holds the VIP.
pub fn wait_for_vip(lab: &Lab, node: &str) {
    for _ in 0..100 {
        let shown = lab
            .host(node)
            .command("ip")
            .expect("ip")
            .args(["-o", "-4", "addr", "show", "dev", "eth0"])
            .output()
            .expect("ip addr");
        if String::from_utf8_lossy(&shown.stdout).contains(&format!("{SEGMENT_VIP}/24")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{node} never held the VIP");
}

pub fn start(lab: &Lab, node: &str, dir: &std::path::Path, priority: u8) -> RunningAgent {
    start_in(lab, node, dir, priority, "dr")
}

pub fn start_in(
    lab: &Lab,
    node: &str,
    dir: &std::path::Path,
    priority: u8,
    mode: &str,
) -> RunningAgent {
    RunningAgent::start(lab, lab.host(node), &config(dir, priority, mode), dir, &[])
        .unwrap_or_else(|e| panic!("{node}: {e:#}"))
}

/// What one streaming connection saw.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The real that answered first.
    pub real: String,
    /// Exchanges completed.
    pub exchanges: u64,
    /// The first failure: a reset, a close, a timeout, or another real answering.
    pub failure: Option<String>,
}

/// The flows of `flows` that broke, each described.
pub fn broken(flows: &[Flow]) -> Vec<String> {
    flows
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            f.failure
                .as_ref()
                .map(|e| format!("flow {i} on {}: {e}", f.real))
        })
        .collect()
}

/// `FLOWS` streaming connections from the client until `stop`; joined, what each saw.
pub fn start_streaming(lab: &Lab, stop: &Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Flow>> {
    let stop = stop.clone();
    lab.host("client")
        .spawn(move || async move {
            let tasks: Vec<_> = (0..FLOWS)
                .map(|id| tokio::spawn(stream(id, stop.clone())))
                .collect();
            let mut flows = Vec::new();
            for task in tasks {
                flows.push(task.await.expect("flow task"));
            }
            flows
        })
        .expect("client")
}

/// One connection: an exchange every 20 ms until `stop`.
pub async fn stream(id: usize, stop: Arc<AtomicBool>) -> Flow {
    let vip = format!("{SEGMENT_VIP}:{PORT}");
    let mut flow = Flow {
        real: String::new(),
        exchanges: 0,
        failure: None,
    };
    let connected = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&vip)).await;
    let Ok(Ok(stream)) = connected else {
        flow.failure = Some(format!("connect: {connected:?}"));
        return flow;
    };
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while !stop.load(Ordering::Relaxed) {
        let line = format!("{id}-{}", flow.exchanges);
        if let Err(e) = writer.write_all(format!("{line}\n").as_bytes()).await {
            flow.failure = Some(format!("write: {e}"));
            return flow;
        }
        let answer = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
        let answer = match answer {
            Ok(Ok(Some(answer))) => answer,
            other => {
                flow.failure = Some(format!(
                    "read after {} exchanges: {other:?}",
                    flow.exchanges
                ));
                return flow;
            }
        };
        let Some((real, echoed)) = answer.split_once(':') else {
            flow.failure = Some(format!("answer {answer:?}"));
            return flow;
        };
        if echoed != line {
            flow.failure = Some(format!("sent {line}, got back {echoed}"));
            return flow;
        }
        if flow.real.is_empty() {
            flow.real = real.to_string();
        } else if flow.real != real {
            flow.failure = Some(format!("moved from {} to {real}", flow.real));
            return flow;
        }
        flow.exchanges += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flow
}
