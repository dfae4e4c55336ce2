//! Sending a packet to its real: DR (new MAC addresses), TUN (IPIP / IP6IP6 in front) and NAT
//! (new destination, checksums updated incrementally), plus NAT's way back.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use lb_common::{
    counters::Counter,
    maps::{FAMILY_V4, FlowKey, NatEntry, Real, Settings},
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    csum,
    maps::{LB_NAT, Tally, publish_nat},
    parse::{IPPROTO_TCP, IPPROTO_UDP, Parsed, ptr_at_mut},
};

/// What to do with the frame.
#[derive(Clone, Copy)]
pub enum Verdict {
    /// Hand it to the stack.
    Pass,
    /// Send it back out of the ingress interface.
    Tx,
    /// Send it out of the interface `bpf_redirect` recorded. (The index is not carried in
    /// the verdict: a payload that only one variant writes is read on every path by the
    /// compiled code, which older verifiers (Debian 12's 6.1) refuse as uninitialised stack.)
    Redirect,
    /// Drop it.
    Drop,
}

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;
const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;

/// Writes the MAC addresses and picks TX or redirect by the outgoing interface.
#[inline(always)]
fn send(ctx: &XdpContext, dmac: &[u8; 6], smac: &[u8; 6], ifindex: u32) -> Verdict {
    let Some(eth) = ptr_at_mut::<[u8; 12]>(ctx, 0) else {
        return Verdict::Drop;
    };
    let mut addresses = [0u8; 12];
    addresses[..6].copy_from_slice(dmac);
    addresses[6..].copy_from_slice(smac);
    // SAFETY: `ptr_at_mut` checked the 12 bytes lie inside the frame.
    unsafe { *eth = addresses };
    // SAFETY: reading the context's ingress_ifindex field.
    let ingress = unsafe { (*ctx.ctx).ingress_ifindex };
    if ifindex == ingress {
        return Verdict::Tx;
    }
    // SAFETY: plain helper call; it only records the target for after the program.
    let action = unsafe { bpf_redirect(ifindex, 0) } as u32;
    if action == xdp_action::XDP_REDIRECT {
        Verdict::Redirect
    } else {
        Verdict::Drop
    }
}

/// DR: only the MAC addresses change; the real holds the VIP on a non-ARPing interface.
#[inline(always)]
pub fn direct(ctx: &XdpContext, real: &Real) -> Verdict {
    send(ctx, &real.dmac, &real.smac, real.ifindex)
}

/// Offset of the L4 checksum, or `None` for UDP over IPv4 without a checksum.
#[inline(always)]
fn l4_checksum_offset(ctx: &XdpContext, p: &Parsed) -> Option<usize> {
    match p.protocol {
        IPPROTO_TCP => Some(p.l4_offset + 16),
        IPPROTO_UDP => {
            let offset = p.l4_offset + 6;
            let check = ptr_at_mut::<[u8; 2]>(ctx, offset)?;
            // SAFETY: bounds checked by `ptr_at_mut`.
            if !p.ipv6 && unsafe { *check } == [0, 0] {
                None
            } else {
                Some(offset)
            }
        }
        _ => None,
    }
}

/// Rewrites one address (destination if `dst`, else source) and one port of the packet,
/// updating the IPv4 header checksum and the TCP/UDP checksum. False if the frame is too short.
#[inline(always)]
fn rewrite(ctx: &XdpContext, p: &Parsed, dst: bool, new_addr: &[u32; 4], new_port: u16) -> bool {
    let old_addr = if dst { p.dst } else { p.src };
    let old_port = if dst { p.dst_port } else { p.src_port };
    let l4_check = l4_checksum_offset(ctx, p);
    if p.ipv6 {
        let Some(ip) = ptr_at_mut::<Ipv6Hdr>(ctx, p.l3_offset) else {
            return false;
        };
        let mut bytes = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            bytes[4 * i..4 * i + 4].copy_from_slice(&new_addr[i].to_ne_bytes());
            i += 1;
        }
        // SAFETY: bounds checked by `ptr_at_mut`.
        unsafe {
            if dst {
                (*ip).dst_addr = bytes;
            } else {
                (*ip).src_addr = bytes;
            }
        }
    } else {
        let Some(ip) = ptr_at_mut::<Ipv4Hdr>(ctx, p.l3_offset) else {
            return false;
        };
        // SAFETY: bounds checked by `ptr_at_mut`.
        unsafe {
            if dst {
                (*ip).dst_addr = new_addr[0].to_ne_bytes();
            } else {
                (*ip).src_addr = new_addr[0].to_ne_bytes();
            }
            let check = u16::from_be_bytes((*ip).check);
            (*ip).check = csum::replace_word(check, old_addr[0], new_addr[0]).to_be_bytes();
        }
    }
    let port_offset = p.l4_offset + if dst { 2 } else { 0 };
    let Some(port) = ptr_at_mut::<[u8; 2]>(ctx, port_offset) else {
        return false;
    };
    // SAFETY: bounds checked by `ptr_at_mut`.
    unsafe { *port = new_port.to_be_bytes() };
    if let Some(offset) = l4_check {
        let Some(check) = ptr_at_mut::<[u8; 2]>(ctx, offset) else {
            return false;
        };
        // SAFETY: bounds checked by `ptr_at_mut`.
        let mut sum = u16::from_be_bytes(unsafe { *check });
        // The pseudo-header covers the addresses, so the L4 checksum changes with them.
        sum = if p.ipv6 {
            csum::replace_addr6(sum, &old_addr, new_addr)
        } else {
            csum::replace_word(sum, old_addr[0], new_addr[0])
        };
        sum = csum::replace_u16(sum, old_port, new_port);
        if p.protocol == IPPROTO_UDP && sum == 0 {
            // A computed UDP checksum of zero is sent as all ones (RFC 768).
            sum = 0xffff;
        }
        // SAFETY: bounds checked by `ptr_at_mut`.
        unsafe { *check = sum.to_be_bytes() };
    }
    true
}

