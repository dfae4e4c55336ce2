//! The L4 data plane: the XDP object, where it is attached, and what its maps hold.
//!
//! Layout: `loader` loads the embedded object, pins it under the bpffs directory and attaches
//! `lb_ingress` to interfaces; `stats` reads the per-CPU counters back from the pinned map (so
//! `lb stats` works from another process). Nothing outside this module touches BPF maps.

mod bpffs;
pub mod decap;
mod loader;
pub mod maglev;
pub mod model;
pub mod neigh;
mod rings;
mod stats;
mod sync;

pub use bpffs::ensure_bpffs;
pub use loader::{AttachedMode, Dataplane, DataplaneError, MapSizes};
pub use stats::{CounterSnapshot, read_counters, read_traffic};
pub use sync::{SyncReport, pinned_ids};
