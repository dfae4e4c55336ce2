//! The L4 balancer's decision for one parsed packet: which service, which real, which mode.

use aya_ebpf::programs::XdpContext;
use lb_common::{
    counters::Counter,
    hash::flow_hash,
    maps::{
        FAMILY_V4, FAMILY_V6, MODE_DR, MODE_NAT, MODE_TUN, SERVICE_ACTIVE, SETTINGS_NAT,
        SETTINGS_SYNC, ServiceKey, Settings,
    },
};

use crate::{
    forward::{self, Verdict},
    icmp,
    maps::{
        LB_REAL_STATS, LB_SERVICE_STATS, LB_SETTINGS, Tally, add_traffic, find_service,
        may_be_service, service_at,
    },
    parse::{IPPROTO_ICMP, IPPROTO_ICMPV6, Parsed, TCP_RST},
    select,
};

/// Balances a TCP/UDP packet for a VIP, turns a NAT reply back, forwards an ICMP error to its
/// flow's real, or passes anything else.
#[inline(always)]
pub fn handle(ctx: &XdpContext, p: &Parsed, t: &mut Tally) -> Verdict {
    let Some(settings) = LB_SETTINGS.get(0) else {
        return Verdict::Pass;
    };
    let family = if p.ipv6 { FAMILY_V6 } else { FAMILY_V4 };
    if p.protocol == IPPROTO_ICMP || p.protocol == IPPROTO_ICMPV6 {
        return icmp::handle(ctx, p, family, settings, t);
    }
    let key = ServiceKey {
        addr: p.dst,
        port: p.dst_port,
        protocol: p.protocol,
        family,
    };
    if !may_be_service(&key) {
        return not_a_service(ctx, p, family, settings, t);
    }
    // An established flow names its service: one connection-table lookup finds both, and
    // the service lookup by key is left to new flows.
    let flow = p.flow_key(family);
    let remembered = select::remembered(&flow);
    let known = remembered
        .and_then(|entry| service_at(entry.service_id))
        .filter(|service| service.key == key);
    let Some(service) = known.or_else(|| find_service(&key)) else {
        return not_a_service(ctx, p, family, settings, t);
    };
    if service.flags & SERVICE_ACTIVE == 0 {
        // A VRRP backup (or a master in transition) is sent a service's packets by stale
        // neighbour caches: its own stack would answer them with resets (it may still hold
        // the VIP, or hold it already), so they are dropped and the client retransmits to
        // whichever node owns the VIP by then.
        t.add(Counter::VipInactive);
        return Verdict::Drop;
    }
    let Some(choice) = select::choose(&service, &flow, remembered, settings, t) else {
        t.add(Counter::NoReal);
        return Verdict::Drop;
    };
    if p.tcp_close != 0 && !choice.new_flow && settings.flags & SETTINGS_SYNC != 0 {
        let reset = p.tcp_close & TCP_RST != 0;
        select::note_close(&flow, reset, &service.key, choice.real.key, settings);
    }
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    add_traffic(&LB_SERVICE_STATS, service.id, bytes, choice.new_flow);
    add_traffic(&LB_REAL_STATS, choice.real_id, bytes, choice.new_flow);
    match service.mode {
        MODE_DR => forward::direct(ctx, &choice.real),
        MODE_TUN => {
            let hash = flow_hash(&flow, settings.hash_seed, false);
            forward::tunnel(ctx, p, family, &choice.real, settings, hash, t)
        }
        MODE_NAT => forward::nat(ctx, p, family, &choice.real, settings, choice.new_flow),
        _ => Verdict::Drop,
    }
}

/// A packet for no service: a NAT reply to turn back (when some service uses NAT), or
/// anything else, passed to the stack.
#[inline(always)]
fn not_a_service(
    ctx: &XdpContext,
    p: &Parsed,
    family: u8,
    settings: &Settings,
    t: &mut Tally,
) -> Verdict {
    // NAT replies come from a real's address and port, which the agent adds to the filter.
    let reply_from = ServiceKey {
        addr: p.src,
        port: p.src_port,
        protocol: p.protocol,
        family,
    };
    if settings.flags & SETTINGS_NAT != 0
        && may_be_service(&reply_from)
        && let Some(verdict) = forward::nat_reply(ctx, p, family, t)
    {
        return verdict;
    }
    Verdict::Pass
}
