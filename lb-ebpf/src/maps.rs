//! Maps of the XDP programs, one per concern, and the counter helper.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use lb_common::counters::Counter;

/// Per-CPU packet counters, one `u64` per [`Counter`]; pinned by name so `lb stats` reads them.
#[map(name = "LB_COUNTERS")]
static LB_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(Counter::COUNT, 0);

/// Adds one to `counter` on this CPU.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = LB_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer comes from a successful per-CPU lookup, so it is valid and only
        // this CPU writes it while the program runs (no preemption inside XDP).
        unsafe { *slot += 1 };
    }
}
