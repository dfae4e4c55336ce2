//! `cargo xtask bench l4`: what lb's XDP forwarding costs per packet, next to yardsticks
//! measured in the same run. Prints a table; asserts nothing about speed (machines here are
//! shared and noisy), but checks that every sample took the path it claims to measure.
//!
//! Method (see DESIGN.md): one BPF_PROG_TEST_RUN call per sample with `repeat = 1`, so the
//! kernel copies a fresh frame every time and a rewriting program never sees its own output;
//! the kernel-reported duration of each call; many samples, median and p99; the cost of a
//! program that only returns XDP_PASS subtracted (that is the fixed cost of the call).

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use anyhow::{Context as _, bail, ensure};
use lb::dataplane::neigh::Nexthop;
use lb_tests::{
    packets::{CLIENT_MAC, LB_MAC, tcp_segment},
    xdp::{TEST_RUN_IFINDEX, XdpAction, XdpHarness},
};

const SAMPLES: usize = 20_000;
const REAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x11];

const CONFIG: &str = r#"
[global]
conn_table_size = 1048576

[[l4]]
name = "dr"
vip = "10.0.0.100:80"
reals = [{ addr = "10.0.2.11" }, { addr = "10.0.2.12" }, { addr = "10.0.2.13" }]

[[l4]]
name = "tun"
vip = "10.0.0.101:80"
mode = "tun"
reals = [{ addr = "10.0.2.11" }, { addr = "10.0.2.12" }, { addr = "10.0.2.13" }]

[[l4]]
name = "nat"
vip = "10.0.0.102:80"
mode = "nat"
reals = [{ addr = "10.0.2.11" }, { addr = "10.0.2.12" }, { addr = "10.0.2.13" }]
"#;

struct Case {
    name: &'static str,
    program: &'static str,
    expected: XdpAction,
    /// Frame for sample `i`.
    frame: Box<dyn Fn(usize) -> Vec<u8>>,
}

struct Row {
    name: &'static str,
    median: f64,
    p99: f64,
}

fn measure(harness: &XdpHarness, case: &Case) -> anyhow::Result<Row> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let frame = (case.frame)(i);
        let (result, duration) = harness
            .run_program(case.program, &frame)?
            .context("the kernel refused the frame")?;
        if result.action != case.expected {
            bail!(
                "{}: sample {i} returned {:?}, expected {:?}",
                case.name,
                result.action,
                case.expected
            );
        }
        if case.expected == XdpAction::Tx || case.expected == XdpAction::Redirect {
            ensure!(
                result.output[..6] != frame[..6],
                "{}: sample {i} left the destination MAC as it was",
                case.name
            );
        }
        samples.push(duration);
    }
    samples.sort();
    let ns = |d: Duration| d.as_nanos() as f64;
    Ok(Row {
        name: case.name,
        median: ns(samples[SAMPLES / 2]),
        p99: ns(samples[SAMPLES * 99 / 100]),
    })
}

