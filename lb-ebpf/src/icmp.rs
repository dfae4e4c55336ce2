//! ICMP errors about VIP flows. A router on the client's path that cannot forward a reply
//! (IPv4 "fragmentation needed", ICMPv6 "packet too big") sends the error to the VIP; it must
//! reach the real that sent the reply, or path MTU discovery breaks for that flow. The error
//! quotes the reply's headers: source VIP:port, destination client:port. In NAT mode the real
//! sent that reply from its own address and port, so the error is rewritten to say so.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    counters::Counter,
    hash::flow_hash,
    maps::{
        FAMILY_V4, Flow, FlowKey, MODE_DR, MODE_NAT, MODE_TUN, REAL_ACTIVE, SERVICE_ACTIVE,
        ServiceKey, Settings,
    },
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    csum,
    forward::{self, Verdict},
    maps::{LB_CONNS, LB_REALS, Tally, find_service},
    parse::{IPPROTO_TCP, IPPROTO_UDP, Parsed, ptr_at, ptr_at_mut},
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// ICMP and ICMPv6 headers are 8 bytes before the quoted packet.
const ICMP_HEADER_LEN: usize = 8;

/// Forwards an ICMP "fragmentation needed" / "packet too big" quoting a flow in the connection
/// table to that flow's real (DR and TUN as is; NAT rewritten to the real's side).
#[inline(always)]
pub fn handle(
    ctx: &XdpContext,
    p: &Parsed,
    family: u8,
    settings: &Settings,
    t: &mut Tally,
) -> Verdict {
    let Ok(header) = ptr_at::<[u8; 2]>(ctx, p.l4_offset) else {
        return Verdict::Pass;
    };
    // SAFETY: bounds checked by `ptr_at`.
    let [kind, code] = unsafe { *header };
    let is_too_big = if family == FAMILY_V4 {
        kind == ICMP_DEST_UNREACH && code == ICMP_FRAG_NEEDED
    } else {
        kind == ICMPV6_PACKET_TOO_BIG
    };
    if !is_too_big {
        return Verdict::Pass;
    }
    let Some(quoted) = quoted_flow(ctx, p.l4_offset + ICMP_HEADER_LEN, family) else {
        return Verdict::Pass;
    };
    // The quoted packet went from the VIP to the client: the service is its source.
    let key = ServiceKey {
        addr: quoted.src,
        port: quoted.src_port,
        protocol: quoted.protocol,
        family,
    };
    let Some(service) = find_service(&key) else {
        return Verdict::Pass;
    };
    if service.flags & SERVICE_ACTIVE == 0 {
        return Verdict::Pass;
    }
    let flow = FlowKey {
        src: quoted.dst,
        dst: quoted.src,
        src_port: quoted.dst_port,
        dst_port: quoted.src_port,
        protocol: quoted.protocol,
        family,
        _pad: [0; 2],
    };
    let Some(entry) = (unsafe { LB_CONNS.get(flow) }).copied() else {
        return Verdict::Pass;
    };
    if entry.service_id != service.id {
        return Verdict::Pass;
    }
    let Some(real) = real_of(&entry) else {
        return Verdict::Pass;
    };
    match service.mode {
        MODE_DR => {
            t.add(Counter::IcmpToReal);
            forward::direct(ctx, &real)
        }
        MODE_TUN => {
            t.add(Counter::IcmpToReal);
            let hash = flow_hash(&flow, settings.hash_seed, false);
            forward::tunnel(ctx, p, family, &real, settings, hash, t)
        }
        MODE_NAT => {
            // The real never sent from the VIP: the error must name the real's own address
            // and port, as its reply had them before the way back rewrote them.
            if !to_real_side(ctx, p, family, &quoted, &real) {
                return Verdict::Pass;
            }
            t.add(Counter::IcmpToReal);
            forward::direct(ctx, &real)
        }
        _ => Verdict::Pass,
    }
}

