//! `cargo xtask setup`: make a fresh Debian 12 machine of this kind ready to build and test lb.
//!
//! Each step checks first and skips what is already done, so running it again is cheap. A step
//! that cannot be done says what is missing and how to fix it by hand.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::tasks::{cargo, run};

/// bpf-linker release that works with aya 0.14 and the toolchain's LLVM 22.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the tests, the demo and later lab tests use.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip: inspecting labs by hand, ip netns exec"),
    ("ethtool", "NIC offload settings on lab hosts"),
    ("bpftool", "inspecting loaded programs and maps"),
    ("keepalived", "VRRP peer for interop tests"),
    ("haproxy", "L4/L7 yardstick and peer"),
    ("nginx", "real backends in lab tests"),
    ("wrk", "HTTP load for tests and benchmarks"),
    (
        "nghttp2-client",
        "h2load: HTTP/2 load in tests and the l7 benchmark",
    ),
    (
        "libnginx-mod-stream",
        "nginx's TCP proxy: the yardstick of the TCP-mode benchmark row",
    ),
    ("curl", "HTTP client in lab tests"),
    ("tcpdump", "capturing lab traffic while debugging"),
    ("nftables", "nftables DNAT yardstick in benchmarks"),
];

/// `cargo xtask setup`: runs every step.
pub fn setup() -> anyhow::Result<()> {
    step(
        "rust-src for the toolchain (core is rebuilt for the BPF target)",
        rust_src,
    )?;
    step(
        "bpf-linker 0.13 built against the toolchain's libLLVM",
        bpf_linker,
    )?;
    step(
        "cargo-nextest (the test runner of `cargo xtask test`)",
        nextest,
    )?;
    step("Debian packages", debian_packages)?;
    step(
        "the VM lab's packages (vagrant, vagrant-libvirt, libvirt, QEMU, debootstrap)",
        vm_packages,
    )?;
    step("bpffs mounted on /sys/fs/bpf", bpffs)?;
    println!("setup: done");
    Ok(())
}

/// What a step did.
enum Outcome {
    AlreadyDone(String),
    Done(String),
}

fn step(what: &str, f: impl FnOnce() -> anyhow::Result<Outcome>) -> anyhow::Result<()> {
    println!("setup: {what}");
    match f().with_context(|| format!("setup step failed: {what}"))? {
        Outcome::AlreadyDone(detail) => println!("setup:   already done ({detail})"),
        Outcome::Done(detail) => println!("setup:   done ({detail})"),
    }
    Ok(())
}

fn output(command: &mut Command) -> Option<String> {
    let out = command.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn sysroot() -> anyhow::Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = output(Command::new(rustc).args(["--print", "sysroot"]))
        .context("`rustc --print sysroot` failed: is a Rust toolchain installed with rustup?")?;
    Ok(PathBuf::from(sysroot))
}

fn rust_src() -> anyhow::Result<Outcome> {
    let library = sysroot()?.join("lib/rustlib/src/rust/library/core");
    if library.exists() {
        return Ok(Outcome::AlreadyDone(library.display().to_string()));
    }
    run(Command::new("rustup").args(["component", "add", "rust-src"]))
        .context("install it by hand with `rustup component add rust-src`")?;
    Ok(Outcome::Done("rustup component add rust-src".into()))
}

fn bpf_linker_version() -> Option<String> {
    output(Command::new("bpf-linker").arg("--version"))
}

fn bpf_linker() -> anyhow::Result<Outcome> {
    if let Some(version) = bpf_linker_version()
        && version.contains(BPF_LINKER_VERSION)
    {
        return Ok(Outcome::AlreadyDone(version));
    }
    // bpf-linker links against LLVM. Rather than a system LLVM, point it at the libLLVM the
    // Rust toolchain ships: a prefix whose lib/libLLVM.so links to it is all its build needs.
    let sysroot = sysroot()?;
    let lib_dir = sysroot.join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so"))
            })
        })
        .with_context(|| {
            format!(
                "no libLLVM in {}: this toolchain ships none",
                lib_dir.display()
            )
        })?;
    let prefix = crate::tasks::workspace_root().join("target/llvm-prefix");
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)?;
    let link = prefix_lib.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("linking {} to {}", link.display(), libllvm.display()))?;
    run(Command::new(cargo())
        .env("LLVM_PREFIX", &prefix)
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
        ])
        .args(["--no-default-features", "--features", "llvm-22", "--force"]))
    .context("building bpf-linker failed; it needs crates.io and gcc")?;
    let version = bpf_linker_version().context(
        "bpf-linker was installed but does not run: is ~/.cargo/bin on PATH, and does LD_LIBRARY_PATH \
         include the toolchain's lib directory (rustup sets it under cargo)?",
    )?;
    Ok(Outcome::Done(format!(
        "{version}, against {}",
        libllvm.display()
    )))
}

