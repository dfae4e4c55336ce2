//! Frames for tests: built with etherparse, then edited byte by byte for the edge cases a
//! builder will not produce (bad IHL, IPv4 options, IPv6 extension headers, truncation).

use etherparse::{PacketBuilder, VlanId};

/// MAC of the sending host in fixtures.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the balancer in fixtures.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
/// Client IPv4 address in fixtures.
pub const CLIENT_V4: [u8; 4] = [10, 0, 1, 2];
/// VIP in fixtures.
pub const VIP_V4: [u8; 4] = [10, 0, 0, 100];
/// Client IPv6 address in fixtures.
pub const CLIENT_V6: [u8; 16] = [0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// VIP (IPv6) in fixtures.
pub const VIP_V6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];

/// Offset of the IP header in an untagged Ethernet frame.
pub const L3: usize = 14;
/// Length of an IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

const PAYLOAD: &[u8] = b"hello, lb";

fn finish<B>(builder: etherparse::PacketBuilderStep<B>, payload: &[u8]) -> Vec<u8>
where
    etherparse::PacketBuilderStep<B>: Writable,
{
    builder.to_vec(payload)
}

/// The last step of an etherparse builder, whatever header it ends with.
pub trait Writable {
    /// Serialises the headers and `payload`.
    fn to_vec(self, payload: &[u8]) -> Vec<u8>;
}

macro_rules! writable {
    ($($step:ty),*) => {$(
        impl Writable for etherparse::PacketBuilderStep<$step> {
            fn to_vec(self, payload: &[u8]) -> Vec<u8> {
                let mut out = Vec::with_capacity(self.size(payload.len()));
                self.write(&mut out, payload).expect("writing to a Vec cannot fail");
                out
            }
        }
    )*};
}
writable!(
    etherparse::TcpHeader,
    etherparse::UdpHeader,
    etherparse::Icmpv4Header,
    etherparse::Icmpv6Header
);

/// IPv4 TCP segment from the client to the VIP.
pub fn ipv4_tcp(src_port: u16, dst_port: u16) -> Vec<u8> {
    finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv4(CLIENT_V4, VIP_V4, 64)
            .tcp(src_port, dst_port, 1, 64240)
            .syn(),
        PAYLOAD,
    )
}

/// IPv4 UDP datagram from the client to the VIP.
pub fn ipv4_udp(src_port: u16, dst_port: u16) -> Vec<u8> {
    finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv4(CLIENT_V4, VIP_V4, 64)
            .udp(src_port, dst_port),
        PAYLOAD,
    )
}

/// IPv4 ICMP echo request to the VIP.
pub fn ipv4_icmp_echo() -> Vec<u8> {
    finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv4(CLIENT_V4, VIP_V4, 64)
            .icmpv4_echo_request(7, 1),
        PAYLOAD,
    )
}

/// IPv6 TCP segment from the client to the VIP.
pub fn ipv6_tcp(src_port: u16, dst_port: u16) -> Vec<u8> {
    finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv6(CLIENT_V6, VIP_V6, 64)
            .tcp(src_port, dst_port, 1, 64240)
            .syn(),
        PAYLOAD,
    )
}

/// IPv6 UDP datagram from the client to the VIP.
pub fn ipv6_udp(src_port: u16, dst_port: u16) -> Vec<u8> {
    finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv6(CLIENT_V6, VIP_V6, 64)
            .udp(src_port, dst_port),
        PAYLOAD,
    )
}

/// ICMPv6 echo request to the VIP.
pub fn ipv6_icmp_echo() -> Vec<u8> {
    finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .ipv6(CLIENT_V6, VIP_V6, 64)
            .icmpv6_echo_request(7, 1),
        PAYLOAD,
    )
}

/// IPv4 TCP inside one 802.1Q tag (VLAN `vid`).
pub fn vlan_ipv4_tcp(vid: u16, src_port: u16, dst_port: u16) -> Vec<u8> {
    finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .single_vlan(VlanId::try_new(vid).expect("VLAN id below 4095"))
            .ipv4(CLIENT_V4, VIP_V4, 64)
            .tcp(src_port, dst_port, 1, 64240),
        PAYLOAD,
    )
}

/// `frame` with its 802.1Q tag's TPID changed to 802.1ad (0x88a8), as a provider bridge sends.
pub fn as_8021ad(mut frame: Vec<u8>) -> Vec<u8> {
    assert_eq!(&frame[12..14], &[0x81, 0x00], "frame has no 802.1Q tag");
    frame[12..14].copy_from_slice(&[0x88, 0xa8]);
    frame
}

/// IPv6 UDP inside one 802.1ad tag.
pub fn qinq_outer_ipv6_udp(vid: u16) -> Vec<u8> {
    let frame = finish(
        PacketBuilder::ethernet2(CLIENT_MAC, LB_MAC)
            .single_vlan(VlanId::try_new(vid).expect("VLAN id below 4095"))
            .ipv6(CLIENT_V6, VIP_V6, 64)
            .udp(5353, 53),
        PAYLOAD,
    );
    as_8021ad(frame)
}

