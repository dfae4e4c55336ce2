//! Next hops of reals: which interface to send on, from which MAC, to which MAC. Read from the
//! kernel's routing and neighbour tables over netlink, so the XDP program needs no FIB lookup
//! on the packet path and packet fixtures stay deterministic.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use futures::TryStreamExt as _;
use netlink_packet_route::{
    AddressFamily,
    link::LinkAttribute,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState},
    route::{RouteAddress, RouteAttribute},
};
use rtnetlink::{Handle, RouteMessageBuilder};

/// How a real is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nexthop {
    /// Outgoing interface.
    pub ifindex: u32,
    /// MAC of the outgoing interface.
    pub smac: [u8; 6],
    /// MAC of the real, or of the gateway towards it.
    pub dmac: [u8; 6],
}

/// Errors talking to the kernel's tables.
#[derive(Debug, thiserror::Error)]
pub enum NeighError {
    /// Netlink failed.
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    /// Opening the netlink socket failed.
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
}

/// Resolves next hops for addresses through one netlink connection.
pub struct Resolver {
    handle: Handle,
}

impl Resolver {
    /// Opens a netlink connection in the caller's network namespace (spawned on the current
    /// tokio runtime).
    pub fn new() -> Result<Self, NeighError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Resolver { handle })
    }

    /// Next hops of every address in `addrs` that resolves. Addresses whose neighbour entry is
    /// missing get a probe datagram (which makes the kernel resolve it) and are retried for up
    /// to `patience`.
    pub async fn resolve_all(
        &self,
        addrs: &[IpAddr],
        patience: Duration,
    ) -> Result<HashMap<IpAddr, Nexthop>, NeighError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut found = HashMap::new();
        let mut probed = false;
        loop {
            for &addr in addrs {
                if !found.contains_key(&addr)
                    && let Some(nexthop) = self.resolve(addr).await?
                {
                    found.insert(addr, nexthop);
                }
            }
            if found.len() == addrs.len() || tokio::time::Instant::now() >= deadline {
                return Ok(found);
            }
            if !probed {
                for &addr in addrs.iter().filter(|a| !found.contains_key(a)) {
                    probe(addr);
                }
                probed = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The next hop of `addr`, if the route and the neighbour entry are known.
    pub async fn resolve(&self, addr: IpAddr) -> Result<Option<Nexthop>, NeighError> {
        let message = match addr {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .build(),
        };
        let Some(route) = self
            .handle
            .route()
            .get(message)
            .execute()
            .try_next()
            .await
            .ok()
            .flatten()
        else {
            return Ok(None);
        };
        let mut ifindex = None;
        let mut via = addr;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Oif(index) => ifindex = Some(*index),
                RouteAttribute::Gateway(RouteAddress::Inet(gw)) => via = IpAddr::V4(*gw),
                RouteAttribute::Gateway(RouteAddress::Inet6(gw)) => via = IpAddr::V6(*gw),
                _ => {}
            }
        }
        let Some(ifindex) = ifindex else {
            return Ok(None);
        };
        let Some(smac) = self.link_mac(ifindex).await? else {
            return Ok(None);
        };
        let Some(dmac) = self.neighbour_mac(ifindex, via).await? else {
            return Ok(None);
        };
        Ok(Some(Nexthop {
            ifindex,
            smac,
            dmac,
        }))
    }

    async fn link_mac(&self, ifindex: u32) -> Result<Option<[u8; 6]>, NeighError> {
        let mut links = self.handle.link().get().match_index(ifindex).execute();
        // Every answer is read: a stream dropped early leaves the netlink connection with
        // answers it cannot deliver (and a warning for each).
        let mut found = None;
        while let Some(link) = links.try_next().await? {
            for attribute in link.attributes {
                if let LinkAttribute::Address(mac) = attribute
                    && let Ok(mac) = <[u8; 6]>::try_from(mac.as_slice())
                {
                    found.get_or_insert(mac);
                }
            }
        }
        Ok(found)
    }

    async fn neighbour_mac(
        &self,
        ifindex: u32,
        addr: IpAddr,
    ) -> Result<Option<[u8; 6]>, NeighError> {
        let family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let mut neighbours = self
            .handle
            .neighbours()
            .get()
            .set_address_family(family)
            .execute();
        // The whole dump is read (see `link_mac`), the first usable entry kept.
        let mut found = None;
        while let Some(neighbour) = neighbours.try_next().await? {
            if found.is_some() || neighbour.header.ifindex != ifindex {
                continue;
            }
            // Stale entries still name the right MAC; the kernel refreshes them on use.
            let usable = matches!(
                neighbour.header.state,
                NeighbourState::Reachable
                    | NeighbourState::Stale
                    | NeighbourState::Delay
                    | NeighbourState::Probe
                    | NeighbourState::Permanent
                    | NeighbourState::Noarp
            );
            if !usable {
                continue;
            }
            let mut destination = None;
            let mut mac = None;
            for attribute in &neighbour.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        destination = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        destination = Some(IpAddr::V6(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(lla) => {
                        mac = <[u8; 6]>::try_from(lla.as_slice()).ok()
                    }
                    _ => {}
                }
            }
            if destination == Some(addr) {
                found = mac;
            }
        }
        Ok(found)
    }
}

/// Makes the kernel resolve `addr`'s next hop by sending it an empty datagram on the discard
/// port (9): harmless to the real, and the kernel ARPs or solicits on the way out.
fn probe(addr: IpAddr) {
    let bind: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    if let Ok(socket) = UdpSocket::bind(bind) {
        let _ = socket.send_to(&[], (addr, 9));
    }
}
