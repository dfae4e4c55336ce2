//! `cargo xtask`: the project's tasks.
//!
//! Layout: `setup` prepares a fresh machine (toolchain parts, bpf-linker, Debian packages,
//! bpffs); `ebpf_build` is the one recipe for building the XDP object (shared with
//! `lb-user`'s build script); `tasks` holds build-ebpf, test and demo.

mod ebpf_build;
mod setup;
mod tasks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "lb project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Make this machine ready: rust-src, bpf-linker 0.13, Debian packages, bpffs (idempotent).
    Setup,
    /// Build the XDP object (lb-ebpf) and print where it is.
    BuildEbpf,
    /// Run fmt and clippy checks, unit tests, packet fixtures and netns lab tests (needs root).
    Test {
        /// Skip `cargo fmt --check` and `cargo clippy -D warnings`.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for cargo-nextest (a test name filter, `--no-capture`, ...).
        #[arg(last = true)]
        nextest_args: Vec<String>,
    },
    /// A tour of the whole system on the lab of vagrant/lab.toml (needs root): two lb nodes
    /// electing a master, L4 in XDP and L7 on the VIP, a real failing and returning, the master
    /// killed under traffic with established connections carrying on, each node's counters.
    Demo,
    /// The multi-node lab from vagrant/lab.toml on network namespaces (needs root):
    /// `up`, `status`, `exec NODE -- CMD`, `test` (the HA scenario against the lab that is up),
    /// `down`.
    Lab {
        /// The lab command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Run a benchmark and print its table (needs root): l4 (per packet and end to end),
    /// l4-packet, l4-e2e, failover, l7 (HTTP proxy vs HAProxy and nginx), conformance (the
    /// request-path table and the HTTP/2 bomb's memory per stream, lb vs HAProxy and nginx), sync
    /// (connection-table sync lag at 1k and 10k new flows/s).
    Bench {
        /// Which benchmark.
        #[arg(default_value = "l4")]
        which: String,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Task::Setup => setup::setup(),
        Task::BuildEbpf => tasks::build_ebpf(),
        Task::Test {
            no_lint,
            nextest_args,
        } => tasks::test(!no_lint, &nextest_args),
        Task::Demo => tasks::demo(),
        Task::Lab { args } => tasks::lab(&args),
        Task::Bench { which } => tasks::bench(&which),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
