//! The one recipe for building `lb-ebpf`, shared by `cargo xtask build-ebpf` and `lb-user`'s
//! build script (which includes this file with `#[path]`), so both produce the same object.
//! Only `std` is used here because a build script cannot depend on xtask.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Target triple of the XDP programs.
pub const BPF_TARGET: &str = "bpfel-unknown-none";

/// Where the eBPF build keeps its own target directory, apart from the host build's lock.
pub fn ebpf_target_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("ebpf")
}

/// Path of the built object inside `target_dir`.
pub fn ebpf_object_path(target_dir: &Path) -> PathBuf {
    target_dir.join(BPF_TARGET).join("release").join("lb-ebpf")
}

/// The cargo command that builds `lb-ebpf` for BPF with the stable toolchain: `core` is built
/// from rust-src (`-Z build-std`, allowed on stable by `RUSTC_BOOTSTRAP=1`) and linked by
/// bpf-linker with BTF.
pub fn ebpf_build_command(cargo: &Path, workspace_root: &Path, target_dir: &Path) -> Command {
    ebpf_cargo_command("build", cargo, workspace_root, target_dir)
}

/// `cargo <subcommand>` (`build`, `clippy`) on `lb-ebpf` for the BPF target.
pub fn ebpf_cargo_command(
    subcommand: &str,
    cargo: &Path,
    workspace_root: &Path,
    target_dir: &Path,
) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root)
        .args([subcommand, "--package", "lb-ebpf", "--bins", "--release"])
        .args(["--target", BPF_TARGET, "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir)
        .env("RUSTC_BOOTSTRAP", "1")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "--cfg=bpf_target_arch=\"x86_64\"",
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
            ]
            .join("\x1f"),
        );
    // Variables cargo sets for a build script would point the nested build at the host
    // compiler configuration; drop them so the nested cargo starts clean.
    for key in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(key);
    }
    cmd
}
