//! Header walk: Ethernet (+ one VLAN tag) -> IPv4 (with options) / IPv6 (+ extension headers)
//! -> TCP / UDP. Every read is preceded by a bounds check against `data_end`, and the parser
//! bumps the class counters (`vlan`, `ipv4`, `tcp`, ...) as it recognises each header.

use core::mem::size_of;

use aya_ebpf::programs::XdpContext;
use lb_common::{counters::Counter, maps::FlowKey};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};

use crate::maps::Tally;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const IPPROTO_HOPOPTS: u8 = 0;
/// ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// How many IPv6 extension headers the walk skips before giving up. Real traffic carries
/// zero to two; the bound keeps the verifier's view of the loop finite.
pub const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Why a frame is not a candidate for balancing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Cut short inside a header, or a header field that cannot be right (IHL < 5, ...).
    Malformed,
    /// Well-formed but not TCP/UDP over IP, or a fragment: counted by class, passed as is.
    NotBalanced,
}

/// The addresses and ports of a TCP, UDP or ICMP packet (ICMP has no ports). IPv4 addresses
/// sit in `src[0]` / `dst[0]` (network byte order) with the other words zero.
#[derive(Clone, Copy)]
pub struct Parsed {
    /// True for IPv6.
    pub ipv6: bool,
    /// IP protocol number (TCP or UDP).
    pub protocol: u8,
    /// Source address, network byte order.
    pub src: [u32; 4],
    /// Destination address, network byte order.
    pub dst: [u32; 4],
    /// Source port, host byte order.
    pub src_port: u16,
    /// Destination port, host byte order.
    pub dst_port: u16,
    /// Offset of the IP header from the start of the frame.
    pub l3_offset: usize,
    /// Offset of the TCP/UDP header from the start of the frame.
    pub l4_offset: usize,
    /// TCP: the FIN and RST bits of the flags byte ([`TCP_FIN`], [`TCP_RST`]); 0 otherwise.
    pub tcp_close: u8,
}

/// TCP flag FIN.
pub const TCP_FIN: u8 = 0x01;
/// TCP flag RST.
pub const TCP_RST: u8 = 0x04;

impl Parsed {
    /// The packet's flow as the maps key it.
    #[inline(always)]
    pub fn flow_key(&self, family: u8) -> FlowKey {
        FlowKey {
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            protocol: self.protocol,
            family,
            _pad: [0; 2],
        }
    }
}

/// Returns a pointer to a `T` at `offset` if the whole `T` lies inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, ParseError> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return Err(ParseError::Malformed);
    }
    Ok((start + offset) as *const T)
}