/// Two VLAN tags (802.1ad outside, 802.1Q inside) around IPv4 TCP.
pub fn double_vlan_ipv4_tcp() -> Vec<u8> {
    let inner = vlan_ipv4_tcp(20, 40000, 80);
    let mut frame = inner[..12].to_vec();
    frame.extend_from_slice(&[0x88, 0xa8, 0x00, 0x0a]);
    frame.extend_from_slice(&inner[12..]);
    frame
}

/// An ARP request (who-has VIP tell client).
pub fn arp_request() -> Vec<u8> {
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x06]); // EtherType ARP
    frame.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&CLIENT_V4);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&VIP_V4);
    frame
}

/// The IPv4 header checksum (RFC 791) of `header` with its checksum field taken as zero.
pub fn ipv4_header_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, pair) in header.chunks(2).enumerate() {
        if i == 5 {
            continue;
        }
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn fix_ipv4_checksum(frame: &mut [u8], l3: usize) {
    let header_len = usize::from(frame[l3] & 0x0f) * 4;
    let end = (l3 + header_len).min(frame.len());
    let checksum = ipv4_header_checksum(&frame[l3..end]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&checksum.to_be_bytes());
}

/// `frame` (untagged IPv4) with `words` 32-bit words of IPv4 options (NOPs ending in EOL)
/// inserted after the fixed header; IHL, total length and checksum updated.
pub fn with_ipv4_options(frame: &[u8], words: usize) -> Vec<u8> {
    assert!(words <= 10, "IPv4 options are at most 40 bytes");
    let mut options = vec![1u8; words * 4];
    if let Some(last) = options.last_mut() {
        *last = 0;
    }
    let mut out = frame[..L3 + 20].to_vec();
    out.extend_from_slice(&options);
    out.extend_from_slice(&frame[L3 + 20..]);
    out[L3] = 0x40 | (5 + words as u8);
    let total = u16::from_be_bytes([out[L3 + 2], out[L3 + 3]]) + (words * 4) as u16;
    out[L3 + 2..L3 + 4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut out, L3);
    out
}

/// `frame` (untagged IPv4) with its IHL set to `ihl` (checksum updated, nothing moved).
pub fn with_ipv4_ihl(frame: &[u8], ihl: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[L3] = (out[L3] & 0xf0) | (ihl & 0x0f);
    fix_ipv4_checksum(&mut out, L3);
    out
}

/// `frame` (untagged IPv4) with its version nibble set to `version`.
pub fn with_ip_version(frame: &[u8], version: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[L3] = (version << 4) | (out[L3] & 0x0f);
    out
}

/// `frame` (untagged IPv4) with its total length set to `len`.
pub fn with_ipv4_total_len(frame: &[u8], len: u16) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[L3 + 2..L3 + 4].copy_from_slice(&len.to_be_bytes());
    fix_ipv4_checksum(&mut out, L3);
    out
}

/// `frame` (untagged IPv4) with the more-fragments flag and a fragment offset (in 8-byte units).
pub fn as_ipv4_fragment(frame: &[u8], more_fragments: bool, offset_units: u16) -> Vec<u8> {
    let mut out = frame.to_vec();
    let flags = (if more_fragments { 0x2000 } else { 0 }) | (offset_units & 0x1fff);
    out[L3 + 6..L3 + 8].copy_from_slice(&flags.to_be_bytes());
    fix_ipv4_checksum(&mut out, L3);
    out
}

/// `frame` (untagged IPv4) with the TCP data offset set to `words`.
pub fn with_tcp_data_offset(frame: &[u8], words: u8) -> Vec<u8> {
    let mut out = frame.to_vec();
    let l4 = L3 + usize::from(out[L3] & 0x0f) * 4;
    out[l4 + 12] = (words << 4) | (out[l4 + 12] & 0x0f);
    out
}

/// IPv6 extension header numbers used by [`with_ipv6_ext_headers`].
pub mod ext {
    /// Hop-by-hop options.
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Authentication header.
    pub const AH: u8 = 51;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;
}

/// `frame` (untagged IPv6) with 8-byte extension headers of the given types inserted after the
/// fixed header, chained in order, and the payload length updated.
pub fn with_ipv6_ext_headers(frame: &[u8], types: &[u8]) -> Vec<u8> {
    let upper = frame[L3 + 6];
    let mut headers = Vec::new();
    for (i, &kind) in types.iter().enumerate() {
        let next = types.get(i + 1).copied().unwrap_or(upper);
        let mut header = [0u8; 8];
        header[0] = next;
        match kind {
            // Fragment header: reserved byte, then offset 0 with M set (a first fragment).
            ext::FRAGMENT => header[3] = 1,
            // AH length counts 4-byte words minus 2: 8 bytes -> 0.
            _ => header[1] = 0,
        }
        if kind == ext::HOP_BY_HOP || kind == ext::DEST_OPTS {
            // A PadN option filling the 6 option bytes.
            header[2] = 1;
            header[3] = 4;
        }
        headers.extend_from_slice(&header);
    }
    let mut out = frame[..L3 + IPV6_HEADER_LEN].to_vec();
    if let Some(&first) = types.first() {
        out[L3 + 6] = first;
    }
    out.extend_from_slice(&headers);
    out.extend_from_slice(&frame[L3 + IPV6_HEADER_LEN..]);
    let payload = u16::from_be_bytes([out[L3 + 4], out[L3 + 5]]) + headers.len() as u16;
    out[L3 + 4..L3 + 6].copy_from_slice(&payload.to_be_bytes());
    out
}

