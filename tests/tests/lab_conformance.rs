//! Netns lab: the request-path conformance table (`lb_tests::conformance`) against lb, every
//! row on a fresh client connection, with the recording server behind it; then the checks
//! that need time or counters rather than bytes: a client that stops reading (HTTP/1.1 and
//! HTTP/2 zero window) gives its server slot back at `timeout client`, idle HTTP/2
//! connections get GOAWAY at `timeout http_keep_alive`, and a client's broken body is counted
//! against the client. Needs root.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir},
    conformance::{self, Recorder},
    netns::{Lab, LabSpec},
    require_root,
};
use tokio::net::{TcpListener, TcpStream};

const H1: &str = "127.0.0.1:8080";
const H2: &str = "127.0.0.1:8081";
const RECORDER: &str = "127.0.0.1:9000";

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("address")
}

/// A lab of one host with the recorder on it; lb runs there too, with `config`.
fn start(name: &str, config: &str) -> (Lab, Recorder, RunningAgent, lb_tests::agent::BpfDir) {
    let lab = LabSpec::new(name).host("lb").build().expect("lab");
    let recorder = Recorder::default();
    let serving = recorder.clone();
    lab.host("lb")
        .spawn(move || async move {
            let listener = TcpListener::bind(RECORDER)
                .await
                .expect("bind the recorder");
            serving.serve(listener, Duration::from_secs(300)).await;
        })
        .expect("recorder");
    let bpf_dir = unique_bpf_dir();
    let config = format!("[global]\nbpf_dir = \"{}\"\n\n{config}", bpf_dir.display());
    let agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab
        .host("lb")
        .in_netns(|_| async { Ok(TcpStream::connect(addr(H1)).await.map(|_| ()).is_ok()) })
        .expect("probe")
        .eq(&false)
    {
        assert!(Instant::now() < deadline, "the frontend never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    (lab, recorder, agent, bpf_dir)
}

fn shown(forwarded: &conformance::Forwarded) -> String {
    match forwarded {
        conformance::Forwarded::Exact(bytes) => conformance::shown_bytes(bytes),
        conformance::Forwarded::PrefixOf(bytes) => {
            format!("a prefix of {}", conformance::shown_bytes(bytes))
        }
    }
}

/// Every row of the table, against lb. All mismatches are reported together.
#[test]
fn the_conformance_table_holds_for_lb() {
    require_root();
    let (lab, recorder, _agent, _dir) = start(
        "conform",
        &conformance::lb_config(addr(H1), addr(H2), addr(RECORDER)),
    );
    let vectors = conformance::vectors();
    let count = vectors.len();
    let failures: Vec<String> = lab
        .host("lb")
        .in_netns(move |_| async move {
            let mut failures = Vec::new();
            for vector in &vectors {
                let outcome =
                    conformance::run_vector(vector, addr(H1), addr(H2), &recorder).await?;
                if !outcome.matches(vector) {
                    failures.push(format!(
                        "{} (defect {}): expected {:?} and {}\n    got {:?}, the server saw {}\n    why: {}",
                        vector.name,
                        vector.defect,
                        vector.statuses,
                        shown(&vector.forwarded),
                        outcome.statuses,
                        conformance::shown_bytes(&outcome.seen),
                        vector.why
                    ));
                }
            }
            Ok(failures)
        })
        .expect("run the table");
    assert!(
        failures.is_empty(),
        "{} of {count} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
