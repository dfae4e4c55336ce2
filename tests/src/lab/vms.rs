//! `cargo xtask lab --vagrant ...`: the lab on VMs, driven through `vagrant` (provider
//! libvirt) in the `vagrant/` folder. The host takes part as a client: libvirt gives it the
//! first address of each lab network, so the HA scenario's flows start here.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    probe,
    topology::{Role, Topology},
    vagrant::{self, BOX_NAME},
};

/// The VM lab: the topology and where its files are.
pub struct VmLab {
    pub topology: Topology,
    /// The `vagrant/` folder (the Vagrantfile).
    dir: PathBuf,
}

/// Runs `command`, failing with its output when it fails.
fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// True if a process called `name` runs.
fn running(name: &str) -> bool {
    Command::new("pgrep")
        .args(["-x", name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes the host ready for libvirt where systemd and udev are missing: /dev/kvm as udev
/// would leave it (libvirt probes QEMU again on every call otherwise), and the daemons.
pub fn prepare_host() -> anyhow::Result<()> {
    if Path::new("/dev/kvm").exists() {
        let _ = Command::new("chgrp").args(["kvm", "/dev/kvm"]).status();
        let _ = Command::new("chmod").args(["660", "/dev/kvm"]).status();
    }
    for daemon in ["virtlogd", "libvirtd"] {
        if !running(daemon) {
            run(Command::new(daemon).arg("-d"))
                .with_context(|| format!("starting {daemon} (run `cargo xtask setup`)"))?;
        }
    }
    let socket = Path::new("/var/run/libvirt/libvirt-sock");
    let started = Instant::now();
    while !socket.exists() {
        if started.elapsed() > Duration::from_secs(10) {
            bail!("libvirtd did not open {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

impl VmLab {
    /// The lab of `topology`, its Vagrantfile in `dir`.
    pub fn new(topology: Topology, dir: &Path) -> VmLab {
        VmLab {
            topology,
            dir: dir.to_path_buf(),
        }
    }

    /// Where the rendered description is kept (in Vagrant's own state folder).
    fn description(&self) -> PathBuf {
        self.dir.join(".vagrant/lb-lab.json")
    }

    /// Where the box's files are (built by `lab box`): the kernel and initrd the VMs boot
    /// must be readable by libvirt's qemu user, so not under a private home or checkout.
    pub fn box_dir(&self) -> PathBuf {
        PathBuf::from("/var/lib/lb-lab/box")
    }

    /// Writes the description the Vagrantfile reads.
    pub fn render(&self, lb_binary: &Path) -> anyhow::Result<()> {
        let driver = std::env::var("LB_LAB_DRIVER").unwrap_or_else(|_| "qemu".into());
        let lab = vagrant::render(&self.topology, &self.box_dir(), lb_binary, &driver)?;
        std::fs::create_dir_all(self.dir.join(".vagrant"))?;
        std::fs::write(self.description(), serde_json::to_string_pretty(&lab)?)?;
        Ok(())
    }

    /// `vagrant ARGS` in the lab's folder.
    pub fn vagrant(&self) -> Command {
        let mut command = Command::new("vagrant");
        command
            .current_dir(&self.dir)
            .env("LB_LAB_JSON", self.description())
            .env("VAGRANT_DEFAULT_PROVIDER", "libvirt")
            .env("VAGRANT_CHECKPOINT_DISABLE", "1");
        command
    }

    /// True if the box is known to Vagrant.
    pub fn has_box(&self) -> bool {
        self.vagrant()
            .args(["box", "list"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BOX_NAME))
    }

    /// Runs `command` on `node` over `vagrant ssh` (as root); its standard output.
    pub fn ssh(&self, node: &str, command: &str) -> anyhow::Result<String> {
        run(self
            .vagrant()
            .args(["ssh", node, "-c"])
            .arg(format!("sudo sh -c '{}'", command.replace('\'', "'\\''"))))
    }

    /// The node holding the VIP (asked over ssh; a destroyed VM does not answer).
    pub fn master(&self) -> Option<String> {
        self.topology
            .vrrp_nodes()
            .find(|n| {
                self.ssh(&n.name, "ip -o -4 addr show")
                    .is_ok_and(|text| self.topology.lists_vip(&text))
            })
            .map(|n| n.name.clone())
    }

    fn until_master(
        &self,
        wanted: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> anyhow::Result<String> {
        super::wait_for("the wanted master", limit, Duration::from_secs(1), || {
            self.master().filter(|m| wanted(m))
        })
        .with_context(|| format!("the master now: {:?}", self.master()))
    }

    /// Waits (up to `limit`) until the preferred master holds the VIP: after `up`, a node
    /// holds preemption until it has its peer's connection table.
    pub fn until_settled(&self, limit: Duration) -> anyhow::Result<String> {
        let preferred = self.topology.preferred_master()?;
        self.until_master(|m| m == preferred, limit)
    }

    /// The status report: VMs, master, XDP mode, health, requests through the VIP.
    pub fn status(&self) -> anyhow::Result<String> {
        let mut out = run(self.vagrant().arg("status"))?;
        let master = self.master();
        out.push_str(&format!(
            "\nVIP {}: {}\n",
            self.topology.vip,
            master.as_deref().unwrap_or("held by no node")
        ));
        for node in self.topology.nodes(Role::Lb) {
            let details = self
                .ssh(&node.name, "ip -d link show eth1")
                .unwrap_or_default();
            let state = if master.as_deref() == Some(node.name.as_str()) {
                "MASTER"
            } else {
                "backup"
            };
            out.push_str(&format!(
                "{}: {state}, XDP {} on eth1\n",
                node.name,
                super::status::xdp_mode(&details)
            ));
        }
        if let Some(master) = &master {
            out.push_str(&format!("health as {master} sees it:\n"));
            out.push_str(&self.ssh(master, "lb ctl show servers").unwrap_or_default());
        }
        for port in [80, 8080] {
            let answer = self
                .ssh(
                    "client",
                    &format!("curl -s -m 2 http://{}:{port}/", self.topology.vip),
                )
                .unwrap_or_else(|e| format!("failed: {e:#}"));
            out.push_str(&format!(
                "client: GET http://{}:{port}/ -> {}\n",
                self.topology.vip,
                answer.trim()
            ));
        }
        Ok(out)
    }

    /// The HA scenario on VMs: keep-alive flows from the host through the VIP, the master
    /// VM destroyed (`virsh destroy`), the backup taking the VIP, the master booted again
    /// and preempting; fails if a flow broke.
    pub fn test(&self, say: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
        let master = self.until_settled(Duration::from_secs(120))?;
        say(&format!("{master} is the VRRP master"));
        let addr = SocketAddr::new(self.topology.vip.into(), 80);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flows: Vec<_> = (0..super::scenario::FLOWS)
            .map(|_| runtime.spawn(probe::flow(addr, Duration::from_millis(100), stop.clone())))
            .collect();
        say(&format!(
            "{} keep-alive connections from this host to {addr}",
            flows.len()
        ));
        std::thread::sleep(Duration::from_secs(3));
        let domain = format!("vagrant_{master}");
        say(&format!("virsh destroy {domain}"));
        let destroyed = Instant::now();
        let outcome = (|| -> anyhow::Result<()> {
            run(Command::new("virsh").args(["destroy", &domain]))?;
            let took_over = self.until_master(|m| m != master, Duration::from_secs(60))?;
            say(&format!(
                "{took_over} holds the VIP ({:?} after the destroy, as seen over ssh)",
                destroyed.elapsed()
            ));
            std::thread::sleep(Duration::from_secs(3));
            say(&format!("vagrant up {master}"));
            let booted = Instant::now();
            run(self.vagrant().args(["up", &master]))?;
            self.until_master(|m| m == master, Duration::from_secs(120))?;
            say(&format!(
                "{master} is back and preempted, {:?} after vagrant up",
                booted.elapsed()
            ));
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        let mut reports = Vec::new();
        for flow in flows {
            reports.push(runtime.block_on(flow)?);
        }
        outcome?;
        let broken = crate::ha::broken(&reports);
        let mut spread = std::collections::BTreeMap::new();
        for flow in &reports {
            *spread.entry(flow.real.clone()).or_insert(0) += 1;
        }
        say(&format!("flows per real: {spread:?}"));
        if !broken.is_empty() {
            bail!("{} flows broke:\n{}", broken.len(), broken.join("\n"));
        }
        say(&format!(
            "passed: {} flows kept their real through the destroy and the return",
            reports.len()
        ));
        Ok(())
    }

    /// Destroys the VMs and the lab's libvirt networks; the box stays.
    pub fn down(&self) -> anyhow::Result<()> {
        run(self.vagrant().args(["destroy", "-f"]))?;
        for network in &self.topology.network {
            let name = vagrant::network_name(&network.name);
            let _ = Command::new("virsh").args(["net-destroy", &name]).output();
            let _ = Command::new("virsh").args(["net-undefine", &name]).output();
        }
        let _ = std::fs::remove_file(self.description());
        Ok(())
    }
}
