//! The lb agent as a library: the `lb` binary is a thin command-line shell over it, and the
//! integration tests drive the same code.
//!
//! Layout: `config` (the TOML file), `dataplane` (the XDP object and its maps), `health`
//! (checks and the HealthBoard), `vrrp`, `proxy` (the L7 proxy), `admin` (the runtime API),
//! `runtime_thread` (threads of their own for checks and VRRP), `agent` (the `lb run`
//! lifecycle wiring them together).

pub mod admin;
pub mod agent;
pub mod config;
pub mod dataplane;
pub mod health;
pub mod proxy;
pub mod runtime_thread;
pub mod sync;
pub mod vrrp;

/// The compiled XDP object (`lb-ebpf`), built by this crate's build script.
pub static LB_EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));
