//! Maps of the XDP programs, one per concern (names and types in `lb_common::maps`), and the
//! counter helper. Sizes here are defaults: the agent sets the rings and connection table
//! sizes from its configuration at load time.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_COMMON_LRU},
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use lb_common::{
    counters::{Counter, CounterBlock},
    maps::{
        DEFAULT_RING_SIZE, DecapKey, EVENT_NAT, FloodState, Flow, FlowEvent, FlowKey, MAX_REALS,
        MAX_SERVICES, NatEntry, Real, SERVICE_FILTER_WORDS, SETTINGS_SYNC, Service, ServiceKey,
        Settings, TrafficStats,
    },
};

/// Per-CPU packet counters: one entry holding a `u64` per [`Counter`], so a packet costs a
/// single lookup however many counters it moves.
#[map(name = "LB_COUNTERS")]
pub static LB_COUNTERS: PerCpuArray<CounterBlock> = PerCpuArray::pinned(1, 0);

/// Virtual services by (VIP, port, protocol): the service id.
#[map(name = "LB_SERVICES")]
pub static LB_SERVICES: HashMap<ServiceKey, u32> = HashMap::pinned(MAX_SERVICES, 0);

/// Services by id.
#[map(name = "LB_SERVICE_TABLE")]
pub static LB_SERVICE_TABLE: Array<Service> = Array::pinned(MAX_SERVICES, 0);

/// Bit filter over service keys and NAT reals' reply sources
/// (`lb_common::hash::service_filter_bit`): a clear bit means neither, decided with one array
/// read.
#[map(name = "LB_SERVICE_FILTER")]
pub static LB_SERVICE_FILTER: Array<u64> = Array::pinned(SERVICE_FILTER_WORDS, 0);

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

/// New and closed flows for the agent to send to its peers (connection-table sync), 1 MiB.
#[map(name = "LB_FLOW_EVENTS")]
pub static LB_FLOW_EVENTS: RingBuf = RingBuf::pinned(1 << 20, 0);

/// A zeroed event slot in the ring, when sync is on and the ring has room. Events are written
/// in place: one on the stack would not fit beside the rest of the program's.
#[inline(always)]
fn event_slot(settings: &Settings) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<FlowEvent>> {
    if settings.flags & SETTINGS_SYNC == 0 {
        return None;
    }
    let mut slot = LB_FLOW_EVENTS.reserve::<FlowEvent>(0)?;
    // SAFETY: the slot is reserved, exclusively ours and sized for one event.
    unsafe { core::ptr::write_bytes(slot.as_mut_ptr(), 0, 1) };
    Some(slot)
}

/// Publishes a connection-table entry for the peers (when sync is on): a new one
/// (`EVENT_CONN`) or one the client closed (`EVENT_FIN`, `EVENT_RST`). A full ring only costs
/// the peers this flow; it still forwards here.
#[inline(always)]
pub fn publish_conn(
    settings: &Settings,
    kind: u32,
    flow: &FlowKey,
    service: &ServiceKey,
    real_key: u32,
) {
    let Some(mut slot) = event_slot(settings) else {
        return;
    };
    let event = slot.as_mut_ptr();
    // SAFETY: `event` points at the zeroed slot; plain field writes.
    unsafe {
        (*event).kind = kind;
        (*event).real_key = real_key;
        core::ptr::copy_nonoverlapping(flow, &raw mut (*event).flow, 1);
        core::ptr::copy_nonoverlapping(service, &raw mut (*event).service, 1);
    }
    slot.submit(0);
}

/// Publishes a new NAT reverse entry for the peers (when sync is on).
#[inline(always)]
pub fn publish_nat(settings: &Settings, back: &FlowKey, entry: &NatEntry) {
    let Some(mut slot) = event_slot(settings) else {
        return;
    };
    let event = slot.as_mut_ptr();
    // SAFETY: as in `publish_conn`.
    unsafe {
        (*event).kind = EVENT_NAT;
        core::ptr::copy_nonoverlapping(back, &raw mut (*event).flow, 1);
        core::ptr::copy_nonoverlapping(entry, &raw mut (*event).nat, 1);
    }
    slot.submit(0);
}

/// VIPs `lb_decap` strips tunnels for.
#[map(name = "LB_DECAP_VIPS")]
pub static LB_DECAP_VIPS: HashMap<DecapKey, u32> = HashMap::pinned(1024, 0);

/// False if no service (nor NAT real's reply source) has `key`; true may be a collision,
/// the caller looks it up.
#[inline(always)]
pub fn may_be_service(key: &ServiceKey) -> bool {
    let bit = lb_common::hash::service_filter_bit(key);
    LB_SERVICE_FILTER
        .get(bit / 64)
        .is_some_and(|word| word & (1 << (bit % 64)) != 0)
}

/// The service with `key`, if any.
#[inline(always)]
pub fn find_service(key: &ServiceKey) -> Option<Service> {
    // SAFETY: the id is copied out at once.
    let id = *unsafe { LB_SERVICES.get(key) }?;
    service_at(id).filter(|service| service.key == *key)
}

/// The service in slot `id`, if the slot is in use.
#[inline(always)]
pub fn service_at(id: u32) -> Option<Service> {
    LB_SERVICE_TABLE.get(id).copied()
}

/// This CPU's counter block, looked up once per packet; each counter a packet moves is then
/// one increment through the pointer.
pub struct Tally(*mut CounterBlock);

impl Tally {
    /// The block of the CPU running the program (null if the lookup failed: counting is
    /// then skipped, never the packet).
    #[inline(always)]
    pub fn new() -> Self {
        Tally(LB_COUNTERS.get_ptr_mut(0).unwrap_or(core::ptr::null_mut()))
    }

    /// Counts `counter` for this packet.
    #[inline(always)]
    pub fn add(&mut self, counter: Counter) {
        if !self.0.is_null() {
            // SAFETY: per-CPU block from a successful lookup, written by this CPU only (no
            // preemption inside XDP); every `Counter` indexes inside the block.
            unsafe { (*self.0).values[counter as usize] += 1 };
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
