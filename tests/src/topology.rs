//! Lab layouts shared by tests and the demo.

use crate::netns::LabSpec;

/// Client address in [`client_lb_server`].
pub const CLIENT_ADDR: &str = "10.0.1.2";
/// Server address in [`client_lb_server`].
pub const SERVER_ADDR: &str = "10.0.2.2";

/// `client (10.0.1.2) -- eth0 lb eth1 -- server (10.0.2.2)`: the balancer host routes between
/// two subnets (10.0.1.1/24 on eth0, 10.0.2.1/24 on eth1), so traffic between client and
/// server crosses both of its interfaces.
pub fn client_lb_server(test: &str) -> LabSpec {
    LabSpec::new(test)
        .host("client")
        .host("lb")
        .host("server")
        .veth(("client", "eth0"), ("lb", "eth0"))
        .veth(("lb", "eth1"), ("server", "eth0"))
        .addr(("client", "eth0"), "10.0.1.2/24")
        .addr(("lb", "eth0"), "10.0.1.1/24")
        .addr(("lb", "eth1"), "10.0.2.1/24")
        .addr(("server", "eth0"), "10.0.2.2/24")
        .route("client", "10.0.2.0/24", "10.0.1.1")
        .route("server", "10.0.1.0/24", "10.0.2.1")
        .sysctl("lb", "net/ipv4/ip_forward", "1")
}

/// VIP of [`balancer_with_reals`].
pub const VIP: &str = "10.0.0.100";

/// Address of real `i` (1-based) in [`balancer_with_reals`].
pub fn real_addr(i: usize) -> String {
    format!("10.0.2.{}", 10 + i)
}

/// A client, a balancer and `reals` real servers on a switch:
///
/// ```text
/// client 10.0.1.2 -- eth0 [lb] eth1 -- switch (bridge) -- real1 10.0.2.11, real2 ...
/// ```
///
/// The client routes the VIP subnet 10.0.0.0/24 through the balancer; the reals route
/// everything through it (so NAT replies come back through it) and hold the VIP on `lo`
/// without answering ARP for it (`arp_ignore=1`, `arp_announce=2`), as LVS DR reals do.
pub fn balancer_with_reals(test: &str, reals: usize) -> LabSpec {
    let mut spec = LabSpec::new(test)
        .host("client")
        .host("lb")
        .host("switch")
        .bridge("switch", "br0")
        .veth(("client", "eth0"), ("lb", "eth0"))
        .veth(("lb", "eth1"), ("switch", "plb"))
        .bridge_port("switch", "br0", "plb")
        .addr(("client", "eth0"), "10.0.1.2/24")
        .addr(("lb", "eth0"), "10.0.1.1/24")
        .addr(("lb", "eth1"), "10.0.2.1/24")
        .route("client", "10.0.0.0/24", "10.0.1.1")
        .route("client", "10.0.2.0/24", "10.0.1.1")
        .sysctl("lb", "net/ipv4/ip_forward", "1");
    for i in 1..=reals {
        let host = format!("real{i}");
        spec = real_on_switch(spec, &host, &format!("p{i}"), &real_addr(i), VIP).route(
            &host,
            "0.0.0.0/0",
            "10.0.2.1",
        );
    }
    spec
}

/// Adds real server `host` at `addr`/24 on the `switch` host's bridge `br0` (through port
/// `port`), holding `vip` on `lo` without answering ARP for it (`arp_ignore=1`,
/// `arp_announce=2`), as LVS DR and TUN reals do.
pub fn real_on_switch(spec: LabSpec, host: &str, port: &str, addr: &str, vip: &str) -> LabSpec {
    spec.host(host)
        .veth((host, "eth0"), ("switch", port))
        .bridge_port("switch", "br0", port)
        .addr((host, "eth0"), &format!("{addr}/24"))
        .addr((host, "lo"), &format!("{vip}/32"))
        .sysctl(host, "net/ipv4/conf/all/arp_ignore", "1")
        .sysctl(host, "net/ipv4/conf/all/arp_announce", "2")
}

/// The VIP of [`vrrp_segment`].
pub const SEGMENT_VIP: &str = "10.0.5.100";

/// Balancer nodes and a client on one switch, for VRRP:
///
/// ```text
/// client 10.0.5.2 --+
/// node1 10.0.5.11 --+-- switch (bridge)
/// node2 10.0.5.12 --+   ... the VIP 10.0.5.100/24 floats between the nodes
/// ```
pub fn vrrp_segment(test: &str, nodes: usize) -> LabSpec {
    let mut spec = LabSpec::new(test)
        .host("client")
        .host("switch")
        .bridge("switch", "br0")
        .veth(("client", "eth0"), ("switch", "pc"))
        .bridge_port("switch", "br0", "pc")
        .addr(("client", "eth0"), "10.0.5.2/24");
    for i in 1..=nodes {
        let host = format!("node{i}");
        let port = format!("p{i}");
        spec = spec
            .host(&host)
            .veth((&host, "eth0"), ("switch", &port))
            .bridge_port("switch", "br0", &port)
            .addr((&host, "eth0"), &format!("10.0.5.{}/24", 10 + i));
    }
    spec
}
