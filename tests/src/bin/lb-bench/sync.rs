//! `cargo xtask bench sync`: connection-table sync lag. Two nodes share a UDP L4 service with
//! `[sync]`; the client starts new flows through the master (one datagram from a new source
//! port each; the kernel may hand a port out again, and then the flow is not new) at a steady
//! rate for a few seconds; the master's `show sync` says how many new flows it published,
//! the backup's how many it applied and the lag
//! from the master reading each new flow from its ring to the backup writing it into its own
//! table (median and 99th percentile), and how many flows it applied. Fresh lab per rate.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir},
    topology::SEGMENT_VIP,
};

/// New flows per second to measure at.
const RATES: [u32; 2] = [1_000, 10_000];
const SECONDS: u64 = 3;
const PORT: u16 = 9999;

fn config(bpf_dir: &std::path::Path, priority: u8) -> String {
    format!(
        "[global]\nbpf_dir = \"{}\"\nxdp_mode = \"generic\"\nconn_table_size = 262144\n\n\
         [[interface]]\nname = \"eth0\"\n\n\
         [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\npriority = {priority}\n\
         version = 3\nadvert = \"100ms\"\nvips = [\"{SEGMENT_VIP}/24\"]\n\n\
         [[l4]]\nname = \"udp\"\nvip = \"{SEGMENT_VIP}:{PORT}\"\nprotocol = \"udp\"\nmode = \"dr\"\n\
         reals = [{{ addr = \"10.0.5.21\" }}, {{ addr = \"10.0.5.22\" }}]\n\n\
         [sync]\npeers = [\"10.0.5.11\", \"10.0.5.12\"]\nkey = \"bench sync key, 16+ bytes\"\n",
        bpf_dir.display()
    )
}

/// A number after `word` in `text`.
fn field(text: &str, word: &str) -> Option<u64> {
    text.split_whitespace()
        .skip_while(|w| *w != word)
        .nth(1)?
        .parse()
        .ok()
}

/// One rate: (datagrams sent, new flows the master published, flows the backup applied, lag
/// p50 µs, lag p99 µs).
fn measure(rate: u32) -> anyhow::Result<(u64, u64, u64, u64, u64)> {
    // Two reals (10.0.5.21-22) on the nodes' segment.
    let lab = lb_tests::ha::ha_lab_with(&format!("sync{rate}"), "dr", 2).build()?;
    let (dir1, dir2) = (unique_bpf_dir(), unique_bpf_dir());
    let node2 = RunningAgent::start(&lab, lab.host("node2"), &config(&dir2, 100), &dir2, &[])?;
    let node1 = RunningAgent::start(&lab, lab.host("node1"), &config(&dir1, 150), &dir1, &[])?;
    // node1 owns the VIP once it answers ARP for it from the client.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = lab
            .host("node1")
            .command("ip")?
            .args(["-o", "-4", "addr", "show", "dev", "eth0"])
            .output()?;
        if String::from_utf8_lossy(&shown.stdout).contains(SEGMENT_VIP) {
            break;
        }
        if Instant::now() > deadline {
            bail!("node1 never held the VIP");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // node2's copy request has been answered by then.
    std::thread::sleep(Duration::from_secs(1));
    let sent = lab
        .host("client")
        .spawn(move || async move {
            let vip = format!("{SEGMENT_VIP}:{PORT}");
            let per_ms = u64::from(rate / 1000).max(1);
            let start = tokio::time::Instant::now();
            let mut sent = 0u64;
            for tick in 0..SECONDS * 1000 {
                for _ in 0..per_ms {
                    // A new source port: a new flow.
                    if let Ok(socket) = std::net::UdpSocket::bind("0.0.0.0:0")
                        && socket.send_to(b"x", &vip).is_ok()
                    {
                        sent += 1;
                    }
                }
                tokio::time::sleep_until(start + Duration::from_millis(tick + 1)).await;
            }
            sent
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))?;
    std::thread::sleep(Duration::from_millis(500));
    let shown = node2.ctl("show sync").context("show sync")?;
    let published = field(&node1.ctl("show sync").context("show sync")?, "sent").unwrap_or(0);
    let applied = field(&shown, "applied").unwrap_or(0);
    let p50 = field(&shown, "lag_p50_us").unwrap_or(0);
    let p99 = field(&shown, "lag_p99_us").unwrap_or(0);
    Ok((sent, published, applied, p50, p99))
}

/// Runs the benchmark and prints the table.
pub fn sync() -> anyhow::Result<()> {
    println!(
        "sync: new UDP flows through the master for {SECONDS} s at each rate; lag = from the master \
         reading a flow from its ring to the backup writing it (batches of up to 12 flows, 5 ms window)"
    );
    println!(
        "{:>14} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "new flows/s", "datagrams", "published", "applied", "lag p50", "lag p99"
    );
    for rate in RATES {
        let (sent, published, applied, p50, p99) = measure(rate)?;
        println!(
            "{rate:>14} {sent:>10} {published:>10} {applied:>10} {:>9.2} ms {:>9.2} ms",
            p50 as f64 / 1000.0,
            p99 as f64 / 1000.0
        );
    }
    Ok(())
}
