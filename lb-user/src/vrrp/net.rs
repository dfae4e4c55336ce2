//! VRRP on the wire: a raw IP socket for protocol 112 bound to the instance's interface,
//! joined to the group (224.0.0.18 or ff02::12) or sending to unicast peers, TTL / hop limit
//! 255 both ways (RFC 5798 5.1.1.3). IPv4 receives come with the IP header; IPv6 ones carry
//! the destination and hop limit as ancillary data.

use std::{
    io,
    mem::MaybeUninit,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::AsRawFd as _,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::packet::IPPROTO_VRRP;

/// The VRRP multicast group for IPv4 (RFC 5798 5.1.1.2).
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The VRRP multicast group for IPv6 (RFC 5798 5.1.2.2).
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// A received VRRP packet with the IP fields the protocol checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// IP source.
    pub src: IpAddr,
    /// IP destination.
    pub dst: IpAddr,
    /// TTL or hop limit (must be 255).
    pub ttl: u8,
    /// The VRRP message.
    pub payload: Vec<u8>,
}

/// The instance's socket.
pub struct VrrpSocket {
    socket: AsyncFd<Socket>,
    destinations: Vec<IpAddr>,
    ipv6: bool,
}

impl VrrpSocket {
    /// Opens an IPv4 socket on `interface` with source `local`; sends to `peers`, or to the
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
            vec![IpAddr::V4(group)]
        } else {
            peers.iter().map(|p| IpAddr::V4(*p)).collect()
        };
        Self::register(socket, destinations, false)
    }

    /// Opens an IPv6 socket on interface `ifindex` (`interface`), sending to ff02::12 from the
    /// interface's link-local address, as RFC 5798 asks.
    pub fn open_v6(interface: &str, ifindex: u32) -> io::Result<Self> {
        let socket = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )?;
        socket.bind_device(Some(interface.as_bytes()))?;
        socket.set_nonblocking(true)?;
        socket.set_unicast_hops_v6(255)?;
        socket.set_multicast_hops_v6(255)?;
        socket.set_multicast_loop_v6(false)?;
        socket.set_multicast_if_v6(ifindex)?;
        socket.join_multicast_v6(&VRRP_GROUP_V6, ifindex)?;
        socket.set_recv_hoplimit_v6(true)?;
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option on our socket.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVPKTINFO,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::register(socket, vec![IpAddr::V6(VRRP_GROUP_V6)], true)
    }

    fn register(socket: Socket, destinations: Vec<IpAddr>, ipv6: bool) -> io::Result<Self> {
        // SAFETY: the socket is owned by the AsyncFd from here on and closed only when it drops.
        let socket = unsafe { AsyncFd::register(socket) }.map_err(io::Error::from)?;
        Ok(VrrpSocket {
            socket,
            destinations,
            ipv6,
        })
    }

    /// Where advertisements go.
    pub fn destinations(&self) -> &[IpAddr] {
        &self.destinations
    }

    /// Sends `message` (built for `dst`) to `dst`.
    pub fn send_to(&self, message: &[u8], dst: IpAddr) -> io::Result<()> {
        let addr: SocketAddr = match dst {
            IpAddr::V4(v4) => SocketAddrV4::new(v4, 0).into(),
            IpAddr::V6(v6) => SocketAddrV6::new(v6, 0, 0, 0).into(),
        };
        self.socket.get_ref().send_to(message, &addr.into())?;
        Ok(())
    }

    /// Waits for the next protocol-112 packet; `Ok(None)` for one too short to carry an IP
    /// header (counted by the caller as malformed).
    pub async fn recv(&self) -> io::Result<Option<Received>> {
        loop {
            let mut guard = self.socket.readable().await?;
            let result = guard.try_io(|inner| {
                if self.ipv6 {
                    recv_v6(inner.get_ref())
                } else {
                    recv_v4(inner.get_ref())
                }
            });
            match result {
                Ok(received) => return received,
                Err(_would_block) => continue,
            }
        }
    }
}

fn recv_v4(socket: &Socket) -> io::Result<Option<Received>> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    let n = socket.recv(&mut buf)?;
    // SAFETY: `recv` initialised the first `n` bytes.
    let bytes: Vec<u8> = buf[..n]
        .iter()
        .map(|b| unsafe { b.assume_init() })
        .collect();
    Ok(parse_ip(&bytes))
}

/// recvmsg on the IPv6 socket: the payload, the source from the address, the destination and
/// hop limit from IPV6_PKTINFO and IPV6_HOPLIMIT.
fn recv_v6(socket: &Socket) -> io::Result<Option<Received>> {
    let mut payload = [0u8; 2048];
    // cmsghdr needs its natural alignment: a plain byte array does not guarantee it.
    #[repr(C, align(8))]
    struct Control([u8; 256]);
    let mut control = Control([0; 256]);
    // SAFETY: zeroed sockaddr_in6 and msghdr are valid starting points.
    let mut from: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: as above.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_in6).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: every pointer in `msg` points at a live buffer of the stated length.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut dst = None;
    let mut hops = None;
    // SAFETY: walking the control buffer the kernel filled, with the libc CMSG macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let header = &*cmsg;
            if header.cmsg_level == libc::IPPROTO_IPV6 && header.cmsg_type == libc::IPV6_PKTINFO {
                let info =
                    std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::in6_pktinfo>());
                dst = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            } else if header.cmsg_level == libc::IPPROTO_IPV6
                && header.cmsg_type == libc::IPV6_HOPLIMIT
            {
                hops = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let (Some(dst), Some(hops)) = (dst, hops) else {
        return Ok(None);
    };
    Ok(Some(Received {
        src: IpAddr::V6(Ipv6Addr::from(from.sin6_addr.s6_addr)),
        dst: IpAddr::V6(dst),
        ttl: u8::try_from(hops).unwrap_or(0),
        payload: payload[..n as usize].to_vec(),
    }))
}

/// Splits a raw IPv4 packet into the fields VRRP checks and its payload (pnet's header view;
/// a header that does not fit the bytes, or another protocol, is no advertisement).
fn parse_ip(bytes: &[u8]) -> Option<Received> {
    use pnet_packet::{Packet as _, ip::IpNextHeaderProtocol, ipv4::Ipv4Packet};
    let packet = Ipv4Packet::new(bytes)?;
    let header_len = usize::from(packet.get_header_length()) * 4;
    if packet.get_version() != 4
        || header_len < 20
        || bytes.len() < header_len
        || packet.get_next_level_protocol() != IpNextHeaderProtocol(IPPROTO_VRRP)
    {
        return None;
    }
    Some(Received {
        src: IpAddr::V4(packet.get_source()),
        dst: IpAddr::V4(packet.get_destination()),
        ttl: packet.get_ttl(),
        payload: packet.payload().to_vec(),
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
        assert_eq!(received.src, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(received.payload.len(), 12);
        assert_eq!(parse_ip(&packet[..19]), None);
        packet[9] = 6;
        assert_eq!(parse_ip(&packet), None, "not VRRP");
    }
}
