//! `cargo xtask demo`: a three-host netns lab (client, lb, server), the agent running on the
//! lb host with the sample config, real TCP and UDP traffic across it, and what the agent
//! counted next to what the neighbours sent. Everything is torn down at the end.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, bail};
use lb_common::counters::Counter;
use lb_tests::{
    agent::{RunningAgent, stat},
    topology::{CLIENT_ADDR, SERVER_ADDR, client_lb_server},
    traffic::{tcp_echo_client, tcp_echo_server, udp_echo_client, udp_echo_server},
};
use tokio::net::{TcpListener, UdpSocket};

const TCP_CONNECTIONS: usize = 20;
const TCP_BYTES: usize = 256 * 1024;
const UDP_DATAGRAMS: usize = 200;

fn main() -> anyhow::Result<()> {
    let config_path = PathBuf::from(std::env::args().nth(1).context("usage: lb-demo CONFIG")?);
    let config_text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = lb::config::load_str(&config_path, &config_text)?;
    let bpf_dir = config.global.bpf_dir.clone();

    println!(
        "== lab: client {CLIENT_ADDR} -- eth0 [lb] eth1 -- server {SERVER_ADDR} (network namespaces)"
    );
    let lab = client_lb_server("demo")
        .build()
        .context("building the lab")?;

    println!(
        "== starting `lb run -c {}` on the lb host",
        config_path.display()
    );
    let agent = RunningAgent::start(&lab, lab.host("lb"), &config_text, &bpf_dir, &[])?;
    for interface in ["eth0", "eth1"] {
        println!(
            "   lb:{interface} XDP attachment: {:?}",
            lab.host("lb").link_info(interface)?.xdp
        );
    }

    let before: Vec<u64> = ["client", "server"]
        .iter()
        .map(|h| lab.host(h).link_info("eth0").map(|i| i.stats.tx_packets))
        .collect::<anyhow::Result<_>>()?;

    let server_ip: IpAddr = SERVER_ADDR.parse()?;
    let tcp_addr = SocketAddr::new(server_ip, 8080);
    let udp_addr = SocketAddr::new(server_ip, 5353);
    let tcp_server = lab.host("server").spawn(move || async move {
        tcp_echo_server(TcpListener::bind(tcp_addr).await?, TCP_CONNECTIONS).await
    })?;
    let udp_server = lab.host("server").spawn(move || async move {
        udp_echo_server(UdpSocket::bind(udp_addr).await?, UDP_DATAGRAMS).await
    })?;
    std::thread::sleep(Duration::from_millis(100));

    println!(
        "== traffic: {TCP_CONNECTIONS} TCP connections x {} KiB echoed, {UDP_DATAGRAMS} UDP datagrams echoed",
        TCP_BYTES / 1024
    );
    let echoed = lab
        .host("client")
        .spawn(move || async move {
            let tcp = tcp_echo_client(tcp_addr, TCP_CONNECTIONS, TCP_BYTES).await?;
            let udp = udp_echo_client(udp_addr, UDP_DATAGRAMS).await?;
            anyhow::Ok((tcp, udp))
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    tcp_server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    udp_server
        .join()
        .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
    println!(
        "   TCP bytes echoed intact: {}; UDP datagrams echoed intact: {}",
        echoed.0, echoed.1
    );

    std::thread::sleep(Duration::from_millis(500));
    let text = agent.stats_text()?;
    println!("== `lb stats --bpf-dir {}`:", bpf_dir.display());
    for line in text.lines() {
        println!("   {line}");
    }
    let stats = lb_tests::agent::parse_stats(&text)?;
    let after: Vec<u64> = ["client", "server"]
        .iter()
        .map(|h| lab.host(h).link_info("eth0").map(|i| i.stats.tx_packets))
        .collect::<anyhow::Result<_>>()?;
    let sent: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    println!(
        "== the agent saw {} frames; client and server sent {sent} frames to the lb host",
        stat(&stats, Counter::Rx)
    );

    let status = lab.stop(agent.pid(), nix::sys::signal::Signal::SIGTERM)?;
    println!("== agent stopped ({status}); tearing the lab down");
    drop(lab);
    if stat(&stats, Counter::Rx) < sent {
        bail!("the agent counted fewer frames than were sent to it");
    }
    println!("== demo done");
    Ok(())
}