/// NAT: the destination becomes the real's address and port; the way back is remembered.
#[inline(always)]
/// A flow seen for the first time (`new_flow`) is published for the peers with its reverse
/// entry.
pub fn nat(
    ctx: &XdpContext,
    p: &Parsed,
    family: u8,
    real: &Real,
    settings: &Settings,
    new_flow: bool,
) -> Verdict {
    let Some(eth) = ptr_at_mut::<[u8; 12]>(ctx, 0) else {
        return Verdict::Drop;
    };
    // SAFETY: bounds checked by `ptr_at_mut`.
    let eth = unsafe { *eth };
    let mut client_mac = [0u8; 6];
    let mut lb_mac = [0u8; 6];
    lb_mac.copy_from_slice(&eth[..6]);
    client_mac.copy_from_slice(&eth[6..]);
    let back = FlowKey {
        src: real.addr,
        dst: p.src,
        src_port: real.port,
        dst_port: p.src_port,
        protocol: p.protocol,
        family,
        _pad: [0; 2],
    };
    let entry = NatEntry {
        vip: p.dst,
        vip_port: p.dst_port,
        _pad: 0,
        // SAFETY: reading the context's ingress_ifindex field.
        ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
        client_mac,
        lb_mac,
    };
    // Without the entry the reply could not be turned back: do not forward.
    if LB_NAT.insert(back, entry, 0).is_err() {
        return Verdict::Drop;
    }
    if new_flow {
        publish_nat(settings, &back, &entry);
    }
    if !rewrite(ctx, p, true, &real.addr, real.port) {
        return Verdict::Drop;
    }
    send(ctx, &real.dmac, &real.smac, real.ifindex)
}

/// NAT replies: a packet from a real to a client whose flow went through NAT gets the VIP
/// back as its source. `None` if the packet is not such a reply.
#[inline(always)]
pub fn nat_reply(ctx: &XdpContext, p: &Parsed, family: u8, t: &mut Tally) -> Option<Verdict> {
    let key = p.flow_key(family);
    // SAFETY: the value is copied out at once.
    let entry = unsafe { *LB_NAT.get(key)? };
    t.add(Counter::NatReply);
    if !rewrite(ctx, p, false, &entry.vip, entry.vip_port) {
        return Some(Verdict::Drop);
    }
    Some(send(ctx, &entry.client_mac, &entry.lb_mac, entry.ifindex))
}

