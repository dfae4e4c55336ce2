//! Choosing a real for a flow: the connection table first, Maglev on a miss, with the
//! new-flow flood guard deciding whether the choice is remembered.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use lb_common::{
    counters::Counter,
    hash::flow_hash,
    maps::{
        EVENT_CONN, EVENT_FIN, EVENT_RST, FLOW_FIN, FLOW_RST, Flow, FlowKey, NO_REAL, REAL_ACTIVE,
        Real, SERVICE_SOURCE_HASH, Service, ServiceKey, Settings,
    },
};

use crate::maps::{LB_CONNS, LB_FLOOD, LB_REALS, LB_RINGS, Tally, publish_conn};

/// A chosen real.
pub struct Choice {
    /// Its id.
    pub real_id: u32,
    /// Its slot.
    pub real: Real,
    /// True if the flow went through Maglev (a new flow, or one the table forgot).
    pub new_flow: bool,
}

/// A usable real in slot `real_id`, if any.
#[inline(always)]
fn active_real(real_id: u32) -> Option<Real> {
    let real = LB_REALS.get(real_id)?;
    if real.flags & REAL_ACTIVE == 0 {
        return None;
    }
    Some(*real)
}

/// The connection-table entry of `flow`, if it has one.
#[inline(always)]
pub fn remembered(flow: &FlowKey) -> Option<Flow> {
    // SAFETY: the LRU value is copied out at once; a concurrent update can only make us read
    // a slightly stale entry, which the identity checks of the callers catch.
    unsafe { LB_CONNS.get(flow) }.copied()
}

/// Finds the real for `flow` of `service`: the one `remembered` names if it is still there,
/// otherwise Maglev's.
#[inline(always)]
pub fn choose(
    service: &Service,
    flow: &FlowKey,
    remembered: Option<Flow>,
    settings: &Settings,
    t: &mut Tally,
) -> Option<Choice> {
    if let Some(entry) = remembered
        && entry.service_id == service.id
        && let Some(real) = active_real(entry.real_id)
        && real.key == entry.real_key
    {
        t.add(Counter::LruHit);
        return Some(Choice {
            real_id: entry.real_id,
            real,
            new_flow: false,
        });
    }
    t.add(Counter::LruMiss);
    let ring_size = settings.ring_size;
    if ring_size == 0 {
        return None;
    }
    let hash = flow_hash(
        flow,
        settings.hash_seed,
        service.flags & SERVICE_SOURCE_HASH != 0,
    );
    let slot = service
        .id
        .wrapping_mul(ring_size)
        .wrapping_add(hash % ring_size);
    let real_id = *LB_RINGS.get(slot)?;
    if real_id == NO_REAL {
        return None;
    }
    let real = active_real(real_id)?;
    if flood_allows(settings.max_new_flows_per_sec) {
        let entry = Flow {
            real_id,
            real_key: real.key,
            service_id: service.id,
            closing: 0,
        };
        // A full table evicts its least recently used entry; failure only costs a re-hash.
        if LB_CONNS.insert(flow, entry, 0).is_ok() {
            publish_conn(settings, EVENT_CONN, flow, &service.key, real.key);
        }
    } else {
        t.add(Counter::FloodSkip);
    }
    Some(Choice {
        real_id,
        real,
        new_flow: true,
    })
}

/// Tells the peers (once per kind) that the client closed a remembered flow with a FIN or a
/// RST, so they can let its entry go after the closing timeout. Only with sync on; the entry
/// stays here until the LRU evicts it, as before.
#[inline(always)]
pub fn note_close(
    flow: &FlowKey,
    reset: bool,
    service: &ServiceKey,
    real_key: u32,
    settings: &Settings,
) {
    let (seen, kind) = if reset {
        (FLOW_RST, EVENT_RST)
    } else {
        (FLOW_FIN, EVENT_FIN)
    };
    let Some(entry) = LB_CONNS.get_ptr_mut(flow) else {
        return;
    };
    // SAFETY: a pointer into the LRU value from a successful lookup; a racing CPU can at
    // worst publish the same close twice, which the peers take as one.
    unsafe {
        if (*entry).closing & seen != 0 {
            return;
        }
        (*entry).closing |= seen;
    }
    publish_conn(settings, kind, flow, service, real_key);
}

/// Counts a new flow in this CPU's one-second window; false once the window holds more than
/// `limit` (0: no limit). Past the limit flows are still forwarded, only not remembered, so a
/// SYN flood cannot evict established flows from the connection table.
#[inline(always)]
fn flood_allows(limit: u32) -> bool {
    if limit == 0 {
        return true;
    }
    let Some(state) = LB_FLOOD.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: per-CPU slot from a successful lookup, written by this CPU only.
    let now = unsafe { bpf_ktime_get_ns() };
    unsafe {
        if now.wrapping_sub((*state).window_start_ns) > 1_000_000_000 {
            (*state).window_start_ns = now;
            (*state).new_flows = 0;
        }
        (*state).new_flows += 1;
        (*state).new_flows <= u64::from(limit)
    }
}
