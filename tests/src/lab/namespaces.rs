//! The lab on network namespaces: one namespace per node, one bridge per network (in a
//! `switch` namespace), the daemons each role runs, and the questions `status` asks.
//!
//! A lab brought up by `cargo xtask lab up` is persistent: namespaces `lblab-<node>`, files
//! under `/run/lb-lab` (each node's lb config, logs, pid files), pins under
//! `/sys/fs/bpf/lb-lab/<node>`; `down` removes exactly these. Tests build the same lab with
//! per-process names, removed when the test ends.

use std::{
    fs::{File, OpenOptions},
    io::Read as _,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::topology::{Role, Topology};
use crate::{
    agent::lb_binary,
    netns::{Lab, LabSpec},
};

/// Namespace prefix of the persistent lab.
pub const PREFIX: &str = "lblab-";
/// Where the persistent lab keeps its files.
pub const STATE_DIR: &str = "/run/lb-lab";
/// Where the persistent lab's lb nodes pin their programs and maps.
pub const BPF_ROOT: &str = "/sys/fs/bpf/lb-lab";

/// A lab built from a topology, with the places its files go.
pub struct NetnsLab {
    pub topology: Topology,
    pub lab: Lab,
    state_dir: PathBuf,
    bpf_root: PathBuf,
}

/// The interface name of a node's `index`-th nic in the netns lab.
fn interface(index: usize) -> String {
    format!("eth{index}")
}

impl NetnsLab {
    /// The lab's namespaces, links and addresses on top of `base` (an empty [`LabSpec`]).
    pub fn spec(topology: &Topology, base: LabSpec) -> anyhow::Result<LabSpec> {
        let mut spec = base.host("switch");
        for network in &topology.network {
            spec = spec.bridge("switch", &format!("br-{}", network.name));
        }
        for node in &topology.node {
            spec = spec.host(&node.name);
            for (index, nic) in node.nics.iter().enumerate() {
                let port = format!("{}-{index}", node.name);
                let ifname = interface(index);
                spec = spec
                    .veth((&node.name, &ifname), ("switch", &port))
                    .bridge_port("switch", &format!("br-{}", nic.network), &port)
                    .addr(
                        (&node.name, &ifname),
                        &format!("{}/{}", nic.addr, topology.prefix_len(&nic.network)?),
                    );
            }
            if node.role == Role::Real {
                spec = spec
                    .addr((&node.name, "lo"), &format!("{}/32", topology.vip))
                    .sysctl(&node.name, "net/ipv4/conf/all/arp_ignore", "1")
                    .sysctl(&node.name, "net/ipv4/conf/all/arp_announce", "2");
            }
        }
        Ok(spec)
    }

    /// Builds the lab and starts every node's daemons; the lab stays up after this process
    /// when `persistent` (`cargo xtask lab up`), else it goes with the returned value.
    pub fn up(topology: Topology, persistent: bool) -> anyhow::Result<NetnsLab> {
        let (base, state_dir, bpf_root) = if persistent {
            if Path::new(STATE_DIR).exists() {
                bail!("{STATE_DIR} exists: a lab is up already (`cargo xtask lab down` first)");
            }
            (
                LabSpec::persistent("lab", PREFIX),
                PathBuf::from(STATE_DIR),
                PathBuf::from(BPF_ROOT),
            )
        } else {
            let id = std::process::id();
            (
                LabSpec::new("lab"),
                std::env::temp_dir().join(format!("lb-lab-{id}")),
                PathBuf::from(format!("/sys/fs/bpf/lb-lab-{id}")),
            )
        };
        let lab = Self::spec(&topology, base)?.build()?;
        std::fs::create_dir_all(&state_dir)?;
        let lab = NetnsLab {
            topology,
            lab,
            state_dir,
            bpf_root,
        };
        let started = lab.start_all();
        if let Err(error) = started {
            lab.down();
            return Err(error);
        }
        Ok(lab)
    }

    /// The persistent lab, brought up earlier by `cargo xtask lab up`.
    pub fn open(topology: Topology) -> anyhow::Result<NetnsLab> {
        let mut hosts: Vec<&str> = topology.node.iter().map(|n| n.name.as_str()).collect();
        hosts.push("switch");
        let lab = Lab::open(PREFIX, &hosts)?;
        Ok(NetnsLab {
            topology,
            lab,
            state_dir: PathBuf::from(STATE_DIR),
            bpf_root: PathBuf::from(BPF_ROOT),
        })
    }

    fn start_all(&self) -> anyhow::Result<()> {
        for node in &self.topology.node {
            match node.role {
                Role::Real => self.start_nginx(&node.name)?,
                Role::Keepalived => self.start_keepalived(&node.name)?,
                Role::Client | Role::Lb => {}
            }
        }
        // Lower priorities first: the preferred master starts last and preempts, as after a
        // return.
        let mut lbs: Vec<_> = self.topology.nodes(Role::Lb).collect();
        lbs.sort_by_key(|n| n.priority);
        for node in lbs {
            self.start_lb(&node.name)?;
        }
        Ok(())
    }

    fn node_dir(&self, node: &str) -> anyhow::Result<PathBuf> {
        let dir = self.state_dir.join(node);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Where the lab's files are.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where the lab's lb nodes pin.
    pub fn bpf_root(&self) -> &Path {
        &self.bpf_root
    }

    /// `node`'s lb configuration file.
    pub fn lb_config_path(&self, node: &str) -> PathBuf {
        self.state_dir.join(node).join("lb.toml")
    }

    /// `node`'s bpffs directory.
    pub fn bpf_dir(&self, node: &str) -> PathBuf {
        self.bpf_root.join(node)
    }

    /// Starts lb on `node` (its config written anew) and waits until it runs.
    pub fn start_lb(&self, name: &str) -> anyhow::Result<u32> {
        let node = self.topology.node(name)?;
        let dir = self.node_dir(name)?;
        let config = self
            .topology
            .lb_config(node, &self.bpf_dir(name), "generic", interface)?;
        std::fs::write(self.lb_config_path(name), config)?;
        let log_path = dir.join("lb.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let from = log.metadata()?.len();
        let mut command = self.lab.host(name).command(lb_binary()?)?;
        command
            .arg("run")
            .arg("-c")
            .arg(self.lb_config_path(name))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let pid = self.lab.start(command)?;
        std::fs::write(dir.join("lb.pid"), pid.to_string())?;
        let started = Instant::now();
        loop {
            let mut text = String::new();
            let mut file = File::open(&log_path)?;
            std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(from))?;
            file.read_to_string(&mut text)?;
            if text.contains("lb running") {
                return Ok(pid);
            }
            if let Some(line) = text.lines().find(|l| l.contains("ERROR")) {
                bail!("lb on {name} failed: {line} (log: {})", log_path.display());
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!(
                    "lb on {name} did not start within 20 s (log: {})",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of `node`'s lb, if it runs.
    pub fn lb_pid(&self, node: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.state_dir.join(node).join("lb.pid")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        let alive = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|cmdline| cmdline.contains("lb.toml"));
        alive.then_some(pid)
    }

    /// Starts nginx on real `node`: every path answers the node's name.
    pub fn start_nginx(&self, node: &str) -> anyhow::Result<()> {
        let dir = self.node_dir(node)?.join("nginx");
        std::fs::create_dir_all(&dir)?;
        let config = format!(
            "worker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n access_log off;\n keepalive_requests 1000000;\n keepalive_timeout 300s;\n\
             client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};\n\
             uwsgi_temp_path {dir}; scgi_temp_path {dir};\n default_type text/plain;\n\
             server {{\n  listen 80;\n  location / {{ return 200 \"{node}\\n\"; }}\n }}\n}}\n",
            dir = dir.display()
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config)?;
        let mut command = self.lab.host(node).command("nginx")?;
        command
            .args(["-g", "daemon off;", "-c"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.lab
            .start(command)
            .context("starting nginx (run `cargo xtask setup`)")?;
        Ok(())
    }

    /// Stops nginx on real `node` (a real failing).
    pub fn stop_nginx(&self, node: &str) -> anyhow::Result<()> {
        let pid_file = self.state_dir.join(node).join("nginx/nginx.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .trim()
            .parse()?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGQUIT,
        )?;
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("nginx on {node} did not stop")
    }

    /// Starts keepalived on `node` with one VRRP instance for the VIP (VRRPv3, 100 ms, the
    /// same router id as the lab's lb config).
    pub fn start_keepalived(&self, name: &str) -> anyhow::Result<()> {
        let node = self.topology.node(name)?;
        let dir = self.node_dir(name)?;
        let config = self.topology.keepalived_config(node, interface)?;
        crate::daemons::keepalived(&self.lab, name, &config, &dir)?;
        Ok(())
    }

    /// The node (lb or keepalived) holding the VIP, if one does.
    pub fn master(&self) -> Option<String> {
        self.topology
            .vrrp_nodes()
            .find(|n| self.holds_vip(&n.name))
            .map(|n| n.name.clone())
    }

    /// Whether `node` has the VIP on an interface.
    pub fn holds_vip(&self, node: &str) -> bool {
        self.output(node, "ip", &["-o", "-4", "addr", "show"])
            .is_ok_and(|text| self.topology.lists_vip(&text))
    }

    /// Waits up to `limit` until some node holds the VIP.
    pub fn wait_for_master(&self, limit: Duration) -> anyhow::Result<String> {
        super::wait_for(
            "a node holding the VIP",
            limit,
            Duration::from_millis(50),
            || self.master(),
        )
    }

    /// Runs `program args` on `node` and returns its standard output.
    pub fn output(&self, node: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .lab
            .host(node)
            .command(program)?
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program} on {node}"))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `command` on `node` with the terminal, as a user would there: lb commands find
    /// the node's agent (`LB_CONFIG`, `LB_BPF_DIR`) and lb itself on `PATH`.
    pub fn exec(&self, node: &str, command: &[String]) -> anyhow::Result<ExitStatus> {
        let (program, args) = command
            .split_first()
            .context("exec needs a command: `exec NODE -- CMD ...`")?;
        self.topology.node(node)?;
        let lb = lb_binary()?;
        let bin_dir = lb.parent().map(Path::to_path_buf).unwrap_or_default();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = self.lab.host(node).command(program)?;
        child
            .args(args)
            .env("PATH", path)
            .env("LB_CONFIG", self.lb_config_path(node))
            .env("LB_BPF_DIR", self.bpf_dir(node));
        child
            .status()
            .with_context(|| format!("running {program} on {node}"))
    }

    /// Takes the lab down: its processes, namespaces, pins and files; nothing else.
    pub fn down(self) {
        self.lab.remove(Duration::from_secs(3));
        let _ = std::fs::remove_dir_all(&self.bpf_root);
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}
