//! VRRP on the wire (IPv4): a raw IP socket for protocol 112 bound to the instance's
//! interface, joined to 224.0.0.18 (or sending to unicast peers), TTL 255 both ways.

use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv4Addr, SocketAddrV4},
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::IPPROTO_VRRP;

/// The VRRP multicast group (RFC 5798 5.1.1.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// A received VRRP packet with the IP fields the protocol checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// IP source.
    pub src: Ipv4Addr,
    /// IP destination.
    pub dst: Ipv4Addr,
    /// TTL (must be 255).
    pub ttl: u8,
    /// The VRRP message.
    pub payload: Vec<u8>,
}

/// The instance's socket.
pub struct VrrpSocket {
    socket: AsyncFd<Socket>,
    destinations: Vec<Ipv4Addr>,
}

impl VrrpSocket {
    /// Opens the socket on `interface` with source `local`; sends to `peers`, or to the
    /// multicast `group` (normally [`VRRP_GROUP_V4`]) when there are none.
    pub fn open(
        interface: &str,
        local: Ipv4Addr,
        group: Ipv4Addr,
        peers: &[Ipv4Addr],
    ) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_nonblocking(true)?;
        // RFC 5798 5.1.1.3: sent with TTL 255, and receivers drop anything else.
        socket.set_ttl_v4(255)?;
        socket.set_multicast_ttl_v4(255)?;
        socket.set_multicast_loop_v4(false)?;
        socket.set_multicast_if_v4(&local)?;
        if peers.is_empty() {
            socket.join_multicast_v4(&group, &local)?;
        }
        // No bind(): a raw socket bound to an address only receives packets sent to it, and
        // advertisements go to the group. The source comes from IP_MULTICAST_IF (or the route).
        let destinations = if peers.is_empty() {
            vec![group]
        } else {
            peers.to_vec()
        };
        // SAFETY: the socket is owned by the AsyncFd from here on and closed only when it drops.
        let socket = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(VrrpSocket {
            socket,
            destinations,
        })
    }

    /// Where advertisements go.
    pub fn destinations(&self) -> &[Ipv4Addr] {
        &self.destinations
    }

    /// Sends `message` (built for `dst`) to `dst`.
    pub fn send_to(&self, message: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        self.socket
            .get_ref()
            .send_to(message, &SocketAddrV4::new(dst, 0).into())?;
        Ok(())
    }

    /// Waits for the next protocol-112 packet; `Ok(None)` for one too short to carry an IP
    /// header (counted by the caller as malformed).
    pub async fn recv(&self) -> io::Result<Option<Received>> {
        loop {
            let mut guard = self.socket.readable().await?;
            let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
            match guard.try_io(|inner| inner.get_ref().recv(&mut buf)) {
                Ok(Ok(n)) => {
                    // SAFETY: `recv` initialised the first `n` bytes.
                    let bytes: Vec<u8> = buf[..n]
                        .iter()
                        .map(|b| unsafe { b.assume_init() })
                        .collect();
                    return Ok(parse_ip(&bytes));
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Splits a raw IPv4 packet into the fields VRRP checks and its payload.
fn parse_ip(bytes: &[u8]) -> Option<Received> {
    if bytes.len() < 20 || bytes[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(bytes[0] & 0x0f) * 4;
    if header_len < 20 || bytes.len() < header_len || bytes[9] != IPPROTO_VRRP {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([bytes[2], bytes[3]])).min(bytes.len());
    Some(Received {
        src: Ipv4Addr::new(bytes[12], bytes[13], bytes[14], bytes[15]),
        dst: Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]),
        ttl: bytes[8],
        payload: bytes[header_len..total.max(header_len)].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_header_fields_and_payload() {
        let mut packet = vec![
            0x45, 0, 0, 32, 0, 0, 0, 0, 255, 112, 0, 0, 192, 168, 1, 1, 224, 0, 0, 18,
        ];
        packet.extend_from_slice(&[0x31, 51, 100, 1, 0, 100, 0, 0, 192, 168, 1, 201]);
        let received = parse_ip(&packet).expect("valid");
        assert_eq!(received.ttl, 255);
        assert_eq!(received.src, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(received.payload.len(), 12);
        assert_eq!(parse_ip(&packet[..19]), None);
        packet[9] = 6;
        assert_eq!(parse_ip(&packet), None, "not VRRP");
    }
}
