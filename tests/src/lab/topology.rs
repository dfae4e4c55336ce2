//! The lab's topology file (`vagrant/lab.toml`): networks, nodes and what runs on them, and
//! the lb configuration every balancer node gets. Read and checked here; the netns lab and
//! the Vagrantfile are both built from it.

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// The address the balancer nodes share.
    pub vip: Ipv4Addr,
    /// Segments.
    pub network: Vec<Network>,
    /// Nodes.
    pub node: Vec<Node>,
    /// What lb nodes run.
    pub lb: LbSection,
}

/// One segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    /// `address/length`.
    pub prefix: String,
}

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends traffic; runs nothing.
    Client,
    /// Runs lb.
    Lb,
    /// Runs nginx, answering with its name; holds the VIP on `lo`.
    Real,
    /// Runs keepalived as a VRRP peer for the VIP.
    Keepalived,
}

/// One node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub role: Role,
    /// VRRP priority (lb and keepalived nodes).
    pub priority: Option<u8>,
    /// Interfaces, eth0 first.
    pub nics: Vec<Nic>,
}

/// One interface of a node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub network: String,
    pub addr: Ipv4Addr,
}

/// `[lb]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbSection {
    /// The lb configuration, with `${...}` placeholders filled in per node.
    pub config: String,
}

