//! Netns lab: client -> lb -> server with the agent running and `lb_ingress` attached to both
//! of the balancer's interfaces, in native and in generic mode. Real TCP traffic must flow and
//! the agent's counters must match, frame for frame, what the neighbours sent it.
//!
//! Needs root (namespaces, XDP).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_common::counters::Counter;
use lb_tests::{
    agent::{RunningAgent, stat, unique_bpf_dir},
    netns::{LabSpec, XdpAttachment},
    require_root,
    topology::{SERVER_ADDR, client_lb_server},
    traffic::{tcp_echo_client, tcp_echo_server},
};
use tokio::net::TcpListener;

const CONNECTIONS: usize = 20;
const BYTES_PER_CONNECTION: usize = 64 * 1024;

fn run_through_agent(test: &str, mode: &str, expected: XdpAttachment) {
    require_root();
    let lab = client_lb_server(test).build().expect("build the lab");
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\nxdp_mode = \"{mode}\"\n\n[[interface]]\nname = \"eth0\"\n\n[[interface]]\nname = \"eth1\"\n",
        bpf_dir.display()
    );
    let agent =
        RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("start the agent");
    for interface in ["eth0", "eth1"] {
        let info = lab.host("lb").link_info(interface).expect("link info");
        assert_eq!(info.xdp, expected, "XDP attachment of lb:{interface}");
    }

    let client_before = lab
        .host("client")
        .link_info("eth0")
        .expect("client link")
        .stats;
    let server_before = lab
        .host("server")
        .link_info("eth0")
        .expect("server link")
        .stats;
    let client_segs_before = lab
        .host("client")
        .snmp_counter("Tcp", "OutSegs")
        .expect("snmp");
    let server_segs_before = lab
        .host("server")
        .snmp_counter("Tcp", "OutSegs")
        .expect("snmp");
    let at_start = agent.stats().expect("lb stats");

    let server_addr = SocketAddr::new(SERVER_ADDR.parse().expect("address"), 7000);
    let server = lab
        .host("server")
        .spawn(move || async move {
            let listener = TcpListener::bind(server_addr).await?;
            tcp_echo_server(listener, CONNECTIONS).await
        })
        .expect("start the echo server");
    std::thread::sleep(Duration::from_millis(100));
    let echoed = lab
        .host("client")
        .spawn(move || tcp_echo_client(server_addr, CONNECTIONS, BYTES_PER_CONNECTION))
        .expect("start the client")
        .join()
        .expect("client thread")
        .expect("echo traffic through the balancer");
    server.join().expect("server thread").expect("echo server");
    assert_eq!(echoed, CONNECTIONS * BYTES_PER_CONNECTION);

    // Let the last FIN/ACKs land, then read everything while the wires are quiet.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut settled = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let a = agent.stats().expect("lb stats");
        std::thread::sleep(Duration::from_millis(200));
        let b = agent.stats().expect("lb stats");
        if a == b {
            settled = Some(b);
            break;
        }
    }
    let stats = settled.expect("counters kept moving for 5 s after the traffic ended");
    let client_after = lab
        .host("client")
        .link_info("eth0")
        .expect("client link")
        .stats;
    let server_after = lab
        .host("server")
        .link_info("eth0")
        .expect("server link")
        .stats;
    let client_segs = lab
        .host("client")
        .snmp_counter("Tcp", "OutSegs")
        .expect("snmp")
        - client_segs_before;
    let server_segs = lab
        .host("server")
        .snmp_counter("Tcp", "OutSegs")
        .expect("snmp")
        - server_segs_before;

    let delta = |c: Counter| stat(&stats, c) - stat(&at_start, c);
    let frames_sent_to_lb = (client_after.tx_packets - client_before.tx_packets)
        + (server_after.tx_packets - server_before.tx_packets);
    eprintln!(
        "{mode}: rx {} tcp {} non_ip {} pass {}; neighbours sent {frames_sent_to_lb} frames, {} TCP segments",
        delta(Counter::Rx),
        delta(Counter::Tcp),
        delta(Counter::NonIp),
        delta(Counter::Pass),
        client_segs + server_segs
    );
    assert!(
        client_segs > (CONNECTIONS * 4) as u64,
        "too few TCP segments: {client_segs}"
    );
    assert_eq!(
        delta(Counter::Rx),
        frames_sent_to_lb,
        "rx vs frames the neighbours sent"
    );
    // OutSegs leaves out a few control segments the kernel sends outside a socket's normal
    // output path (retransmissions count in RetransSegs): allow those, and nothing else.
    let retrans = ["client", "server"]
        .iter()
        .map(|h| {
            lab.host(h)
                .snmp_counter("Tcp", "RetransSegs")
                .expect("snmp")
        })
        .sum::<u64>();
    let sent = client_segs + server_segs;
    assert!(
        (sent..=sent + retrans + 2).contains(&delta(Counter::Tcp)),
        "tcp {} vs TCP segments sent (snmp OutSegs {sent}, RetransSegs {retrans})",
        delta(Counter::Tcp)
    );
    assert_eq!(
        delta(Counter::Ipv4),
        delta(Counter::Tcp),
        "only TCP was sent over IPv4"
    );
    assert_eq!(
        delta(Counter::Rx),
        delta(Counter::Tcp) + delta(Counter::NonIp),
        "every frame is TCP or ARP"
    );
    assert_eq!(
        delta(Counter::Pass),
        delta(Counter::Rx),
        "every frame passed"
    );
    for counter in [
        Counter::Malformed,
        Counter::Fragment,
        Counter::Udp,
        Counter::Ipv6,
        Counter::Other,
    ] {
        assert_eq!(delta(counter), 0, "{} moved", counter.name());
    }

    // A clean stop detaches from both interfaces and removes the pins.
    let status = lab
        .stop(agent.pid(), nix::sys::signal::Signal::SIGTERM)
        .expect("stop the agent");
    assert!(status.success(), "lb run exited with {status}");
    for interface in ["eth0", "eth1"] {
        let info = lab.host("lb").link_info(interface).expect("link info");
        assert_eq!(
            info.xdp,
            XdpAttachment::None,
            "lb:{interface} still has XDP after shutdown"
        );
    }
    assert!(!bpf_dir.exists(), "{} left behind", bpf_dir.display());
}

#[test]
fn tcp_through_agent_in_generic_mode() {
    run_through_agent("generic", "generic", XdpAttachment::Generic);
}

#[test]
fn tcp_through_agent_in_native_mode() {
    run_through_agent("native", "native", XdpAttachment::Native);
}

#[test]
fn missing_interface_is_a_clear_error() {
    require_root();
    let lab = LabSpec::new("missing-if")
        .host("lb")
        .build()
        .expect("build the lab");
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[[interface]]\nname = \"eth9\"\n",
        bpf_dir.display()
    );
    let error = match RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]) {
        Ok(_) => panic!("lb run started on a missing interface"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(":5:8: key `interface.name`: interface `eth9` does not exist"),
        "{error}"
    );
}
