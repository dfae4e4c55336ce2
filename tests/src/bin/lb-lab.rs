//! `cargo xtask lab ...` and `cargo xtask demo`: the multi-node lab from `vagrant/lab.toml`,
//! on network namespaces or (`--vagrant`) on VMs. Needs root.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use lb_tests::lab::{
    default_topology,
    namespaces::NetnsLab,
    topology::{Role, Topology},
    vagrant, vagrant_dir, vm_box,
    vms::{VmLab, prepare_host},
};

#[derive(Parser)]
#[command(about = "The lb lab on network namespaces")]
struct Cli {
    /// Topology file.
    #[arg(long, default_value_os_t = default_topology())]
    topology: PathBuf,
    /// The lab on Vagrant VMs (provider libvirt) instead of network namespaces.
    #[arg(long)]
    vagrant: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the lab and start every node; it stays up.
    Up,
    /// Which node is master, XDP modes, the reals' health, a request through the VIP.
    Status,
    /// Remove everything `up` made.
    Down,
    /// Run a command on a node (`exec lb1 -- lb ctl show servers`).
    Exec {
        node: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run the HA scenario against the lab that is up.
    Test,
    /// The demo: bring a lab up, show the system at work and under faults, take it down.
    Tour,
    /// Build the VMs' box from Debian packages (vagrant-libvirt, offline at boot).
    Box,
    /// Print what the Vagrantfile reads (the topology rendered for the VMs).
    #[command(hide = true)]
    VagrantJson,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("lab: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let topology = Topology::load(&cli.topology)?;
    if cli.vagrant || matches!(cli.command, Command::Box | Command::VagrantJson) {
        return on_vms(topology, cli.command);
    }
    match cli.command {
        Command::Up => {
            let lab = NetnsLab::up(topology, true)?;
            lab.until_settled(Duration::from_secs(10))?;
            lab.until_site_answers(80, Duration::from_secs(10))?;
            print!("{}", lab.status());
            println!(
                "\nthe lab is up. Look around:\n  cargo xtask lab exec client -- curl -s http://{vip}/\n  \
                 cargo xtask lab exec lb1 -- lb ctl show servers\n  cargo xtask lab exec lb1 -- lb stats\n  \
                 cargo xtask lab status | test | down",
                vip = lab.topology.vip
            );
        }
        Command::Status => print!("{}", NetnsLab::open(topology)?.status()),
        Command::Down => {
            let lab = NetnsLab::open(topology).context("nothing to take down")?;
            lab.down();
            println!("the lab is down");
        }
        Command::Exec { node, command } => {
            let status = NetnsLab::open(topology)?.exec(&node, &command)?;
            return Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ));
        }
        Command::Test => {
            let lab = NetnsLab::open(topology)?;
            test(&lab)?;
        }
        Command::Tour => tour(topology)?,
        Command::Box | Command::VagrantJson => unreachable!("handled by on_vms"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The lab commands on VMs.
fn on_vms(topology: Topology, command: Command) -> anyhow::Result<ExitCode> {
    let lab = VmLab::new(topology, &vagrant_dir());
    let lb = lb_tests::agent::lb_binary()?;
    match command {
        Command::VagrantJson => {
            let driver = std::env::var("LB_LAB_DRIVER").unwrap_or_else(|_| "qemu".into());
            let rendered = vagrant::render(&lab.topology, &lab.box_dir(), &lb, &driver)?;
            println!("{}", serde_json::to_string_pretty(&rendered)?);
        }
        Command::Box => {
            let started = std::time::Instant::now();
            vm_box::build(&lab.box_dir())?;
            println!(
                "lab: box {} built in {:?}",
                vagrant::BOX_NAME,
                started.elapsed()
            );
        }
        Command::Up => {
            prepare_host()?;
            if !lab.has_box() {
                println!("lab: no box {} yet: building it", vagrant::BOX_NAME);
                vm_box::build(&lab.box_dir())?;
            }
            lab.render(&lb)?;
            let started = std::time::Instant::now();
            let status = lab.vagrant().arg("up").status()?;
            if !status.success() {
                bail!("vagrant up failed");
            }
            println!("lab: VMs up in {:?}", started.elapsed());
            lab.until_settled(Duration::from_secs(120))?;
            print!("{}", lab.status()?);
        }
        Command::Status => {
            prepare_host()?;
            print!("{}", lab.status()?);
        }
        Command::Exec { node, command } => {
            prepare_host()?;
            let status = lab
                .vagrant()
                .args(["ssh", &node, "-c"])
                .arg(command.join(" "))
                .status()?;
            return Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ));
        }
        Command::Test => {
            prepare_host()?;
            lab.test(&mut |line| println!("lab test: {line}"))?;
        }
        Command::Down => {
            prepare_host()?;
            lab.down()?;
            println!(
                "the lab's VMs are destroyed (the box stays: `vagrant box remove {}`)",
                vagrant::BOX_NAME
            );
        }
        Command::Tour => bail!("the tour runs on network namespaces (`cargo xtask demo`)"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the scenario and fails if a flow broke.
fn test(lab: &NetnsLab) -> anyhow::Result<()> {
    let report = lab.ha_scenario(&mut |line| println!("lab test: {line}"))?;
    println!("lab test: flows per real: {:?}", report.spread);
    let broken = report.broken();
    if !broken.is_empty() {
        bail!("{} flows broke:\n{}", broken.len(), broken.join("\n"));
    }
    println!(
        "lab test: passed: {} flows kept their real through the failover ({:?}) and the preemption",
        report.flows.len(),
        report.failover
    );
    Ok(())
}

fn tour(topology: Topology) -> anyhow::Result<()> {
    println!(
        "== building the lab from the topology file: {} nodes",
        topology.node.len()
    );
    let lab = NetnsLab::up(topology, false)?;
    let result = tour_steps(&lab);
    println!("\n== taking the lab down");
    lab.down();
    result
}

fn tour_steps(lab: &NetnsLab) -> anyhow::Result<()> {
    lab.until_settled(Duration::from_secs(10))?;
    lab.until_site_answers(80, Duration::from_secs(10))?;
    lab.until_site_answers(8080, Duration::from_secs(10))?;
    println!("\n== the lab (cargo xtask lab status)");
    print!("{}", lab.status());

    let lb = lb_tests::agent::lb_binary()?.display().to_string();
    let first = lab.topology.preferred_master()?;
    let config = lab.lb_config_path(&first).display().to_string();
    println!("\n== {first}'s configuration (written from vagrant/lab.toml's [lb] section)");
    print!(
        "  lb check: {}",
        lab.output(&first, &lb, &["check", "-c", &config])?
    );
    let client = format!("{}:40000", lab.topology.node("client")?.nics[0].addr);
    let vip = lab.site(80).to_string();
    print!(
        "  lb simulate --client {client} --vip {vip}: {}",
        lab.output(
            &first,
            &lb,
            &[
                "simulate", "-c", &config, "--client", &client, "--vip", &vip
            ]
        )?
    );

    println!("\n== ten requests through the VIP, L4 in XDP (port 80) and L7 in the proxy (8080)");
    for port in [80, 8080] {
        let mut answers = Vec::new();
        for _ in 0..10 {
            answers.push(
                lab.get_from_client(port)
                    .map_or_else(|e| format!("{e}"), |a| a.1),
            );
        }
        println!("  :{port} answered by {}", answers.join(" "));
    }

    let real = lab
        .topology
        .nodes(Role::Real)
        .nth(1)
        .context("the tour needs two reals")?
        .name
        .clone();
    let master = lab.wait_for_master(Duration::from_secs(1))?;
    println!("\n== {real} fails (nginx stopped): the health checks take it out");
    lab.stop_nginx(&real)?;
    wait_for_health(lab, &master, &real, "DOWN")?;
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(
            lab.get_from_client(80)
                .map_or_else(|e| format!("{e}"), |a| a.1),
        );
    }
    println!("  new connections: {}", answers.join(" "));
    println!("== {real} returns");
    lab.start_nginx(&real)?;
    wait_for_health(lab, &master, &real, "UP")?;

    println!("\n== the master fails under traffic");
    let report = lab.ha_scenario(&mut |line| println!("  {line}"))?;
    let broken = report.broken();
    println!(
        "  {} of {} established connections kept their real (per real: {:?}); fewest requests on one: {}",
        report.flows.len() - broken.len(),
        report.flows.len(),
        report.spread,
        report.flows.iter().map(|f| f.exchanges).min().unwrap_or(0)
    );
    for line in &broken {
        println!("  broken: {line}");
    }

    for node in lab.topology.nodes(Role::Lb) {
        println!("\n== lb stats on {} (XDP counters)", node.name);
        let config = lab.lb_config_path(&node.name).display().to_string();
        let stats = lab.output(
            &node.name,
            &lb_tests::agent::lb_binary()?.display().to_string(),
            &["stats", "-c", &config],
        )?;
        // Counters that stayed at zero are left out.
        let zero = |line: &str| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words.len() == 2 && words[1] == "0"
        };
        for line in stats.lines().filter(|l| !zero(l)) {
            println!("  {line}");
        }
    }
    if !broken.is_empty() {
        bail!("{} connections broke", broken.len());
    }
    Ok(())
}

/// Waits until `node`'s lb reports `real` with `state` in `show servers`.
fn wait_for_health(lab: &NetnsLab, node: &str, real: &str, state: &str) -> anyhow::Result<()> {
    // L4 lists the real by address and port, L7 by server name.
    let addr = format!("{}:", lab.topology.node(real)?.nics[0].addr);
    let lb = lb_tests::agent::lb_binary()?.display().to_string();
    let bpf_dir = lab.bpf_dir(node).display().to_string();
    let started = std::time::Instant::now();
    loop {
        let shown = lab.output(
            node,
            &lb,
            &["ctl", "--bpf-dir", &bpf_dir, "show", "servers"],
        )?;
        let lines: Vec<&str> = shown
            .lines()
            .filter(|l| l.contains(&addr) || l.contains(&format!("{real} ")))
            .collect();
        if !lines.is_empty() && lines.iter().all(|l| l.contains(state)) {
            println!("  {node} sees it {state} after {:?}:", started.elapsed());
            for line in lines {
                println!("    {line}");
            }
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(10) {
            bail!("{node} never saw {real} {state}:\n{shown}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