impl Topology {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Topology> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let topology: Topology =
            toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        topology
            .check()
            .with_context(|| format!("in {}", path.display()))?;
        Ok(topology)
    }

    fn check(&self) -> anyhow::Result<()> {
        let mut names = BTreeSet::new();
        for node in &self.node {
            // Interface names on the switch side are `<node>-<n>`: 15 bytes at most.
            if node.name.is_empty()
                || node.name.len() > 12
                || node.name == "switch"
                || !node
                    .name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                bail!(
                    "node `{}`: a name is 1 to 12 lowercase letters and digits, not `switch`",
                    node.name
                );
            }
            if !names.insert(node.name.as_str()) {
                bail!("node `{}` is declared twice", node.name);
            }
            if matches!(node.role, Role::Lb | Role::Keepalived) && node.priority.is_none() {
                bail!(
                    "node `{}`: a {:?} node needs a priority",
                    node.name,
                    node.role
                );
            }
            if node.nics.is_empty() {
                bail!("node `{}` has no nics", node.name);
            }
            for nic in &node.nics {
                let network = self
                    .network
                    .iter()
                    .find(|n| n.name == nic.network)
                    .with_context(|| {
                        format!("node `{}`: no network `{}`", node.name, nic.network)
                    })?;
                let (base, length) = prefix(&network.prefix)?;
                if !contains(base, length, nic.addr) {
                    bail!(
                        "node `{}`: {} is outside network `{}` ({})",
                        node.name,
                        nic.addr,
                        network.name,
                        network.prefix
                    );
                }
            }
        }
        if !self.node.iter().any(|n| n.role == Role::Lb) {
            bail!("no lb node");
        }
        if !self.node.iter().any(|n| n.role == Role::Client) {
            bail!("no client node");
        }
        Ok(())
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> anyhow::Result<&Node> {
        self.node
            .iter()
            .find(|n| n.name == name)
            .with_context(|| format!("the lab has no node `{name}`"))
    }

    /// Nodes with `role`.
    pub fn nodes(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.node.iter().filter(move |n| n.role == role)
    }

    /// Nodes that run VRRP for the VIP (lb and keepalived).
    pub fn vrrp_nodes(&self) -> impl Iterator<Item = &Node> {
        self.node
            .iter()
            .filter(|n| matches!(n.role, Role::Lb | Role::Keepalived))
    }

    /// Whether `ip -o -4 addr show` output lists the VIP.
    pub fn lists_vip(&self, addresses: &str) -> bool {
        addresses.contains(&format!(" {}/", self.vip))
    }

    /// The lb node with the highest priority: the master once the lab has settled.
    pub fn preferred_master(&self) -> anyhow::Result<String> {
        self.nodes(Role::Lb)
            .max_by_key(|n| n.priority)
            .map(|n| n.name.clone())
            .context("no lb node")
    }

    /// The network the VIP is on (the first whose prefix holds it).
    pub fn vip_network(&self) -> anyhow::Result<&Network> {
        for network in &self.network {
            let (base, length) = prefix(&network.prefix)?;
            if contains(base, length, self.vip) {
                return Ok(network);
            }
        }
        bail!("the VIP {} is on none of the networks", self.vip)
    }

    /// The prefix length of `network`.
    pub fn prefix_len(&self, network: &str) -> anyhow::Result<u8> {
        let network = self
            .network
            .iter()
            .find(|n| n.name == network)
            .with_context(|| format!("no network `{network}`"))?;
        Ok(prefix(&network.prefix)?.1)
    }

    /// The keepalived.conf of a keepalived `node`: one VRRP instance for the VIP, as the
    /// shipped lb config's (VRRPv3, router id 51, 100 ms), on the node's interface on the
    /// VIP's network (`interface(i)` names its i-th interface on this platform).
    pub fn keepalived_config(
        &self,
        node: &Node,
        interface: impl Fn(usize) -> String,
    ) -> anyhow::Result<String> {
        let network = self.vip_network()?;
        let index = node
            .nics
            .iter()
            .position(|nic| nic.network == network.name)
            .with_context(|| format!("node `{}` has no nic on `{}`", node.name, network.name))?;
        Ok(format!(
            "global_defs {{\n  router_id {}\n  vrrp_garp_master_delay 0\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface {}\n  version 3\n  virtual_router_id 51\n  \
             priority {}\n  advert_int 0.1\n  virtual_ipaddress {{\n    {}/{}\n  }}\n}}\n",
            node.name,
            interface(index),
            node.priority.unwrap_or(100),
            self.vip,
            prefix(&network.prefix)?.1,
        ))
    }

    /// The lb configuration of `node`: placeholders filled in, `interface(i)` naming the
    /// node's i-th interface on this platform. Errors on a placeholder it does not know.
    pub fn lb_config(
        &self,
        node: &Node,
        bpf_dir: &Path,
        xdp_mode: &str,
        interface: impl Fn(usize) -> String,
    ) -> anyhow::Result<String> {
        let mut out = String::new();
        let mut rest = self.lb.config.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .with_context(|| "an unclosed `${` in [lb] config")?;
            let name = &rest[start + 2..start + end];
            let value = match name {
                "priority" => node.priority.unwrap_or(100).to_string(),
                "bpf_dir" => bpf_dir.display().to_string(),
                "xdp_mode" => xdp_mode.to_string(),
                other => match other.strip_prefix("iface:") {
                    Some(network) => {
                        let index = node
                            .nics
                            .iter()
                            .position(|nic| nic.network == network)
                            .with_context(|| {
                                format!("node `{}` has no nic on `{network}`", node.name)
                            })?;
                        interface(index)
                    }
                    None => bail!("unknown placeholder `${{{other}}}` in [lb] config"),
                },
            };
            out.push_str(&value);
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn prefix(text: &str) -> anyhow::Result<(Ipv4Addr, u8)> {
    let (addr, length) = text
        .split_once('/')
        .with_context(|| format!("`{text}` is not address/length"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .with_context(|| format!("`{addr}` is not an IPv4 address"))?;
    let length: u8 = length
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .with_context(|| format!("`{length}` is not a prefix length"))?;
    Ok((addr, length))
}

fn contains(base: Ipv4Addr, length: u8, addr: Ipv4Addr) -> bool {
    let mask = if length == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(length))
    };
    u32::from(base) & mask == u32::from(addr) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Topology {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vagrant/lab.toml");
        Topology::load(&path).expect("the shipped topology loads")
    }

    #[test]
    fn the_shipped_topology_renders_a_valid_lb_config_for_each_lb_node() {
        let topology = shipped();
        let mut priorities = Vec::new();
        for node in topology.nodes(Role::Lb) {
            let text = topology
                .lb_config(node, Path::new("/sys/fs/bpf/x"), "generic", |i| {
                    format!("eth{i}")
                })
                .expect("renders");
            assert!(!text.contains("${"), "{text}");
            let file = tempfile::NamedTempFile::new().expect("temp file");
            std::fs::write(file.path(), &text).expect("write");
            lb::config::load_file(file.path()).expect("lb accepts the rendered config");
            priorities.push(node.priority);
        }
        assert_eq!(priorities, [Some(150), Some(100)]);
        assert_eq!(topology.vip_network().expect("vip network").name, "lan");
    }

    #[test]
    fn mistakes_in_the_topology_are_named() {
        let topology = shipped();
        let mut broken = topology.clone();
        broken.node[1].nics[0].addr = "10.9.9.9".parse().expect("addr");
        assert!(
            format!("{:#}", broken.check().expect_err("outside"))
                .contains("10.9.9.9 is outside network `lan`")
        );
        let mut broken = topology.clone();
        broken.lb.config.push_str("${nonsense}");
        let node = broken.node[1].clone();
        let error = broken
            .lb_config(&node, Path::new("/x"), "generic", |i| format!("eth{i}"))
            .expect_err("unknown placeholder");
        assert!(error.to_string().contains("${nonsense}"), "{error}");
        let mut broken = topology;
        broken.node[2].name = "lb1".into();
        assert!(broken.check().is_err());
    }
}
