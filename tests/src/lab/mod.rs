//! The multi-node lab as a product (`cargo xtask lab`): [`topology`] reads
//! `vagrant/lab.toml`; [`namespaces`] builds it on network namespaces and starts what each node
//! runs; [`status`] reports on it; [`probe`] is the client's HTTP; [`scenario`] is the HA run
//! that `lab test` and the demo share. On VMs: [`vagrant`] renders the topology for the
//! Vagrantfile, [`vms`] drives `vagrant` and libvirt.

pub mod namespaces;
pub mod probe;
pub mod scenario;
pub mod status;
pub mod topology;
pub mod vagrant;
pub mod vm_box;
pub mod vms;

/// The `vagrant/` folder.
pub fn vagrant_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vagrant")
}

/// The shipped topology file.
pub fn default_topology() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vagrant/lab.toml")
}

/// Polls `probe` every `poll` until it gives a value, or fails after `limit` saying `what`
/// was not seen.
pub fn wait_for<T>(
    what: &str,
    limit: std::time::Duration,
    poll: std::time::Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if started.elapsed() > limit {
            anyhow::bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(poll);
    }
}
