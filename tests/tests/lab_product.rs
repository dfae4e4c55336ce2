//! The lab a user runs (`cargo xtask lab`), built here from the shipped topology file
//! (`vagrant/lab.toml`) as `up` builds it: the HA scenario of `lab test` passes on it, `status`
//! reports what a user needs, and `down` leaves nothing behind. Needs root.

use std::path::Path;

use lb_tests::{
    lab::{default_topology, namespaces::NetnsLab, topology::Topology},
    netns::namespace_exists,
    require_root,
};

#[test]
fn the_topology_file_lab_keeps_flows_through_a_failover_and_leaves_nothing_behind() {
    require_root();
    let topology = Topology::load(&default_topology()).expect("the shipped topology");
    let hosts: Vec<String> = topology.node.iter().map(|n| n.name.clone()).collect();
    let lab = NetnsLab::up(topology, false).expect("lab up");
    let namespaces: Vec<String> = hosts
        .iter()
        .map(|h| lab.lab.host(h).netns_name().to_string())
        .collect();
    let (state_dir, bpf_root) = (lab.state_dir().to_path_buf(), lab.bpf_root().to_path_buf());

    let report = lab
        .ha_scenario(&mut |line| eprintln!("scenario: {line}"))
        .expect("the scenario runs");
    let broken = report.broken();
    assert!(broken.is_empty(), "flows broke:\n{}", broken.join("\n"));
    assert_ne!(report.killed, report.took_over);
    assert_eq!(
        report.spread.keys().cloned().collect::<Vec<_>>(),
        ["real1", "real2", "real3"],
        "flows spread over every real: {:?}",
        report.spread
    );
    let status = lab.status();
    eprintln!("{status}");
    for wanted in [
        "VIP 10.0.5.100: master lb1",
        "MASTER, XDP generic on eth0",
        "backup, XDP generic on eth0",
        "(L4, XDP) -> 200 real",
        "(L7, proxy) -> 200 real",
    ] {
        assert!(
            status.contains(wanted),
            "status shows `{wanted}`:\n{status}"
        );
    }
    assert_eq!(
        status.matches(" UP ").count(),
        6,
        "three reals up for L4 and L7:\n{status}"
    );

    // The agents' logs carry no netlink noise: the next-hop look-ups read every answer
    // (an abandoned dump made a warning per neighbour, every 2 s).
    for node in ["lb1", "lb2"] {
        let log = std::fs::read_to_string(state_dir.join(node).join("lb.log")).expect("lb log");
        assert!(log.contains("lb running"), "{node}'s log:\n{log}");
        assert!(
            !log.contains("failed to forward response"),
            "{node}'s log has netlink warnings:\n{log}"
        );
    }

    lab.down();
    for ns in &namespaces {
        assert!(!namespace_exists(ns), "namespace {ns} left behind");
    }
    assert!(!state_dir.exists(), "{} left behind", state_dir.display());
    assert!(!bpf_root.exists(), "{} left behind", bpf_root.display());
    assert!(Path::new("/sys/fs/bpf").exists());
}

/// The Vagrantfile reads the topology as the lab tool renders it, and Vagrant (with the
/// vagrant-libvirt provider that `cargo xtask setup` installs) accepts it; a description it
/// cannot use is refused, not ignored.
#[test]
fn vagrant_validates_the_vagrantfile_built_from_the_topology_file() {
    let topology = Topology::load(&default_topology()).expect("the shipped topology");
    let dir = tempfile::tempdir().expect("temp dir");
    // Vagrant checks that the file the lb nodes get exists.
    let lb = dir.path().join("lb");
    std::fs::write(&lb, "").expect("write");
    let rendered =
        lb_tests::lab::vagrant::render(&topology, Path::new("/nonexistent/box"), &lb, "qemu")
            .expect("renders");
    let validate = |json: &str| {
        let file = dir.path().join("lab.json");
        std::fs::write(&file, json).expect("write");
        std::process::Command::new("vagrant")
            .arg("validate")
            .current_dir(lb_tests::lab::vagrant_dir())
            .env("LB_LAB_JSON", &file)
            .env("VAGRANT_DEFAULT_PROVIDER", "libvirt")
            .env("VAGRANT_CHECKPOINT_DISABLE", "1")
            .output()
            .expect("vagrant (run `cargo xtask setup`)")
    };
    let output = validate(&serde_json::to_string(&rendered).expect("json"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("validated successfully"), "{text}");
    let broken = validate("{\"box\": \"lb-lab/bookworm\"}");
    assert!(
        !broken.status.success(),
        "a description without nodes is refused"
    );
}
