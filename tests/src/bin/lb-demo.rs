//! `cargo xtask demo`: a netns lab with a client, the balancer and three real servers; the
//! agent runs on the balancer with the sample config (an L4 DR service with HTTP health
//! checks). Real HTTP requests go through the VIP; the demo prints where they landed, what
//! `lb simulate` predicts, what `lb stats` counted, then takes a real down and back up and
//! shows the traffic move. Everything is torn down at the end.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use lb_tests::{
    agent::{RunningAgent, lb_binary, wait_for_health},
    netns::Lab,
    topology::{VIP, balancer_with_reals, real_addr},
    traffic::{behaviour, controlled_http_server, http_get_from},
};

const REQUESTS: u16 = 80;

fn requests(lab: &Lab, first_port: u16) -> anyhow::Result<BTreeMap<String, u32>> {
    let answers = lab
        .host("client")
        .spawn(move || async move {
            let vip: SocketAddr = format!("{VIP}:80").parse()?;
            let mut answers = Vec::new();
            for i in 0..REQUESTS {
                let bind: SocketAddr = format!("10.0.1.2:{}", first_port + i).parse()?;
                answers.push(http_get_from(bind, vip).await?);
            }
            anyhow::Ok(answers)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    let mut tally = BTreeMap::new();
    for answer in answers {
        *tally.entry(answer).or_insert(0) += 1;
    }
    Ok(tally)
}

fn show(tally: &BTreeMap<String, u32>) {
    for (real, count) in tally {
        println!("   {real}: {count:>3} {}", "#".repeat(*count as usize / 2));
    }
}

fn lb_cli(args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new(lb_binary()?)
        .args(args)
        .output()?;
    if !output.status.success() {
        bail!("lb {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn wait_health(status: &Path, server: &str, wanted: &str) -> anyhow::Result<Duration> {
    wait_for_health(status, server, wanted, Duration::from_secs(10))
}

fn main() -> anyhow::Result<()> {
    let config_path = PathBuf::from(std::env::args().nth(1).context("usage: lb-demo CONFIG")?);
    let config_text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config = lb::config::load_str(&config_path, &config_text)?;
    let bpf_dir = config.global.bpf_dir.clone();
    let config_arg = config_path.display().to_string();

    println!("== lab (network namespaces):");
    println!(
        "   client 10.0.1.2 -- eth0 [lb] eth1 -- switch -- real1 10.0.2.11, real2 10.0.2.12, real3 10.0.2.13"
    );
    println!("   VIP {VIP}:80 forwarded in XDP (direct routing); reals hold the VIP on lo");
    let lab = balancer_with_reals("demo", 3)
        .build()
        .context("building the lab")?;
    let modes: Vec<Arc<AtomicU8>> = (0..3)
        .map(|_| Arc::new(AtomicU8::new(behaviour::OK)))
        .collect();
    for (i, mode) in modes.iter().enumerate() {
        let name = format!("real{}", i + 1);
        let mode = mode.clone();
        lab.host(&name).spawn(move || async move {
            controlled_http_server(
                "0.0.0.0:80".parse().expect("addr"),
                name,
                mode,
                Duration::from_secs(600),
            )
            .await;
        })?;
    }

    println!("== `lb check -c {config_arg}`:");
    print!("   {}", lb_cli(&["check", "-c", &config_arg])?);
    println!("== starting `lb run -c {config_arg}` on the lb host");
    let agent = RunningAgent::start(&lab, lab.host("lb"), &config_text, &bpf_dir, &[])?;
    let status = lb::agent::health_status_path(&bpf_dir);
    for i in 1..=3 {
        wait_health(&status, &format!("{}:80", real_addr(i)), "UP")?;
    }

    println!("== {REQUESTS} HTTP requests to {VIP}:80, each on a new connection (weights 1:1:2):");
    show(&requests(&lab, 30000)?);
    println!("== `lb simulate` answers which real a flow gets, with the kernel's own hash:");
    print!(
        "   {}",
        lb_cli(&[
            "simulate",
            "-c",
            &config_arg,
            "--client",
            "10.0.1.2:30000",
            "--vip",
            &format!("{VIP}:80")
        ])?
    );

    println!("== real2 stops listening; the health checks notice:");
    modes[1].store(behaviour::DEAD, Ordering::Relaxed);
    let took = wait_health(&status, &format!("{}:80", real_addr(2)), "DOWN")?;
    println!(
        "   real2 DOWN after {} ms (fall 3 x inter 500 ms)",
        took.as_millis()
    );
    println!("== {REQUESTS} more requests: new flows avoid real2");
    let tally = requests(&lab, 31000)?;
    show(&tally);
    if tally.contains_key("real2") {
        bail!("a new flow reached real2 while it was down");
    }
    modes[1].store(behaviour::OK, Ordering::Relaxed);
    let took = wait_health(&status, &format!("{}:80", real_addr(2)), "UP")?;
    println!(
        "== real2 listens again: UP after {} ms (rise 2)",
        took.as_millis()
    );

    println!("== `lb stats -c {config_arg}`:");
    for line in lb_cli(&["stats", "-c", &config_arg])?.lines() {
        println!("   {line}");
    }
    let status_code = lab.stop(agent.pid(), nix::sys::signal::Signal::SIGTERM)?;
    println!("== agent stopped ({status_code}): XDP detached, pins removed; tearing the lab down");
    drop(lab);
    println!("== demo done");
    Ok(())
}
