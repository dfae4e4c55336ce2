//! Map and program names, and where the agent pins them.

/// Name of the per-CPU counter array (`u64` per [`crate::counters::Counter`]).
pub const COUNTERS_MAP: &str = "LB_COUNTERS";

/// Name of the L4 balancer XDP program.
pub const INGRESS_PROGRAM: &str = "lb_ingress";

/// Default bpffs directory where the agent pins programs and maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";
