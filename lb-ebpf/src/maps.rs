//! Maps of the XDP programs, one per concern (names and types in `lb_common::maps`), and the
//! counter helper. Sizes here are defaults: the agent sets the rings and connection table
//! sizes from its configuration at load time.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use lb_common::{
    counters::Counter,
    maps::{
        DEFAULT_RING_SIZE, DecapKey, FloodState, Flow, FlowKey, MAX_REALS, MAX_SERVICES, NatEntry,
        Real, Service, ServiceKey, Settings, TrafficStats,
    },
};

/// Per-CPU packet counters, one `u64` per [`Counter`].
#[map(name = "LB_COUNTERS")]
pub static LB_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);

/// Virtual services by (VIP, port, protocol).
#[map(name = "LB_SERVICES")]
pub static LB_SERVICES: HashMap<ServiceKey, Service> = HashMap::pinned(MAX_SERVICES, 0);

/// Real servers by id.
#[map(name = "LB_REALS")]
pub static LB_REALS: Array<Real> = Array::pinned(MAX_REALS, 0);

/// Maglev tables of all services, back to back (resized by the agent). Memory-mappable, so
/// the agent rewrites slots with plain stores instead of one syscall each.
#[map(name = "LB_RINGS")]
pub static LB_RINGS: Array<u32> = Array::pinned(16 * DEFAULT_RING_SIZE, BPF_F_MMAPABLE);

/// Connection table: flow -> real, with per-CPU LRU lists so eviction never contends.
#[map(name = "LB_CONNS")]
pub static LB_CONNS: LruHashMap<FlowKey, Flow> = LruHashMap::pinned(65536, BPF_F_NO_COMMON_LRU);

/// NAT mode: the real's side of a flow -> the VIP side to restore on replies.
#[map(name = "LB_NAT")]
pub static LB_NAT: LruHashMap<FlowKey, NatEntry> = LruHashMap::pinned(65536, BPF_F_NO_COMMON_LRU);

/// Per-service traffic counters.
#[map(name = "LB_SERVICE_STATS")]
pub static LB_SERVICE_STATS: PerCpuArray<TrafficStats> = PerCpuArray::pinned(MAX_SERVICES, 0);

/// Per-real traffic counters.
#[map(name = "LB_REAL_STATS")]
pub static LB_REAL_STATS: PerCpuArray<TrafficStats> = PerCpuArray::pinned(MAX_REALS, 0);

/// Run-time settings (one entry).
#[map(name = "LB_SETTINGS")]
pub static LB_SETTINGS: Array<Settings> = Array::pinned(1, 0);

/// New-flow rate window per CPU (one entry).
#[map(name = "LB_FLOOD")]
pub static LB_FLOOD: PerCpuArray<FloodState> = PerCpuArray::pinned(1, 0);

/// VIPs `lb_decap` strips tunnels for.
#[map(name = "LB_DECAP_VIPS")]
pub static LB_DECAP_VIPS: HashMap<DecapKey, u32> = HashMap::pinned(1024, 0);

/// Adds one to `counter` on this CPU.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = LB_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer comes from a successful per-CPU lookup, so it is valid and only
        // this CPU writes it while the program runs (no preemption inside XDP).
        unsafe { *slot += 1 };
    }
}

/// Adds a packet of `bytes` (and a new flow, if `new_flow`) to a traffic stats slot.
#[inline(always)]
pub fn add_traffic(map: &PerCpuArray<TrafficStats>, index: u32, bytes: u64, new_flow: bool) {
    if let Some(slot) = map.get_ptr_mut(index) {
        // SAFETY: per-CPU slot from a successful lookup, written by this CPU only.
        unsafe {
            (*slot).packets += 1;
            (*slot).bytes += bytes;
            if new_flow {
                (*slot).new_flows += 1;
            }
        }
    }
}