/// NAT: rewrites an ICMP error about a reply the balancer turned back (VIP:port -> client)
/// into one about the reply the real sent (real:port -> client): outer destination, quoted
/// source address and port, and every checksum they are part of (outer IPv4 header, quoted
/// IPv4 header, ICMP / ICMPv6). False if a header is not where it should be.
#[inline(always)]
fn to_real_side(
    ctx: &XdpContext,
    p: &Parsed,
    family: u8,
    quoted: &FlowKey,
    real: &lb_common::maps::Real,
) -> bool {
    let quoted_l3 = p.l4_offset + ICMP_HEADER_LEN;
    let Some(icmp_check) = ptr_at_mut::<[u8; 2]>(ctx, p.l4_offset + 2) else {
        return false;
    };
    // SAFETY: bounds checked by `ptr_at_mut`.
    let mut check = u16::from_be_bytes(unsafe { *icmp_check });
    let quoted_l4 = if family == FAMILY_V4 {
        let (Some(outer), Some(inner)) = (
            ptr_at_mut::<Ipv4Hdr>(ctx, p.l3_offset),
            ptr_at_mut::<Ipv4Hdr>(ctx, quoted_l3),
        ) else {
            return false;
        };
        // SAFETY: both headers bounds checked by `ptr_at_mut`.
        unsafe {
            let header_len = usize::from((*inner).vihl & 0x0f) * 4;
            // The outer header is not covered by the ICMP checksum.
            let outer_check = u16::from_be_bytes((*outer).check);
            (*outer).check =
                csum::replace_word(outer_check, quoted.src[0], real.addr[0]).to_be_bytes();
            (*outer).dst_addr = real.addr[0].to_ne_bytes();
            let old_inner_check = u16::from_be_bytes((*inner).check);
            let new_inner_check = csum::replace_word(old_inner_check, quoted.src[0], real.addr[0]);
            (*inner).check = new_inner_check.to_be_bytes();
            (*inner).src_addr = real.addr[0].to_ne_bytes();
            check = csum::replace_word(check, quoted.src[0], real.addr[0]);
            check = csum::replace_u16(check, old_inner_check, new_inner_check);
            quoted_l3 + header_len
        }
    } else {
        let (Some(outer), Some(inner)) = (
            ptr_at_mut::<Ipv6Hdr>(ctx, p.l3_offset),
            ptr_at_mut::<Ipv6Hdr>(ctx, quoted_l3),
        ) else {
            return false;
        };
        let mut bytes = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            bytes[4 * i..4 * i + 4].copy_from_slice(&real.addr[i].to_ne_bytes());
            i += 1;
        }
        // SAFETY: both headers bounds checked by `ptr_at_mut`.
        unsafe {
            (*outer).dst_addr = bytes;
            (*inner).src_addr = bytes;
        }
        // The ICMPv6 checksum covers the pseudo-header (outer destination) and the quote.
        check = csum::replace_addr6(check, &p.dst, &real.addr);
        check = csum::replace_addr6(check, &quoted.src, &real.addr);
        quoted_l3 + 40
    };
    let Some(port) = ptr_at_mut::<[u8; 2]>(ctx, quoted_l4) else {
        return false;
    };
    // SAFETY: bounds checked by `ptr_at_mut`.
    unsafe { *port = real.port.to_be_bytes() };
    check = csum::replace_u16(check, quoted.src_port, real.port);
    // SAFETY: bounds checked by `ptr_at_mut` above; nothing moved the frame since.
    unsafe { *icmp_check = check.to_be_bytes() };
    true
}

#[inline(always)]
fn real_of(entry: &Flow) -> Option<lb_common::maps::Real> {
    let real = *LB_REALS.get(entry.real_id)?;
    (real.flags & REAL_ACTIVE != 0 && real.key == entry.real_key).then_some(real)
}

/// Addresses, ports and protocol of the packet quoted at `offset`.
#[inline(always)]
fn quoted_flow(ctx: &XdpContext, offset: usize, family: u8) -> Option<FlowKey> {
    let mut flow = FlowKey {
        family,
        ..FlowKey::default()
    };
    let l4 = if family == FAMILY_V4 {
        let ip = ptr_at::<Ipv4Hdr>(ctx, offset).ok()?;
        // SAFETY: bounds checked by `ptr_at`.
        let ip = unsafe { &*ip };
        let header_len = usize::from(ip.vihl & 0x0f) * 4;
        if header_len < 20 {
            return None;
        }
        flow.src[0] = u32::from_ne_bytes(ip.src_addr);
        flow.dst[0] = u32::from_ne_bytes(ip.dst_addr);
        flow.protocol = ip.proto;
        offset + header_len
    } else {
        let ip = ptr_at::<Ipv6Hdr>(ctx, offset).ok()?;
        // SAFETY: bounds checked by `ptr_at`.
        let ip = unsafe { &*ip };
        let mut i = 0;
        while i < 4 {
            let s = &ip.src_addr[4 * i..4 * i + 4];
            let d = &ip.dst_addr[4 * i..4 * i + 4];
            flow.src[i] = u32::from_ne_bytes([s[0], s[1], s[2], s[3]]);
            flow.dst[i] = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]);
            i += 1;
        }
        // Quoted extension headers are not walked: a too-big reply from a real carries none.
        flow.protocol = ip.next_hdr;
        offset + 40
    };
    if flow.protocol != IPPROTO_TCP && flow.protocol != IPPROTO_UDP {
        return None;
    }
    // RFC 792 and 4443 quote at least the first 8 bytes of the transport header: the ports.
    let ports = ptr_at::<[u8; 4]>(ctx, l4).ok()?;
    // SAFETY: bounds checked by `ptr_at`.
    let ports = unsafe { *ports };
    flow.src_port = u16::from_be_bytes([ports[0], ports[1]]);
    flow.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
    Some(flow)
}
