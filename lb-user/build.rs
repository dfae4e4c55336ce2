//! Builds the XDP object (`lb-ebpf`) and puts it in `OUT_DIR` for `include_bytes!`.

#[path = "../xtask/src/ebpf_build.rs"]
mod ebpf_build;

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace_root = manifest_dir
        .parent()
        .expect("lb-user sits inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for dir in [
        "lb-ebpf/src",
        "lb-ebpf/Cargo.toml",
        "lb-common/src",
        "xtask/src/ebpf_build.rs",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace_root.join(dir).display()
        );
    }
    let cargo = PathBuf::from(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let target_dir = ebpf_build::ebpf_target_dir(&workspace_root);
    let output = ebpf_build::ebpf_build_command(&cargo, &workspace_root, &target_dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.display()));
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        panic!(
            "building lb-ebpf failed (run `cargo xtask setup` first: it installs rust-src and bpf-linker);\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let object = ebpf_build::ebpf_object_path(&target_dir);
    fs::copy(&object, out_dir.join("lb-ebpf"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", object.display()));
}