/// TUN: puts an outer IPv4 (IPIP) or IPv6 (IP6IP6) header in front of the packet, from a
/// source address that varies with `hash` (so the real's RSS spreads flows) to the real.
#[inline(always)]
pub fn tunnel(
    ctx: &XdpContext,
    p: &Parsed,
    family: u8,
    real: &Real,
    settings: &Settings,
    hash: u32,
    t: &mut Tally,
) -> Verdict {
    // The inner packet's length and first bytes, read before the frame moves.
    let l3 = p.l3_offset;
    let (inner_len, outer_len) = if family == FAMILY_V4 {
        let Some(ip) = ptr_at_mut::<Ipv4Hdr>(ctx, l3) else {
            return Verdict::Drop;
        };
        // SAFETY: bounds checked by `ptr_at_mut`.
        (
            usize::from(u16::from_be_bytes(unsafe { (*ip).tot_len })),
            IPV4_HEADER_LEN,
        )
    } else {
        let Some(ip) = ptr_at_mut::<Ipv6Hdr>(ctx, l3) else {
            return Verdict::Drop;
        };
        // SAFETY: bounds checked by `ptr_at_mut`.
        (
            usize::from(u16::from_be_bytes(unsafe { (*ip).payload_len })) + IPV6_HEADER_LEN,
            IPV6_HEADER_LEN,
        )
    };
    if inner_len + outer_len > settings.tunnel_mtu as usize {
        t.add(Counter::EncapTooBig);
        return Verdict::Drop;
    }
    let Some(tag) = ptr_at_mut::<[u8; 4]>(ctx, 12) else {
        return Verdict::Drop;
    };
    // SAFETY: bounds checked by `ptr_at_mut`.
    let tag = unsafe { *tag };
    let tagged = l3 == 18;
    // SAFETY: growing the head by a constant; every pointer is derived again afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(outer_len as i32)) } != 0 {
        t.add(Counter::AdjustFailed);
        return Verdict::Drop;
    }
    let ether_type = if family == FAMILY_V4 {
        ETH_P_IPV4
    } else {
        ETH_P_IPV6
    };
    let l3 = if tagged {
        let Some(vlan) = ptr_at_mut::<[u8; 6]>(ctx, 12) else {
            return Verdict::Drop;
        };
        let [t0, t1] = ether_type.to_be_bytes();
        // SAFETY: bounds checked by `ptr_at_mut`.
        unsafe { *vlan = [tag[0], tag[1], tag[2], tag[3], t0, t1] };
        18
    } else {
        let Some(proto) = ptr_at_mut::<[u8; 2]>(ctx, 12) else {
            return Verdict::Drop;
        };
        // SAFETY: bounds checked by `ptr_at_mut`.
        unsafe { *proto = ether_type.to_be_bytes() };
        14
    };
    if family == FAMILY_V4 {
        let Some(outer) = ptr_at_mut::<Ipv4Hdr>(ctx, l3) else {
            return Verdict::Drop;
        };
        let Some(inner) = ptr_at_mut::<Ipv4Hdr>(ctx, l3 + IPV4_HEADER_LEN) else {
            return Verdict::Drop;
        };
        let mask = settings.tunnel_src_v4_hash_mask;
        let src = (settings.tunnel_src_v4 & !mask) | (hash & mask);
        let total = (inner_len + IPV4_HEADER_LEN) as u16;
        // SAFETY: bounds checked by `ptr_at_mut`; the inner header was not touched.
        let tos = unsafe { (*inner).tos };
        let src_bytes = src.to_ne_bytes();
        let dst_bytes = real.addr[0].to_ne_bytes();
        let total_bytes = total.to_be_bytes();
        // Don't fragment, as the inner packet's sender did its own path MTU discovery.
        let words: [u16; 10] = [
            0x4500 | u16::from(tos),
            total,
            0,
            0x4000,
            (64 << 8) | u16::from(IPPROTO_IPIP),
            0,
            u16::from_be_bytes([src_bytes[0], src_bytes[1]]),
            u16::from_be_bytes([src_bytes[2], src_bytes[3]]),
            u16::from_be_bytes([dst_bytes[0], dst_bytes[1]]),
            u16::from_be_bytes([dst_bytes[2], dst_bytes[3]]),
        ];
        let check = csum::ipv4_header(&words);
        // SAFETY: bounds checked by `ptr_at_mut`.
        unsafe {
            (*outer).vihl = 0x45;
            (*outer).tos = tos;
            (*outer).tot_len = total_bytes;
            (*outer).id = [0, 0];
            (*outer).frags = [0x40, 0];
            (*outer).ttl = 64;
            (*outer).proto = IPPROTO_IPIP;
            (*outer).check = check.to_be_bytes();
            (*outer).src_addr = src_bytes;
            (*outer).dst_addr = dst_bytes;
        }
    } else {
        let Some(outer) = ptr_at_mut::<Ipv6Hdr>(ctx, l3) else {
            return Verdict::Drop;
        };
        let mask = settings.tunnel_src_v6_hash_mask;
        let mut src = settings.tunnel_src_v6;
        src[3] = (src[3] & !mask) | (hash & mask);
        let mut src_bytes = [0u8; 16];
        let mut dst_bytes = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            src_bytes[4 * i..4 * i + 4].copy_from_slice(&src[i].to_ne_bytes());
            dst_bytes[4 * i..4 * i + 4].copy_from_slice(&real.addr[i].to_ne_bytes());
            i += 1;
        }
        // The flow label carries the flow hash, so routers and the real can spread by it.
        let flow_label = hash & 0x000f_ffff;
        // SAFETY: bounds checked by `ptr_at_mut`.
        unsafe {
            (*outer).vcf = (0x6000_0000u32 | flow_label).to_be_bytes();
            (*outer).payload_len = (inner_len as u16).to_be_bytes();
            (*outer).next_hdr = IPPROTO_IPV6;
            (*outer).hop_limit = 64;
            (*outer).src_addr = src_bytes;
            (*outer).dst_addr = dst_bytes;
        }
    }
    send(ctx, &real.dmac, &real.smac, real.ifindex)
}
