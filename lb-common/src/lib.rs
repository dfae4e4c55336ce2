//! Types shared by the XDP programs (`lb-ebpf`) and the agent (`lb-user`).
//!
//! Layout: [`counters`] (named per-CPU outcome counters) and [`maps`] (map names and pin paths).
//! Every map key and value is `#[repr(C)]` with explicit padding and a compile-time size check,
//! because the kernel and userspace must agree on it byte for byte.
#![no_std]

pub mod counters;
pub mod maps;
