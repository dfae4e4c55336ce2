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