fn nextest() -> anyhow::Result<Outcome> {
    if let Some(version) = output(Command::new(cargo()).args(["nextest", "--version"])) {
        return Ok(Outcome::AlreadyDone(
            version.lines().next().unwrap_or_default().to_string(),
        ));
    }
    run(Command::new(cargo()).args(["install", "cargo-nextest", "--locked"]))
        .context("install it by hand with `cargo install cargo-nextest --locked`")?;
    Ok(Outcome::Done("cargo install cargo-nextest".into()))
}

fn is_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status == "install ok installed")
}

fn debian_packages() -> anyhow::Result<Outcome> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| !is_installed(name))
        .collect();
    if missing.is_empty() {
        let names: Vec<&str> = DEBIAN_PACKAGES.iter().map(|(n, _)| *n).collect();
        return Ok(Outcome::AlreadyDone(names.join(", ")));
    }
    for (name, why) in DEBIAN_PACKAGES.iter().filter(|(n, _)| missing.contains(n)) {
        println!("setup:   will install {name}: {why}");
    }
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("apt-get not found: install {} by hand", missing.join(" "));
    }
    run(Command::new("apt-get").args(["update", "-qq"])).context("apt-get update (needs root)")?;
    // The packages' services (nginx, haproxy, keepalived) must not start on the host: tests
    // run their own instances inside lab namespaces.
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("RUNLEVEL", "1")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
    .with_context(|| format!("apt-get install {} (needs root)", missing.join(" ")))?;
    for service in ["nginx", "haproxy", "keepalived"] {
        // A distribution whose postinst started a service anyway: stop it, ignoring "not running".
        let _ = Command::new("service").args([service, "stop"]).output();
    }
    Ok(Outcome::Done(format!("installed {}", missing.join(", "))))
}

/// Packages of the lab on VMs (`cargo xtask lab --vagrant`; `vagrant validate` in the tests).
const VM_PACKAGES: &[&str] = &[
    "vagrant",
    "vagrant-libvirt",
    "libvirt-daemon-system",
    "qemu-system-x86",
    // libvirt's networks need its DHCP server even when the lab's own networks have none.
    "dnsmasq-base",
    "debootstrap",
];

/// The VM lab's packages. qemu-utils must be the version of qemu-system-x86 (the image may
/// carry a newer one from backports, which conflicts): it is installed at that version.
fn vm_packages() -> anyhow::Result<Outcome> {
    let mut missing: Vec<String> = VM_PACKAGES
        .iter()
        .filter(|name| !is_installed(name))
        .map(|name| name.to_string())
        .collect();
    if missing.is_empty() {
        return Ok(Outcome::AlreadyDone(VM_PACKAGES.join(", ")));
    }
    run(Command::new("apt-get").args(["update", "-qq"])).context("apt-get update (needs root)")?;
    let policy = output(Command::new("apt-cache").args(["policy", "qemu-system-x86"]))
        .context("apt-cache policy qemu-system-x86")?;
    let version = policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .filter(|v| *v != "(none)")
        .context("no qemu-system-x86 in the package lists")?
        .to_string();
    missing.push(format!("qemu-utils={version}"));
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("RUNLEVEL", "1")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "--allow-downgrades",
        ])
        .args(&missing))
    .with_context(|| format!("apt-get install {} (needs root)", missing.join(" ")))?;
    Ok(Outcome::Done(format!("installed {}", missing.join(", "))))
}

fn bpffs() -> anyhow::Result<Outcome> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    if mounts.lines().any(|l| {
        l.split_whitespace().nth(1) == Some("/sys/fs/bpf")
            && l.split_whitespace().nth(2) == Some("bpf")
    }) {
        return Ok(Outcome::AlreadyDone("mounted".into()));
    }
    run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))
        .context("mount bpffs by hand with `mount -t bpf bpf /sys/fs/bpf` (needs root)")?;
    Ok(Outcome::Done("mount -t bpf bpf /sys/fs/bpf".into()))
}
