//! Types shared by the XDP programs (`lb-ebpf`) and the agent (`lb-user`).
//!
//! Layout: [`counters`] (named per-CPU outcome counters), [`maps`] (map names, keys and
//! values) and [`hash`] (the flow hash both sides compute).
//! Every map key and value is `#[repr(C)]` with explicit padding and a compile-time size check,
//! because the kernel and userspace must agree on it byte for byte.
#![cfg_attr(not(test), no_std)]

pub mod counters;
pub mod hash;
pub mod maps;
