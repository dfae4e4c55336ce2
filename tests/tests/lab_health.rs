//! Netns lab: health checks against real servers that die, hang, answer 500, answer too
//! slowly, and flap. Detection takes `fall` checks and recovery `rise` checks (measured and
//! printed against the configured times); the L4 maps follow, so a client's new flows never
//! reach a real that is down. Needs root.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU8, Ordering},
    time::Duration,
};

use lb_tests::{
    agent::{RunningAgent, health_state, unique_bpf_dir, wait_for_checked_up, wait_for_health},
    require_root,
    topology::{VIP, balancer_with_reals, real_addr},
    traffic::{behaviour, http_get_from, spawn_controlled_servers},
};

const INTER_MS: u64 = 200;
const FALL: u64 = 3;
const RISE: u64 = 2;
const TIMEOUT_MS: u64 = 150;

fn config(bpf_dir: &std::path::Path) -> String {
    let reals: Vec<String> = (1..=3)
        .map(|i| format!("{{ addr = \"{}\" }}", real_addr(i)))
        .collect();
    format!(
        "[global]\nbpf_dir = \"{}\"\nxdp_mode = \"generic\"\nring_size = 251\n\n[[interface]]\nname = \"eth0\"\n\n\
         [[l4]]\nname = \"web\"\nvip = \"{VIP}:80\"\nreals = [{}]\n\
         check = {{ kind = \"http\", path = \"/health\", inter = \"{INTER_MS}ms\", timeout = \"{TIMEOUT_MS}ms\", \
         rise = {RISE}, fall = {FALL}, expect_status = [\"200-299\"] }}\n",
        bpf_dir.display(),
        reals.join(", ")
    )
}

fn state(status: &std::path::Path, server: &str) -> Option<String> {
    health_state(status, server)
}

fn wait_for(status: &std::path::Path, server: &str, wanted: &str, limit: Duration) -> Duration {
    wait_for_health(status, server, wanted, limit).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `count` HTTP requests through the VIP from client ports starting at `first_port`; the
/// names of the reals that answered.
fn requests_through_vip(lab: &lb_tests::netns::Lab, first_port: u16, count: u16) -> Vec<String> {
    lab.host("client")
        .spawn(move || async move {
            let vip: SocketAddr = format!("{VIP}:80").parse().expect("vip");
            let mut answers = Vec::new();
            for port in 0..count {
                let bind: SocketAddr = format!("10.0.1.2:{}", first_port + port)
                    .parse()
                    .expect("bind");
                answers.push(
                    http_get_from(bind, vip)
                        .await
                        .expect("request through the VIP"),
                );
            }
            answers
        })
        .expect("client")
        .join()
        .expect("client thread")
}

#[test]
fn checks_follow_failing_servers_and_steer_new_flows() {
    require_root();
    let lab = balancer_with_reals("health", 3)
        .build()
        .expect("build the lab");
    let modes =
        spawn_controlled_servers(&lab, &["real1", "real2", "real3"], Duration::from_secs(120))
            .expect("servers");
    let bpf_dir = unique_bpf_dir();
    let _agent =
        RunningAgent::start(&lab, lab.host("lb"), &config(&bpf_dir), &bpf_dir, &[]).expect("agent");
    let status = lb::agent::health_status_path(&bpf_dir);
    let server = |i: usize| format!("{}:80", real_addr(i));
    for i in 1..=3 {
        wait_for_checked_up(&status, &server(i), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    let configured_down = Duration::from_millis(FALL * INTER_MS);
    let configured_up = Duration::from_millis(RISE * INTER_MS);
    // Detection: `fall` failed checks, the first of which comes up to one interval after the
    // failure starts (checks are not synchronised with it); fastinter = inter here.
    // Plus slack for a loaded machine (tests run in parallel on two cores).
    let down_limit = configured_down + Duration::from_millis(INTER_MS + TIMEOUT_MS + 800);
    for (what, mode) in [
        ("dead (connection refused)", behaviour::DEAD),
        ("answering 500", behaviour::ERROR),
        ("hanging", behaviour::HANG),
        ("slower than the timeout", behaviour::SLOW),
    ] {
        modes[1].store(mode, Ordering::Relaxed);
        let took = wait_for(
            &status,
            &server(2),
            "DOWN",
            down_limit + Duration::from_secs(2),
        );
        eprintln!("real2 {what}: DOWN after {took:?} (fall x inter = {configured_down:?})");
        assert!(
            took >= configured_down - Duration::from_millis(INTER_MS),
            "{what}: down too early, {took:?}"
        );
        assert!(
            took <= down_limit,
            "{what}: down after {took:?}, limit {down_limit:?}"
        );

        // New flows avoid real2 while it is down.
        let answers = requests_through_vip(&lab, 20000 + 100 * u16::from(rand_byte()), 40);
        assert!(
            answers.iter().all(|a| a != "real2"),
            "{what}: a new flow reached real2: {answers:?}"
        );

        modes[1].store(behaviour::OK, Ordering::Relaxed);
        let up_limit = configured_up + Duration::from_millis(INTER_MS + 800);
        let took = wait_for(&status, &server(2), "UP", up_limit + Duration::from_secs(2));
        eprintln!(
            "real2 recovered from {what}: UP after {took:?} (rise x inter = {configured_up:?})"
        );
        assert!(
            took <= up_limit,
            "{what}: up after {took:?}, limit {up_limit:?}"
        );
    }

    // An operator drains real1 through the runtime API: new flows avoid it, checks go on.
    let ctl = |words: &[&str]| {
        let output = std::process::Command::new(lb_tests::agent::lb_binary().expect("lb"))
            .arg("ctl")
            .arg("--bpf-dir")
            .arg(&bpf_dir)
            .args(words)
            .output()
            .expect("lb ctl");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let server1 = server(1);
    assert_eq!(
        ctl(&["set", "server", &format!("web/{server1}"), "state", "drain"]),
        (true, "ok\n".to_string())
    );
    // The agent writes the status after the Maglev tables changed: once it says DRAIN, new
    // flows avoid the server.
    wait_for(&status, &server1, "DRAIN", Duration::from_secs(2));
    let answers = requests_through_vip(&lab, 40000, 40);
    assert!(
        answers.iter().all(|a| a != "real1"),
        "a new flow reached the drained real1: {answers:?}"
    );
    assert!(ctl(&["show", "servers"]).1.contains("DRAIN"));
    assert!(
        !ctl(&["set", "server", "web/10.9.9.9:80", "state", "maint"]).0,
        "unknown server accepted"
    );
    assert_eq!(
        ctl(&["set", "server", &format!("web/{server1}"), "state", "ready"]),
        (true, "ok\n".to_string())
    );
    wait_for(&status, &server1, "UP", Duration::from_secs(2));

    // A flapping server (500 and 200 in turn) never fails `fall` checks in a row: it stays up.
    modes[2].store(behaviour::ALTERNATE, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(INTER_MS * 10));
    assert_eq!(
        state(&status, &server(3)).as_deref(),
        Some("UP"),
        "a flapping server was taken down"
    );
}

/// A distinct byte per call, so repeated rounds use different client ports.
fn rand_byte() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
