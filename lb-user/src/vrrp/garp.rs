//! Gratuitous ARP and unsolicited neighbour advertisements: tell the segment which MAC now
//! holds an address, so clients and routers update their caches the moment a node becomes
//! master. The frames are built with pnet's packet types; they go out through a send-only
//! packet socket (pnet's datalink channel would also receive, and so copy, every frame of a
//! busy balancer's interface, and turns promiscuous mode on by default).

use std::{
    io,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use pnet_base::MacAddr;
use pnet_packet::{
    MutablePacket as _,
    arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket},
    ethernet::{EtherTypes, MutableEthernetPacket},
    icmpv6::{
        Icmpv6Code, Icmpv6Types,
        ndp::{MutableNeighborAdvertPacket, NdpOption, NdpOptionTypes, NeighborAdvertFlags},
    },
};

const ETH_P_ARP: u16 = 0x0806;
/// Ethernet header plus an IPv4 ARP message.
const GARP_LEN: usize = 14 + 28;
/// A neighbour advertisement with one target link-layer address option.
const NA_LEN: usize = 24 + 8;

/// A gratuitous ARP request for `ip` from `mac` (sender and target address both `ip`, sent to
/// the broadcast address), as keepalived sends.
pub fn frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; GARP_LEN] {
    let mut frame = [0u8; GARP_LEN];
    let mac = MacAddr::from(mac);
    let mut ethernet =
        MutableEthernetPacket::new(&mut frame).expect("the buffer fits an Ethernet header");
    ethernet.set_destination(MacAddr::broadcast());
    ethernet.set_source(mac);
    ethernet.set_ethertype(EtherTypes::Arp);
    let mut arp =
        MutableArpPacket::new(ethernet.payload_mut()).expect("the buffer fits an ARP message");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(mac);
    arp.set_sender_proto_addr(ip);
    arp.set_target_hw_addr(MacAddr::zero());
    arp.set_target_proto_addr(ip);
    frame
}

/// An unsolicited neighbour advertisement for `target` from `mac` (RFC 4861 7.2.6): Override
/// set, Router and Solicited clear, the target link-layer address option. The kernel fills in
/// the checksum.
pub fn neighbour_advert(mac: [u8; 6], target: Ipv6Addr) -> [u8; NA_LEN] {
    let mut message = [0u8; NA_LEN];
    let mut advert =
        MutableNeighborAdvertPacket::new(&mut message).expect("the buffer fits the message");
    advert.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
    advert.set_icmpv6_code(Icmpv6Code(0));
    advert.set_flags(NeighborAdvertFlags::Override);
    advert.set_target_addr(target);
    advert.set_options(&[NdpOption {
        option_type: NdpOptionTypes::TargetLLAddr,
        length: 1,
        data: mac.to_vec(),
    }]);
    message
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
    pub fn send(&self, target: Ipv6Addr) -> io::Result<()> {
        let message = neighbour_advert(self.mac, target);
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
    fn gratuitous_request_is_byte_exact() {
        let f = frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 0, 5, 100));
        #[rustfmt::skip]
        let expected: [u8; GARP_LEN] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
            0, 1, 0x08, 0x00, 6, 4, 0, 1,
            2, 0, 0, 0, 0, 1, 10, 0, 5, 100,
            0, 0, 0, 0, 0, 0, 10, 0, 5, 100,
        ];
        assert_eq!(f, expected);
    }

    #[test]
    fn unsolicited_neighbour_advert_is_byte_exact() {
        let target: Ipv6Addr = "fd00:5::100".parse().expect("v6");
        let message = neighbour_advert([2, 0, 0, 0, 0, 1], target);
        let mut expected = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
        expected.extend_from_slice(&target.octets());
        expected.extend_from_slice(&[2, 1, 2, 0, 0, 0, 0, 1]);
        assert_eq!(message.to_vec(), expected);
    }

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
