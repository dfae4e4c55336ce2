//! The lab on Vagrant VMs (provider libvirt): what `vagrant/Vagrantfile` reads, rendered from
//! the topology file (the Vagrantfile stays free of the lab's facts), and how each node is
//! provisioned (a shell script per role).
//!
//! A VM's first interface (eth0) is Vagrant's management network; the topology's nics follow
//! as eth1, eth2, ... Each topology network is an isolated libvirt network `lblab-<name>`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::topology::{Node, Role, Topology};

/// The box the VMs boot (built by `cargo xtask lab box`).
pub const BOX_NAME: &str = "lb-lab/bookworm";
/// Guest memory, MiB: small, the VMs run under software emulation here.
const MEMORY_MIB: u32 = 384;

/// What the Vagrantfile reads.
#[derive(Debug, Serialize)]
pub struct VagrantLab {
    /// The box.
    pub r#box: String,
    /// libvirt domain type: "qemu" (TCG, software) or "kvm".
    pub driver: String,
    /// Guest memory, MiB.
    pub memory: u32,
    /// Direct kernel boot: the box's kernel and initrd (on this host) and command line.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmd_line: String,
    /// The lb binary built on this host, copied into the lb nodes.
    pub lb_binary: PathBuf,
    /// The nodes.
    pub nodes: Vec<VmNode>,
}

/// One VM.
#[derive(Debug, Serialize)]
pub struct VmNode {
    pub name: String,
    pub role: String,
    pub nics: Vec<VmNic>,
    /// The provisioning script (run as root on first boot).
    pub provision: String,
}

/// One lab interface of a VM.
#[derive(Debug, Serialize)]
pub struct VmNic {
    /// The libvirt network.
    pub network: String,
    pub addr: String,
    pub netmask: String,
}

/// The interface name of a node's `index`-th topology nic on a VM.
pub fn interface(index: usize) -> String {
    format!("eth{}", index + 1)
}

/// The libvirt network of topology network `name`.
pub fn network_name(name: &str) -> String {
    format!("lblab-{name}")
}

fn netmask(length: u8) -> String {
    let mask = if length == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(length))
    };
    std::net::Ipv4Addr::from(mask).to_string()
}

/// Renders `topology` for the Vagrantfile: the box's files are under `box_dir`.
pub fn render(
    topology: &Topology,
    box_dir: &Path,
    lb_binary: &Path,
    driver: &str,
) -> anyhow::Result<VagrantLab> {
    let mut nodes = Vec::new();
    for node in &topology.node {
        let mut nics = Vec::new();
        for nic in &node.nics {
            nics.push(VmNic {
                network: network_name(&nic.network),
                addr: nic.addr.to_string(),
                netmask: netmask(topology.prefix_len(&nic.network)?),
            });
        }
        nodes.push(VmNode {
            name: node.name.clone(),
            role: format!("{:?}", node.role).to_lowercase(),
            nics,
            provision: provision(topology, node)
                .with_context(|| format!("provisioning {}", node.name))?,
        });
    }
    Ok(VagrantLab {
        r#box: BOX_NAME.to_string(),
        driver: driver.to_string(),
        memory: MEMORY_MIB,
        kernel: box_dir.join("vmlinuz"),
        initrd: box_dir.join("initrd.img"),
        cmd_line: "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0".to_string(),
        lb_binary: lb_binary.to_path_buf(),
        nodes,
    })
}

/// `text` written to `path` by a shell script (a quoted here-document: no expansion).
fn write_file(path: &str, text: &str) -> String {
    format!("cat > {path} <<'LB_LAB_EOF'\n{text}\nLB_LAB_EOF\n")
}

/// The provisioning script of `node`: what its role runs, started now and at every boot.
fn provision(topology: &Topology, node: &Node) -> anyhow::Result<String> {
    let mut script = String::from("set -eu\n");
    match node.role {
        Role::Client => {}
        Role::Real => {
            script.push_str(&format!(
                "ip addr replace {vip}/32 dev lo\n\
                 printf 'net.ipv4.conf.all.arp_ignore = 1\\nnet.ipv4.conf.all.arp_announce = 2\\n' \
                 > /etc/sysctl.d/90-lb-lab.conf\nsysctl -q -p /etc/sysctl.d/90-lb-lab.conf\n\
                 printf 'auto lo:vip\\niface lo:vip inet static\\n  address {vip}/32\\n' \
                 > /etc/network/interfaces.d/lb-lab-vip\n",
                vip = topology.vip
            ));
            script.push_str(&write_file(
                "/etc/nginx/sites-enabled/default",
                &format!(
                    "server {{\n  listen 80 default_server;\n  keepalive_requests 1000000;\n  \
                     keepalive_timeout 300s;\n  default_type text/plain;\n  \
                     location / {{ return 200 \"{}\\n\"; }}\n}}",
                    node.name
                ),
            ));
            script.push_str("systemctl enable nginx\nsystemctl restart nginx\n");
        }
        Role::Keepalived => {
            script.push_str(&write_file(
                "/etc/keepalived/keepalived.conf",
                &topology.keepalived_config(node, interface)?,
            ));
            script.push_str("systemctl enable keepalived\nsystemctl restart keepalived\n");
        }
        Role::Lb => {
            let config =
                topology.lb_config(node, Path::new("/sys/fs/bpf/lb"), "auto", interface)?;
            script.push_str("install -m 0755 /tmp/lb /usr/local/bin/lb\nmkdir -p /etc/lb\n");
            script.push_str(&write_file("/etc/lb/lb.toml", config.trim_end()));
            script.push_str(&write_file(
                "/etc/systemd/system/lb.service",
                "[Unit]\nDescription=lb load balancer\nAfter=network-online.target\n\
                 Wants=network-online.target\n\n[Service]\n\
                 ExecStartPre=/bin/sh -c 'mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf'\n\
                 ExecStart=/usr/local/bin/lb run -c /etc/lb/lb.toml\nExecReload=/bin/kill -HUP $MAINPID\n\
                 Restart=on-failure\n\n[Install]\nWantedBy=multi-user.target",
            ));
            script.push_str(
                "/usr/local/bin/lb check -c /etc/lb/lb.toml\n\
                 systemctl daemon-reload\nsystemctl enable lb\nsystemctl restart lb\n",
            );
        }
    }
    Ok(script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_topology_renders_for_the_vms() {
        let topology =
            Topology::load(&crate::lab::default_topology()).expect("the shipped topology");
        let lab = render(
            &topology,
            Path::new("/box"),
            Path::new("/target/lb"),
            "qemu",
        )
        .expect("renders");
        let lb1 = lab.nodes.iter().find(|n| n.name == "lb1").expect("lb1");
        assert_eq!(lb1.nics[0].network, "lblab-lan");
        assert_eq!(lb1.nics[0].netmask, "255.255.255.0");
        // The lab interface is eth1 on a VM (eth0 is Vagrant's), XDP mode chosen by lb.
        assert!(
            lb1.provision.contains("interface = \"eth1\""),
            "{}",
            lb1.provision
        );
        assert!(lb1.provision.contains("xdp_mode = \"auto\""));
        assert!(lb1.provision.contains("priority = 150"));
        let real = lab.nodes.iter().find(|n| n.name == "real2").expect("real2");
        assert!(real.provision.contains("return 200 \"real2\\n\""));
        assert!(
            real.provision
                .contains("ip addr replace 10.0.5.100/32 dev lo")
        );
        assert_eq!(lab.kernel, Path::new("/box/vmlinuz"));
    }
}
