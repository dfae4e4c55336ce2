//! Maps of the XDP programs, one per concern (names and types in `lb_common::maps`), and the
//! counter helper. Sizes here are defaults: the agent sets the rings and connection table
//! sizes from its configuration at load time.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use lb_common::{
    counters::{Counter, CounterBlock},
    maps::{
        DEFAULT_RING_SIZE, DecapKey, FloodState, Flow, FlowKey, MAX_REALS, MAX_SERVICES, NatEntry,
        Real, Service, ServiceKey, Settings, TrafficStats,
    },
};

/// Per-CPU packet counters: one entry holding a `u64` per [`Counter`], so a packet costs a
/// single lookup however many counters it moves.
#[map(name = "LB_COUNTERS")]
pub static LB_COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::pinned(1, 0);

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

/// The counters one packet moves, gathered as bits and added to the per-CPU block once at
/// the end (each counter moves at most once per packet).
#[derive(Default)]
pub struct Tally(u32);

impl Tally {
    /// Marks `counter` for this packet.
    #[inline(always)]
    pub fn add(&mut self, counter: Counter) {
        self.0 |= 1 << (counter as u32);
    }

    /// Adds the marked counters to this CPU's block.
    #[inline(always)]
    pub fn flush(self) {
        let Some(block) = LB_COUNTERS.get_ptr_mut(0) else {
            return;
        };
        let mut bits = self.0;
        let mut guard = 0;
        while bits != 0 && guard < Counter::COUNT {
            let index = bits.trailing_zeros() as usize;
            if index < Counter::COUNT as usize {
                // SAFETY: per-CPU block from a successful lookup, written by this CPU only (no
                // preemption inside XDP); the index is checked against the array length.
                unsafe { (*block).values[index] += 1 };
            }
            bits &= bits - 1;
            guard += 1;
        }
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