fn l4_per_packet() -> anyhow::Result<()> {
    let hops: HashMap<std::net::IpAddr, Nexthop> = ["10.0.2.11", "10.0.2.12", "10.0.2.13"]
        .into_iter()
        .map(|a| {
            let hop = Nexthop {
                ifindex: TEST_RUN_IFINDEX,
                smac: LB_MAC,
                dmac: REAL_MAC,
            };
            (a.parse().expect("address"), hop)
        })
        .collect();
    let mut harness = XdpHarness::with_config(CONFIG, &hops)?;
    harness.load_program("bench_pass")?;
    harness.load_program("bench_floor")?;
    let to = |vip: &'static str| {
        move |port: u16| {
            let client = SocketAddr::new("10.0.1.2".parse().expect("v4"), port);
            tcp_segment(
                CLIENT_MAC,
                LB_MAC,
                client,
                vip.parse().expect("vip"),
                b"GET / HTTP/1.1\r\n\r\n",
            )
        }
    };
    let dr = to("10.0.0.100:80");
    let tun = to("10.0.0.101:80");
    let nat = to("10.0.0.102:80");
    let other = to("10.0.0.200:80");
    let cases = vec![
        Case {
            name: "pass-only program",
            program: "bench_pass",
            expected: XdpAction::Pass,
            frame: Box::new(move |_| dr(1)),
        },
        Case {
            name: "floor: MAC swap + XDP_TX",
            program: "bench_floor",
            expected: XdpAction::Tx,
            frame: Box::new(move |_| dr(1)),
        },
        Case {
            name: "lb non-VIP packet (pass)",
            program: "lb_ingress",
            expected: XdpAction::Pass,
            frame: Box::new(move |_| other(1)),
        },
        Case {
            name: "lb DR established (table hit)",
            program: "lb_ingress",
            expected: XdpAction::Tx,
            frame: Box::new(move |_| dr(1)),
        },
        Case {
            name: "lb DR new flow (Maglev)",
            program: "lb_ingress",
            expected: XdpAction::Tx,
            frame: Box::new(move |i| dr(1024 + i as u16)),
        },
        Case {
            name: "lb TUN established (IPIP)",
            program: "lb_ingress",
            expected: XdpAction::Tx,
            frame: Box::new(move |_| tun(1)),
        },
        Case {
            name: "lb NAT established",
            program: "lb_ingress",
            expected: XdpAction::Tx,
            frame: Box::new(move |_| nat(1)),
        },
    ];
    let mut rows = Vec::new();
    for case in &cases {
        rows.push(measure(&harness, case)?);
    }
    let pass = rows[0].median;
    let floor = rows[1].median;
    println!(
        "l4 per packet: BPF_PROG_TEST_RUN, {SAMPLES} samples each, repeat=1, kernel-reported ns"
    );
    println!(
        "{:<32} {:>8} {:>8} {:>12} {:>10}",
        "case", "median", "p99", "net of pass", "/ floor"
    );
    for row in &rows {
        println!(
            "{:<32} {:>8.0} {:>8.0} {:>12.0} {:>10.2}",
            row.name,
            row.median,
            row.p99,
            row.median - pass,
            row.median / floor
        );
    }
    println!("net of pass: median minus the pass-only program's median (the call's fixed cost);");
    println!("/ floor: median over the floor program's median, both including that fixed cost;");
    println!("the clock ticks in about 10 ns steps here: differences below that are noise.");
    println!();
    steady_paths(&harness, &cases)
}

/// Cases whose path a run does not change (passing, swapping MACs, rewriting the MACs of an
/// established DR flow): with `repeat` the kernel runs them back to back on the same buffer
/// and reports the mean, which removes the call's fixed cost and the clock's coarse ticks.
fn steady_paths(harness: &XdpHarness, cases: &[Case]) -> anyhow::Result<()> {
    const REPEAT: u32 = 10_000;
    const CALLS: usize = 200;
    let steady = [
        "pass-only program",
        "floor: MAC swap + XDP_TX",
        "lb non-VIP packet (pass)",
        "lb DR established (table hit)",
    ];
    let mut rows = Vec::new();
    for case in cases.iter().filter(|c| steady.contains(&c.name)) {
        let frame = (case.frame)(0);
        let mut means = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let (result, mean) = harness
                .run_program_repeated(case.program, &frame, REPEAT)?
                .context("the kernel refused the frame")?;
            ensure!(
                result.action == case.expected,
                "{}: returned {:?}, expected {:?}",
                case.name,
                result.action,
                case.expected
            );
            means.push(mean.as_nanos() as f64);
        }
        means.sort_by(f64::total_cmp);
        rows.push((case.name, means[CALLS / 2], means[CALLS * 99 / 100]));
    }
    let floor = rows[1].1.max(1.0);
    println!(
        "l4 steady paths: BPF_PROG_TEST_RUN, {CALLS} calls of repeat={REPEAT}, mean ns per run"
    );
    println!(
        "{:<32} {:>8} {:>8} {:>10}",
        "case", "median", "p99", "/ floor"
    );
    for (name, median, p99) in &rows {
        println!(
            "{name:<32} {median:>8.0} {p99:>8.0} {:>10.2}",
            median / floor
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("l4") | None => {
            l4_per_packet()?;
            println!();
            e2e::l4_end_to_end()
        }
        Some("l4-packet") => l4_per_packet(),
        Some("l4-e2e") => e2e::l4_end_to_end(),
        Some("failover") => failover::failover(),
        Some("l7") => l7::l7(),
        Some("conformance") => conformance::conformance(),
        Some("sync") => sync::sync(),
        Some(other) => {
            bail!(
                "unknown benchmark `{other}` (known: l4, l4-packet, l4-e2e, failover, l7, conformance, sync)"
            )
        }
    }
}

mod conformance;
mod e2e;
mod failover;
mod l7;
mod sync;
