//! End-to-end L4 benchmark in the netns lab: the same client load through lb (DR and NAT),
//! nftables DNAT with conntrack (the kernel's own NAT; IPVS is not in this kernel), haproxy in
//! `mode tcp`, and a plain route without a balancer. Whole-machine CPU seconds per 10,000
//! short connections and per GB of bulk transfer; a setup's overhead is its cost minus the
//! plain route's. Each sample gets fresh namespaces (TIME_WAIT sockets of one setup would
//! refuse the next one's SYNs), and setups are interleaved over repetitions.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use anyhow::{Context as _, bail, ensure};
use lb_tests::{
    agent::{RunningAgent, start_decap, unique_bpf_dir},
    cpu::busy_seconds,
    netns::Lab,
    topology::{VIP, balancer_with_reals, real_addr},
    traffic::{bulk_download, bulk_server, http_load, http_name_server},
};
use tokio::net::TcpListener;

/// Repetitions per setup (`LB_BENCH_REPS`, default 5).
fn reps() -> usize {
    std::env::var("LB_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}
const CONNECTIONS: usize = 10_000;
const CONCURRENCY: usize = 32;
const BULK_BYTES: u64 = 512 * 1024 * 1024;
const SERVE_FOR: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Setup {
    Direct,
    LbDr,
    LbNat,
    Nftables,
    Haproxy,
}

impl Setup {
    const ALL: [Setup; 5] = [
        Setup::Direct,
        Setup::LbDr,
        Setup::LbNat,
        Setup::Nftables,
        Setup::Haproxy,
    ];

    fn name(self) -> &'static str {
        match self {
            Setup::Direct => "direct route (no balancer)",
            Setup::LbDr => "lb dr (XDP)",
            Setup::LbNat => "lb nat (XDP)",
            Setup::Nftables => "nftables DNAT + conntrack",
            Setup::Haproxy => "haproxy mode tcp",
        }
    }
}

/// XDP attach mode for lb in this run: `LB_BENCH_XDP_MODE` (native or generic, the default).
fn xdp_mode() -> String {
    std::env::var("LB_BENCH_XDP_MODE").unwrap_or_else(|_| "generic".into())
}

struct Sample {
    per_10k: f64,
    per_gb: f64,
}

fn run_in(
    lab: &Lab,
    host: &str,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<()> {
    let mut command = lab.host(host).command(program)?;
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {program} (run `cargo xtask setup`)"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, text.as_bytes())?;
    }
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Builds a fresh lab, puts `setup` in place, and measures one sample.
fn sample(setup: Setup, rep: usize) -> anyhow::Result<Sample> {
    let lab = balancer_with_reals(&format!("bench{rep}"), 2).build()?;
    let real_port = if setup == Setup::LbNat { 8080 } else { 80 };
    for i in 1..=2 {
        let name = format!("real{i}");
        lab.host(&name).spawn(move || async move {
            let listener = TcpListener::bind(("0.0.0.0", real_port))
                .await
                .expect("bind");
            let bulk = TcpListener::bind(("0.0.0.0", 9000)).await.expect("bind");
            tokio::join!(
                http_name_server(listener, name, SERVE_FOR),
                bulk_server(bulk, BULK_BYTES, SERVE_FOR)
            );
        })?;
    }
    let vip = |port: u16| SocketAddr::new(VIP.parse().expect("vip"), port);
    let reals = |port: u16| -> Vec<SocketAddr> {
        (1..=2)
            .map(|i| SocketAddr::new(real_addr(i).parse().expect("real"), port))
            .collect()
    };
    let bpf_dir = unique_bpf_dir();
    let mut _agent = None;
    let (targets, bulk_target) = match setup {
        Setup::Direct => (reals(80), reals(9000)[0]),
        Setup::LbDr | Setup::LbNat => {
            let (mode, port) = if setup == Setup::LbDr {
                ("dr", "")
            } else {
                ("nat", ", port = 8080")
            };
            let bulk_port = if setup == Setup::LbDr {
                ""
            } else {
                ", port = 9000"
            };
            let config = format!(
                "[global]\nbpf_dir = \"{}\"\nxdp_mode = \"{}\"\n\n[[interface]]\nname = \"eth0\"\n\n\
                 {}[[l4]]\nname = \"web\"\nvip = \"{VIP}:80\"\nmode = \"{mode}\"\n\
                 reals = [{{ addr = \"{}\"{port} }}, {{ addr = \"{}\"{port} }}]\n\n[[l4]]\nname = \"bulk\"\n\
                 vip = \"{VIP}:9000\"\nmode = \"{mode}\"\nreals = [{{ addr = \"{}\"{bulk_port} }}]\n",
                bpf_dir.display(),
                xdp_mode(),
                // DR needs XDP only where clients' packets arrive; NAT also where replies do.
                if setup == Setup::LbDr {
                    ""
                } else {
                    "[[interface]]\nname = \"eth1\"\n\n"
                },
                real_addr(1),
                real_addr(2),
                real_addr(1)
            );
            if xdp_mode() == "native" {
                // Native XDP on veth sends (XDP_TX, redirect) only to a peer that runs XDP
                // too: a pass-all program on the peers (lb_decap with no matching VIP).
                for (host, iface) in [("client", "eth0"), ("switch", "plb")] {
                    start_decap(
                        &lab,
                        lab.host(host),
                        iface,
                        &["203.0.113.1"],
                        &unique_bpf_dir(),
                    )?;
                }
            }
            _agent = Some(RunningAgent::start(
                &lab,
                lab.host("lb"),
                &config,
                &bpf_dir,
                &[],
            )?);
            (vec![vip(80)], vip(9000))
        }
        Setup::Nftables => {
            let rules = format!(
                "table ip lbbench {{\n chain prerouting {{\n  type nat hook prerouting priority dstnat;\n  \
                 ip daddr {VIP} tcp dport 80 dnat to numgen inc mod 2 map {{ 0 : {}, 1 : {} }}\n  \
                 ip daddr {VIP} tcp dport 9000 dnat to {}\n }}\n}}\n",
                real_addr(1),
                real_addr(2),
                real_addr(1)
            );
            run_in(&lab, "lb", "nft", &["-f", "-"], Some(&rules))?;
            (vec![vip(80)], vip(9000))
        }
        Setup::Haproxy => {
            run_in(
                &lab,
                "lb",
                "ip",
                &["addr", "add", &format!("{VIP}/32"), "dev", "lo"],
                None,
            )?;
            let config = format!(
                "global\n  maxconn 9000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  \
                 timeout server 60s\nfrontend web\n  bind {VIP}:80\n  default_backend web\nbackend web\n  \
                 balance roundrobin\n  server r1 {}:80\n  server r2 {}:80\nfrontend bulk\n  bind {VIP}:9000\n  \
                 default_backend bulk\nbackend bulk\n  server r1 {}:9000\n",
                real_addr(1),
                real_addr(2),
                real_addr(1)
            );
            let file =
                std::env::temp_dir().join(format!("lb-bench-haproxy-{}.cfg", std::process::id()));
            std::fs::write(&file, config)?;
            let mut command = lab.host("lb").command("haproxy")?;
            command
                .arg("-db")
                .arg("-f")
                .arg(&file)
                .stdout(Stdio::null());
            lab.start(command)
                .context("starting haproxy (run `cargo xtask setup`)")?;
            std::thread::sleep(Duration::from_millis(300));
            (vec![vip(80)], vip(9000))
        }
    };
    // Warm up: ARP, the agent's next hops, haproxy's first connections.
    let warm = targets.clone();
    lab.host("client")
        .spawn(move || http_load(warm, 200, 8))?
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;

    let before = busy_seconds()?;
    let load = targets.clone();
    lab.host("client")
        .spawn(move || http_load(load, CONNECTIONS, CONCURRENCY))?
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;
    let per_10k = (busy_seconds()? - before) * 10_000.0 / CONNECTIONS as f64;

    let before = busy_seconds()?;
    let got = lab
        .host("client")
        .spawn(move || bulk_download(bulk_target))?
        .join()
        .map_err(|_| anyhow::anyhow!("client panicked"))??;
    ensure!(
        got == BULK_BYTES,
        "{}: bulk transfer got {got} of {BULK_BYTES} bytes",
        setup.name()
    );
    let per_gb = (busy_seconds()? - before) * 1e9 / BULK_BYTES as f64;
    Ok(Sample { per_10k, per_gb })
}

fn median_min_max(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

/// Runs the benchmark and prints the table.
pub fn l4_end_to_end() -> anyhow::Result<()> {
    for tool in ["nft", "haproxy"] {
        if std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()?
            .stdout
            .is_empty()
        {
            bail!("`{tool}` is not installed: run `cargo xtask setup`");
        }
    }
    let mut results: Vec<(Setup, Vec<Sample>)> =
        Setup::ALL.iter().map(|s| (*s, Vec::new())).collect();
    for rep in 0..reps() {
        for (setup, samples) in results.iter_mut() {
            let s = sample(*setup, rep).with_context(|| format!("{} (rep {rep})", setup.name()))?;
            eprintln!(
                "rep {rep} {:<28} {:.3} CPU-s/10k conns, {:.3} CPU-s/GB",
                setup.name(),
                s.per_10k,
                s.per_gb
            );
            samples.push(s);
        }
    }
    let direct_conn = median_min_max(results[0].1.iter().map(|s| s.per_10k).collect()).0;
    let direct_gb = median_min_max(results[0].1.iter().map(|s| s.per_gb).collect()).0;
    println!(
        "l4 end to end: whole-machine CPU, {CONNECTIONS} short HTTP connections ({CONCURRENCY} at a time) and one \
         {} MiB transfer per sample, {} fresh-lab samples per setup, interleaved, lb in {} XDP mode; \
         median [min-max]",
        BULK_BYTES >> 20,
        reps(),
        xdp_mode()
    );
    println!(
        "{:<28} {:>24} {:>10} {:>22} {:>10}",
        "setup", "CPU-s per 10k conns", "overhead", "CPU-s per GB", "overhead"
    );
    let mut overheads = Vec::new();
    for (setup, samples) in &results {
        let (c, c_lo, c_hi) = median_min_max(samples.iter().map(|s| s.per_10k).collect());
        let (g, g_lo, g_hi) = median_min_max(samples.iter().map(|s| s.per_gb).collect());
        println!(
            "{:<28} {:>8.3} [{:.3}-{:.3}] {:>+10.3} {:>7.3} [{:.3}-{:.3}] {:>+10.3}",
            setup.name(),
            c,
            c_lo,
            c_hi,
            c - direct_conn,
            g,
            g_lo,
            g_hi,
            g - direct_gb
        );
        overheads.push((*setup, c - direct_conn, g - direct_gb));
    }
    let overhead = |s: Setup| {
        overheads
            .iter()
            .find(|(x, _, _)| *x == s)
            .map(|(_, c, g)| (*c, *g))
            .unwrap_or_default()
    };
    let (nft, nft_gb) = overhead(Setup::Nftables);
    let (haproxy, haproxy_gb) = overhead(Setup::Haproxy);
    for setup in [Setup::LbDr, Setup::LbNat] {
        let (c, g) = overhead(setup);
        println!(
            "{}: overhead / nftables DNAT = {:.2} (conns), {:.2} (GB); / haproxy = {:.2} (conns), {:.2} (GB)",
            setup.name(),
            c / nft,
            g / nft_gb,
            c / haproxy,
            g / haproxy_gb
        );
    }
    println!("targets: overhead at most 1/3 of nftables DNAT's and 1/10 of haproxy's");
    Ok(())
}
