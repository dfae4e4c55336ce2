//! Gratuitous ARP: tells the segment which MAC now holds an address, so clients and routers
//! update their caches the moment a node becomes master.

use std::{
    io,
    net::Ipv4Addr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const ETH_P_ARP: u16 = 0x0806;

/// A gratuitous ARP request for `ip` from `mac` (sender and target address both `ip`, sent to
/// the broadcast address), as keepalived sends.
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&ip.octets());
    frame[38..42].copy_from_slice(&ip.octets());
    frame
}

/// A packet socket for sending gratuitous ARPs out of one interface. Opened once: closing a
/// packet socket waits for an RCU grace period, far too slow to do per frame.
pub struct GarpSender {
    fd: OwnedFd,
    ifindex: u32,
    mac: [u8; 6],
}

impl GarpSender {
    /// Opens the socket for interface `ifindex` whose MAC is `mac`.
    pub fn open(ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(GarpSender { fd, ifindex, mac })
    }

    /// Sends one gratuitous ARP for `ip`.
    pub fn send(&self, ip: Ipv4Addr) -> io::Result<()> {
        let frame = frame(self.mac, ip);
        // SAFETY: a zeroed sockaddr_ll is valid; the fields set below describe the destination.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETH_P_ARP.to_be();
        addr.sll_ifindex = self.ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: `frame` and `addr` are valid for the lengths given; the fd is open.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                libc::MSG_DONTWAIT,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Sends unsolicited neighbour advertisements (RFC 4861 7.2.6) for IPv6 addresses: ICMPv6
/// type 136 to all-nodes with the Override flag and the target link-layer address option.
pub struct NaSender {
    socket: socket2::Socket,
    mac: [u8; 6],
}

impl NaSender {
    /// Opens a raw ICMPv6 socket on `interface` (index `ifindex`).
    pub fn open(interface: &str, ifindex: u32, mac: [u8; 6]) -> io::Result<Self> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
        socket.bind_device(Some(interface.as_bytes()))?;
        // Neighbour discovery messages must carry hop limit 255 (RFC 4861 7.1.2).
        socket.set_multicast_hops_v6(255)?;
        socket.set_unicast_hops_v6(255)?;
        socket.set_multicast_if_v6(ifindex)?;
        Ok(NaSender { socket, mac })
    }

    /// Announces `target`; the kernel fills in the ICMPv6 checksum.
    pub fn send(&self, target: std::net::Ipv6Addr) -> io::Result<()> {
        let mut message = vec![136, 0, 0, 0];
        // Flags: Override (0x20); not Router, not Solicited.
        message.extend_from_slice(&[0x20, 0, 0, 0]);
        message.extend_from_slice(&target.octets());
        // Option 2: target link-layer address, length 1 (8 bytes).
        message.extend_from_slice(&[2, 1]);
        message.extend_from_slice(&self.mac);
        let all_nodes = std::net::SocketAddrV6::new(
            std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
            0,
            0,
            0,
        );
        self.socket.send_to(&message, &all_nodes.into())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gratuitous_request_layout() {
        let f = frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 5, 100));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "request");
        assert_eq!(&f[28..32], &[10, 0, 5, 100], "sender address");
        assert_eq!(&f[38..42], &[10, 0, 5, 100], "target address is the same");
        assert_eq!(&f[32..38], &[0; 6]);
    }
}