/// Like [`ptr_at`], for writing.
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Walks the headers of the frame in `ctx`.
#[inline(always)]
pub fn parse_frame(ctx: &XdpContext, t: &mut Tally) -> Result<Parsed, ParseError> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    // SAFETY: `ptr_at` checked the header lies inside the frame.
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut offset = EthHdr::LEN;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let vlan: *const VlanHdr = ptr_at(ctx, offset)?;
        t.add(Counter::Vlan);
        // SAFETY: bounds checked by `ptr_at`.
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        offset += VlanHdr::LEN;
    }
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, offset, t),
        ETH_P_IPV6 => parse_ipv6(ctx, offset, t),
        _ => {
            t.add(Counter::NonIp);
            Err(ParseError::NotBalanced)
        }
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3_offset: usize, t: &mut Tally) -> Result<Parsed, ParseError> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_offset)?;
    // SAFETY: bounds checked by `ptr_at`.
    let ip = unsafe { &*ip };
    let header_len = ((ip.vihl & 0x0f) as usize) * 4;
    let total_len = u16::from_be_bytes(ip.tot_len) as usize;
    if ip.vihl >> 4 != 4 || header_len < size_of::<Ipv4Hdr>() || total_len < header_len {
        return Err(ParseError::Malformed);
    }
    // The options must be inside the frame too, even though nothing reads them yet.
    if ctx.data() + l3_offset + header_len > ctx.data_end() {
        return Err(ParseError::Malformed);
    }
    t.add(Counter::Ipv4);
    let frags = u16::from_be_bytes(ip.frags);
    // More-fragments flag (0x2000) or a non-zero offset (low 13 bits): a fragment.
    if frags & 0x3fff != 0 {
        t.add(Counter::Fragment);
        return Err(ParseError::NotBalanced);
    }
    let mut parsed = Parsed {
        ipv6: false,
        protocol: ip.proto,
        src: [u32::from_ne_bytes(ip.src_addr), 0, 0, 0],
        dst: [u32::from_ne_bytes(ip.dst_addr), 0, 0, 0],
        src_port: 0,
        dst_port: 0,
        l3_offset,
        l4_offset: l3_offset + header_len,
        tcp_close: 0,
    };
    parse_l4(ctx, &mut parsed, t)?;
    Ok(parsed)
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3_offset: usize, t: &mut Tally) -> Result<Parsed, ParseError> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_offset)?;
    // SAFETY: bounds checked by `ptr_at`.
    let ip = unsafe { &*ip };
    if ip.vcf[0] >> 4 != 6 {
        return Err(ParseError::Malformed);
    }
    t.add(Counter::Ipv6);
    let mut next_header = ip.next_hdr;
    let mut offset = l3_offset + size_of::<Ipv6Hdr>();
    let mut walked = 0;
    while walked < MAX_IPV6_EXT_HEADERS {
        match next_header {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH => {
                // Next Header, then Hdr Ext Len: 8-octet units past the first 8 (RFC 8200
                // section 4.3), or 4-octet units past the first 8 for AH (RFC 4302 section 2.2).
                let ext: *const [u8; 2] = ptr_at(ctx, offset)?;
                // SAFETY: bounds checked by `ptr_at`.
                let [next, len] = unsafe { *ext };
                let ext_len = if next_header == IPPROTO_AH {
                    (len as usize + 2) * 4
                } else {
                    (len as usize + 1) * 8
                };
                next_header = next;
                offset += ext_len;
            }
            IPPROTO_FRAGMENT => {
                // Any fragment header marks a fragment, including an atomic one with offset 0
                // and no M flag: RFC 8200 lets a receiver reassemble it, so treat it the same.
                let _: *const [u8; 8] = ptr_at(ctx, offset)?;
                t.add(Counter::Fragment);
                return Err(ParseError::NotBalanced);
            }
            _ => break,
        }
        walked += 1;
    }
    if walked == MAX_IPV6_EXT_HEADERS
        && matches!(
            next_header,
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH | IPPROTO_FRAGMENT
        )
    {
        t.add(Counter::Ipv6ExtLimit);
        return Err(ParseError::NotBalanced);
    }
    let mut parsed = Parsed {
        ipv6: true,
        protocol: next_header,
        src: words(&ip.src_addr),
        dst: words(&ip.dst_addr),
        src_port: 0,
        dst_port: 0,
        l3_offset,
        l4_offset: offset,
        tcp_close: 0,
    };
    parse_l4(ctx, &mut parsed, t)?;
    Ok(parsed)
}

/// The 16 bytes of an IPv6 address as four network-order words.
#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = u32::from_ne_bytes([
            addr[4 * i],
            addr[4 * i + 1],
            addr[4 * i + 2],
            addr[4 * i + 3],
        ]);
        i += 1;
    }
    out
}

#[inline(always)]
fn parse_l4(ctx: &XdpContext, parsed: &mut Parsed, t: &mut Tally) -> Result<(), ParseError> {
    match parsed.protocol {
        IPPROTO_TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, parsed.l4_offset)?;
            // SAFETY: bounds checked by `ptr_at`.
            let tcp = unsafe { &*tcp };
            // The data offset is the high nibble of the 13th byte, read as a plain byte:
            // older verifiers (Debian 12's 6.1) lose the bounds of the bitfield accessor's
            // arithmetic and refuse the packet-pointer math below.
            let offset_byte: *const u8 = ptr_at(ctx, parsed.l4_offset + 12)?;
            // SAFETY: bounds checked by `ptr_at`.
            let header_len = usize::from(unsafe { *offset_byte } >> 4) * 4;
            // Data offset below 5 words, or options running past the frame: not a TCP header.
            if header_len < size_of::<TcpHdr>()
                || ctx.data() + parsed.l4_offset + header_len > ctx.data_end()
            {
                return Err(ParseError::Malformed);
            }
            t.add(Counter::Tcp);
            parsed.src_port = u16::from_be_bytes(tcp.source);
            parsed.dst_port = u16::from_be_bytes(tcp.dest);
            // The flags byte is the 14th of the header (RFC 9293 section 3.1).
            let flags: *const u8 = ptr_at(ctx, parsed.l4_offset + 13)?;
            // SAFETY: bounds checked by `ptr_at`.
            parsed.tcp_close = unsafe { *flags } & (TCP_FIN | TCP_RST);
            Ok(())
        }
        IPPROTO_UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, parsed.l4_offset)?;
            // SAFETY: bounds checked by `ptr_at`.
            let udp = unsafe { &*udp };
            t.add(Counter::Udp);
            parsed.src_port = u16::from_be_bytes(udp.src);
            parsed.dst_port = u16::from_be_bytes(udp.dst);
            Ok(())
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            // Handed on: an ICMP error quoting a VIP flow must reach that flow's real.
            t.add(Counter::Other);
            Ok(())
        }
        _ => {
            t.add(Counter::Other);
            Err(ParseError::NotBalanced)
        }
    }
}
