//! `lb_decap`: the real-server side of TUN mode. This kernel has no IPIP module, so the real
//! strips the outer IPv4 (protocol 4) or IPv6 (next header 41) header in XDP when the inner
//! destination is one of its VIPs, and the stack sees the client's packet as sent.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lb_common::{
    counters::Counter,
    maps::{DecapKey, FAMILY_V4, FAMILY_V6},
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};

use crate::{
    maps::{LB_DECAP_VIPS, Tally},
    parse::{ptr_at, ptr_at_mut},
};

const ETH_HEADER_LEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_IPV6: u8 = 41;

/// Decapsulates or passes; never drops.
#[inline(always)]
pub fn handle(ctx: &XdpContext) -> u32 {
    let mut t = Tally::new();
    t.add(Counter::Rx);
    if let Some(()) = try_decap(ctx) {
        t.add(Counter::Decap);
    }
    t.add(Counter::Pass);
    xdp_action::XDP_PASS
}

#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Option<()> {
    let ether_type = ptr_at::<[u8; 2]>(ctx, 12).ok()?;
    // SAFETY: bounds checked by `ptr_at`.
    let ether_type = u16::from_be_bytes(unsafe { *ether_type });
    let (outer_len, key) = match ether_type {
        ETH_P_IPV4 => {
            let outer = ptr_at::<Ipv4Hdr>(ctx, ETH_HEADER_LEN).ok()?;
            // SAFETY: bounds checked by `ptr_at`.
            let outer = unsafe { &*outer };
            let outer_len = usize::from(outer.vihl & 0x0f) * 4;
            if outer.proto != IPPROTO_IPIP
                || outer_len < 20
                || outer.frags[0] & 0x3f != 0
                || outer.frags[1] != 0
            {
                return None;
            }
            let inner = ptr_at::<Ipv4Hdr>(ctx, ETH_HEADER_LEN + outer_len).ok()?;
            // SAFETY: bounds checked by `ptr_at`.
            let inner = unsafe { &*inner };
            let mut key = DecapKey {
                family: u32::from(FAMILY_V4),
                ..DecapKey::default()
            };
            key.addr[0] = u32::from_ne_bytes(inner.dst_addr);
            (outer_len, key)
        }
        ETH_P_IPV6 => {
            let outer = ptr_at::<Ipv6Hdr>(ctx, ETH_HEADER_LEN).ok()?;
            // SAFETY: bounds checked by `ptr_at`.
            if unsafe { (*outer).next_hdr } != IPPROTO_IPV6 {
                return None;
            }
            let inner = ptr_at::<Ipv6Hdr>(ctx, ETH_HEADER_LEN + 40).ok()?;
            // SAFETY: bounds checked by `ptr_at`.
            let dst = unsafe { (*inner).dst_addr };
            let mut key = DecapKey {
                family: u32::from(FAMILY_V6),
                ..DecapKey::default()
            };
            let mut i = 0;
            while i < 4 {
                key.addr[i] = u32::from_ne_bytes([
                    dst[4 * i],
                    dst[4 * i + 1],
                    dst[4 * i + 2],
                    dst[4 * i + 3],
                ]);
                i += 1;
            }
            (40, key)
        }
        _ => return None,
    };
    // SAFETY: a lookup; the value is not used.
    unsafe { LB_DECAP_VIPS.get(key) }?;
    // Move the Ethernet header up against the inner packet, then drop what is in front of it.
    let eth = ptr_at::<[u8; ETH_HEADER_LEN]>(ctx, 0).ok()?;
    // SAFETY: bounds checked by `ptr_at`.
    let eth = unsafe { *eth };
    let moved = ptr_at_mut::<[u8; ETH_HEADER_LEN]>(ctx, outer_len & 0x3f)?;
    // SAFETY: bounds checked by `ptr_at_mut`.
    unsafe { *moved = eth };
    // SAFETY: shrinking the head by at most 60 bytes that we just checked are in the frame.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, (outer_len & 0x3f) as i32) } != 0 {
        return None;
    }
    Some(())
}
