//! build-ebpf, test and demo.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::ebpf_build;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// The cargo that runs us (so rustup's toolchain choice carries over).
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Runs `command`, failing with its description if it does not succeed.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

fn require_root(task: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`cargo xtask {task}` needs root (XDP, BPF and network namespaces): run it with sudo"
        );
    }
    Ok(())
}

/// `cargo xtask build-ebpf`.
pub fn build_ebpf() -> anyhow::Result<()> {
    let root = workspace_root();
    let target_dir = ebpf_build::ebpf_target_dir(&root);
    run(&mut ebpf_build::ebpf_build_command(
        &cargo(),
        &root,
        &target_dir,
    ))
    .context("building lb-ebpf (did `cargo xtask setup` run?)")?;
    let object = ebpf_build::ebpf_object_path(&target_dir);
    let size = std::fs::metadata(&object)
        .with_context(|| format!("{} was not produced", object.display()))?
        .len();
    println!("built {} ({size} bytes)", object.display());
    Ok(())
}

/// `cargo xtask test`: lints, then every test of the workspace through cargo-nextest, which
/// ends with one summary line.
pub fn test(lint: bool, nextest_args: &[String]) -> anyhow::Result<()> {
    require_root("test")?;
    let root = workspace_root();
    if lint {
        println!("xtask: cargo fmt --check");
        run(Command::new(cargo())
            .current_dir(&root)
            .args(["fmt", "--all", "--", "--check"]))?;
        println!("xtask: cargo clippy --all-targets -- -D warnings");
        run(Command::new(cargo()).current_dir(&root).args([
            "clippy",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        println!("xtask: cargo clippy on lb-ebpf for the BPF target");
        let target_dir = ebpf_build::ebpf_target_dir(&root);
        run(
            ebpf_build::ebpf_cargo_command("clippy", &cargo(), &root, &target_dir)
                .args(["--", "-D", "warnings"]),
        )?;
    }
    // The lab tests run the real `lb` binary.
    println!("xtask: building the agent");
    run(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--package",
        "lb-user",
        "--bins",
    ]))?;
    // The default members: lb-ebpf only builds for the BPF target (its checks are above).
    println!("xtask: cargo nextest run");
    run(Command::new(cargo())
        .current_dir(&root)
        .args(["nextest", "run", "--no-fail-fast"])
        .args(nextest_args))
}

/// `cargo xtask demo`.
pub fn demo() -> anyhow::Result<()> {
    require_root("demo")?;
    lab(&["tour".to_string()])
}

/// `cargo xtask lab ARGS`: the agent built, then the lab tool run with `ARGS`.
pub fn lab(args: &[String]) -> anyhow::Result<()> {
    require_root("lab")?;
    let root = workspace_root();
    println!("xtask: building the agent and the lab tool");
    run(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--package",
        "lb-user",
        "--bins",
    ]))?;
    run(Command::new(cargo())
        .current_dir(&root)
        .args([
            "run",
            "--quiet",
            "--package",
            "lb-tests",
            "--bin",
            "lb-lab",
            "--",
        ])
        .args(args))
}

/// `cargo xtask bench WHICH`: built in release mode, since that is what runs in production.
pub fn bench(which: &str) -> anyhow::Result<()> {
    require_root("bench")?;
    let root = workspace_root();
    run(Command::new(cargo()).current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "lb-user",
        "--bins",
    ]))?;
    run(Command::new(cargo()).current_dir(&root).args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "lb-tests",
        "--bin",
        "lb-bench",
        "--",
        which,
    ]))
}
