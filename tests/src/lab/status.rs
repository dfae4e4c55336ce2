//! `cargo xtask lab status`: which node is VRRP master, each lb node's XDP attach mode and
//! its view of the reals' health, and a request through the VIP on each service.

use std::fmt::Write as _;

use super::{namespaces::NetnsLab, topology::Role};

/// The XDP attach mode on `interface` as `ip -d link` shows it.
pub(super) fn xdp_mode(details: &str) -> &'static str {
    if details.contains("xdpgeneric") {
        "generic"
    } else if details.contains("xdpoffload") {
        "offload"
    } else if details.contains("xdpdrv") || details.contains(" xdp ") {
        "native"
    } else {
        "none"
    }
}

impl NetnsLab {
    /// The status report.
    pub fn status(&self) -> String {
        let mut out = String::new();
        let master = self.master();
        let _ = writeln!(
            out,
            "VIP {}: {}",
            self.topology.vip,
            master
                .as_deref()
                .map_or("held by no node".to_string(), |m| format!("master {m}"))
        );
        for node in &self.topology.node {
            let role = match node.role {
                Role::Client => "client",
                Role::Lb => "lb",
                Role::Real => "real (nginx)",
                Role::Keepalived => "keepalived",
            };
            let addrs: Vec<String> = node.nics.iter().map(|n| n.addr.to_string()).collect();
            let _ = write!(out, "{:<8} {:<12} {:<16}", node.name, role, addrs.join(","));
            if node.role == Role::Lb {
                let running = self
                    .lb_pid(&node.name)
                    .map_or("lb not running".to_string(), |pid| format!("lb pid {pid}"));
                let details = self
                    .output(&node.name, "ip", &["-d", "link", "show", "eth0"])
                    .unwrap_or_default();
                let state = if master.as_deref() == Some(node.name.as_str()) {
                    "MASTER"
                } else {
                    "backup"
                };
                let _ = write!(
                    out,
                    " {running}, {state}, XDP {} on eth0, priority {}",
                    xdp_mode(&details),
                    node.priority.unwrap_or_default()
                );
            }
            out.push('\n');
        }
        if let Some(master) = master.filter(|m| self.lb_pid(m).is_some()) {
            let shown = self
                .output(
                    &master,
                    &crate::agent::lb_binary()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|_| "lb".into()),
                    &[
                        "ctl",
                        "--bpf-dir",
                        &self.bpf_dir(&master).display().to_string(),
                        "show",
                        "servers",
                    ],
                )
                .unwrap_or_default();
            let _ = writeln!(out, "health as {master} sees it (lb ctl show servers):");
            for line in shown.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        for (port, what) in [(80, "L4, XDP"), (8080, "L7, proxy")] {
            let answer = match self.get_from_client(port) {
                Ok((status, body)) => format!("{status} {body}"),
                Err(error) => format!("failed: {error:#}"),
            };
            let _ = writeln!(
                out,
                "client: GET http://{}/ ({what}) -> {answer}",
                self.site(port)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::xdp_mode;

    #[test]
    fn attach_modes_are_read_from_ip_link() {
        assert_eq!(xdp_mode("mtu 1500 xdpgeneric qdisc noqueue"), "generic");
        assert_eq!(xdp_mode("mtu 1500 xdp qdisc mq"), "native");
        assert_eq!(xdp_mode("mtu 1500 qdisc noqueue"), "none");
    }
}
