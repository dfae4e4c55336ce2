//! XDP programs of lb.
//!
//! Layout: `parse` walks the headers of a frame (every access bounds-checked) into a
//! [`parse::Parsed`]; `maps` declares the maps and the counter helper. This file holds only the
//! entry points. `lb_ingress` is the L4 balancer's entry point; today it classifies and counts
//! every frame and passes it to the stack.
#![no_std]
#![no_main]

mod maps;
mod parse;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lb_common::counters::Counter;

use crate::{maps::count, parse::ParseError};

/// Classifies and counts every frame, then hands it to the kernel stack.
#[xdp]
pub fn lb_ingress(ctx: XdpContext) -> u32 {
    count(Counter::Rx);
    match parse::parse_frame(&ctx) {
        Ok(_) | Err(ParseError::NotBalanced) => {}
        Err(ParseError::Malformed) => count(Counter::Malformed),
    }
    count(Counter::Pass);
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
