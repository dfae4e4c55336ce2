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

    lab.down();
    for ns in &namespaces {
        assert!(!namespace_exists(ns), "namespace {ns} left behind");
    }
    assert!(!state_dir.exists(), "{} left behind", state_dir.display());
    assert!(!bpf_root.exists(), "{} left behind", bpf_root.display());
    assert!(Path::new("/sys/fs/bpf").exists());
}
