//! XDP programs of lb.
//!
//! Layout: `parse` walks the headers of a frame (every access bounds-checked); `balance`
//! decides what happens to a parsed packet, using `select` (connection table, then Maglev)
//! and `forward` (DR, TUN, NAT rewrites, checksums from `csum`); `icmp` sends ICMP errors about
//! a VIP flow to its real; `decap` is the real-server side of TUN; `maps` declares the maps.
//! This file holds only the entry points.
#![no_std]
#![no_main]

mod balance;
mod csum;
mod decap;
mod forward;
mod icmp;
mod maps;
mod parse;
mod select;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::counters::Counter;

use crate::{forward::Verdict, maps::Tally, parse::ParseError};

/// The L4 balancer: forwards packets for active VIPs to their reals, passes everything else.
#[xdp]
pub fn lb_ingress(ctx: XdpContext) -> u32 {
    let mut t = Tally::new();
    t.add(Counter::Rx);
    let verdict = match parse::parse_frame(&ctx, &mut t) {
        Ok(parsed) => balance::handle(&ctx, &parsed, &mut t),
        Err(ParseError::NotBalanced) => Verdict::Pass,
        Err(ParseError::Malformed) => {
            t.add(Counter::Malformed);
            Verdict::Pass
        }
    };
    finish(verdict, t)
}

/// Real-server side of TUN mode: strips the outer header of IPIP / IP6IP6 packets for
/// configured VIPs, so the inner packet reaches the stack as if it had arrived directly.
#[xdp]
pub fn lb_decap(ctx: XdpContext) -> u32 {
    decap::handle(&ctx)
}

/// Benchmark yardstick: does nothing but pass (`cargo xtask bench l4` subtracts its cost).
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark yardstick: the least a forwarder does, swap the MAC addresses and send back.
#[xdp]
pub fn bench_floor(ctx: XdpContext) -> u32 {
    let Some(eth) = parse::ptr_at_mut::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: `ptr_at_mut` checked the 12 bytes lie inside the frame.
    let old = unsafe { *eth };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&old[6..]);
    swapped[6..].copy_from_slice(&old[..6]);
    // SAFETY: as above.
    unsafe { *eth = swapped };
    xdp_action::XDP_TX
}

/// Counts the verdict and turns it into an XDP action.
#[inline(always)]
fn finish(verdict: Verdict, mut t: Tally) -> u32 {
    match verdict {
        Verdict::Pass => {
            t.add(Counter::Pass);
            xdp_action::XDP_PASS
        }
        Verdict::Tx => {
            t.add(Counter::Tx);
            xdp_action::XDP_TX
        }
        Verdict::Redirect => {
            t.add(Counter::Redirect);
            xdp_action::XDP_REDIRECT
        }
        Verdict::Drop => {
            t.add(Counter::Drop);
            xdp_action::XDP_DROP
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