/// The first `len` bytes of `frame`.
pub fn truncated(frame: &[u8], len: usize) -> Vec<u8> {
    frame[..len].to_vec()
}

/// TCP segment (ACK set, payload `payload`) between two sockets of one family.
pub fn tcp_segment(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(smac, dmac);
    match (src.ip(), dst.ip()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => finish(
            eth.ipv4(s.octets(), d.octets(), 64)
                .tcp(src.port(), dst.port(), 1000, 64240)
                .ack(1),
            payload,
        ),
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => finish(
            eth.ipv6(s.octets(), d.octets(), 64)
                .tcp(src.port(), dst.port(), 1000, 64240)
                .ack(1),
            payload,
        ),
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// UDP datagram between two sockets of one family.
pub fn udp_datagram(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(smac, dmac);
    match (src.ip(), dst.ip()) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => finish(
            eth.ipv4(s.octets(), d.octets(), 64)
                .udp(src.port(), dst.port()),
            payload,
        ),
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => finish(
            eth.ipv6(s.octets(), d.octets(), 64)
                .udp(src.port(), dst.port()),
            payload,
        ),
        _ => panic!("{src} and {dst} are of different families"),
    }
}

/// `frame` with new destination and source MAC addresses.
pub fn with_macs(frame: &[u8], dmac: [u8; 6], smac: [u8; 6]) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[..6].copy_from_slice(&dmac);
    out[6..12].copy_from_slice(&smac);
    out
}

/// An ICMP "fragmentation needed" from `router` to `to`, quoting `quoted` (an IP packet: its
/// header and first 8 payload bytes are kept, as RFC 792 asks).
pub fn icmpv4_frag_needed(
    smac: [u8; 6],
    dmac: [u8; 6],
    router: std::net::Ipv4Addr,
    to: std::net::Ipv4Addr,
    quoted: &[u8],
    mtu: u16,
) -> Vec<u8> {
    let header_len = usize::from(quoted[0] & 0x0f) * 4;
    let kept = &quoted[..(header_len + 8).min(quoted.len())];
    finish(
        PacketBuilder::ethernet2(smac, dmac)
            .ipv4(router.octets(), to.octets(), 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: mtu,
                },
            )),
        kept,
    )
}

/// An ICMPv6 "packet too big" from `router` to `to`, quoting `quoted` (an IPv6 packet: its
/// header and first 8 payload bytes, enough for the ports).
pub fn icmpv6_packet_too_big(
    smac: [u8; 6],
    dmac: [u8; 6],
    router: std::net::Ipv6Addr,
    to: std::net::Ipv6Addr,
    quoted: &[u8],
    mtu: u32,
) -> Vec<u8> {
    let kept = &quoted[..48.min(quoted.len())];
    finish(
        PacketBuilder::ethernet2(smac, dmac)
            .ipv6(router.octets(), to.octets(), 64)
            .icmpv6(etherparse::Icmpv6Type::PacketTooBig { mtu }),
        kept,
    )
}

/// An IPIP frame: Ethernet, an outer IPv4 header as `lb_ingress` writes it (DF, TTL 64, id 0,
/// the inner TOS), then the inner IP packet.
pub fn ipip(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    inner: &[u8],
) -> Vec<u8> {
    let total = (inner.len() + 20) as u16;
    let mut header = vec![0x45, inner[1]];
    header.extend_from_slice(&total.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0x40, 0, 64, 4, 0, 0]);
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    let check = ipv4_header_checksum(&header);
    header[10..12].copy_from_slice(&check.to_be_bytes());
    let mut frame = dmac.to_vec();
    frame.extend_from_slice(&smac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&header);
    frame.extend_from_slice(inner);
    frame
}

/// An IP6IP6 frame: Ethernet, an outer IPv6 header (hop limit 64, next header 41, the given
/// flow label), then the inner IPv6 packet.
pub fn ip6ip6(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    flow_label: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut frame = dmac.to_vec();
    frame.extend_from_slice(&smac);
    frame.extend_from_slice(&[0x86, 0xdd]);
    frame.extend_from_slice(&(0x6000_0000u32 | (flow_label & 0xf_ffff)).to_be_bytes());
    frame.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[41, 64]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&dst.octets());
    frame.extend_from_slice(inner);
    frame
}
