//! Netns lab: the HTTP proxy in front of two nginx servers (Debian's) under a steady load of
//! keep-alive clients; one nginx is killed. Once the health checks have marked it down no
//! request fails; before that, with `option redispatch`, only requests already in flight to
//! it when it died may fail (a refused connection is retried on the other server). Needs root.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir, wait_for_checked_up, wait_for_health},
    app::{get, keepalive_exchange},
    daemons::nginx_backend,
    require_root,
    topology::{balancer_with_reals, real_addr},
};
use nix::sys::signal::Signal;

const FRONTEND: &str = "10.0.1.1:8080";
const CLIENTS: usize = 8;

#[test]
fn killing_a_server_under_load_fails_no_request_after_detection() {
    require_root();
    let lab = balancer_with_reals("l7load", 2).build().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pids = Vec::new();
    for i in 1..=2 {
        pids.push(
            nginx_backend(
                &lab,
                &format!("real{i}"),
                &format!("{}:80", real_addr(i)),
                &format!("real{i}"),
                dir.path(),
                true,
                None,
            )
            .expect("nginx"),
        );
    }
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[defaults]\noptions = [\"redispatch\"]\nlog = \"none\"\n\n\
         [[listen]]\nname = \"site\"\nbind = [\"{FRONTEND}\"]\n\
         servers = [{{ name = \"web1\", addr = \"{}:80\" }}, {{ name = \"web2\", addr = \"{}:80\" }}]\n\
         check = {{ kind = \"http\", path = \"/\", inter = \"500ms\", timeout = \"500ms\", rise = 1, fall = 2 }}\n",
        bpf_dir.display(),
        real_addr(1),
        real_addr(2)
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    let status = lb::agent::health_status_path(&bpf_dir);
    for server in ["web1", "web2"] {
        wait_for_checked_up(&status, server, Duration::from_secs(5)).expect("up");
    }

    // Steady load: each client sends request after request over keep-alive connections
    // (a new one when the proxy closes one), recording (when, ok) for each.
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let load = {
        let stop = stop.clone();
        lab.host("client")
            .spawn(move || async move {
                let frontend: SocketAddr = FRONTEND.parse().expect("frontend");
                let mut tasks = Vec::new();
                for _ in 0..CLIENTS {
                    let stop = stop.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut results = Vec::new();
                        while !stop.load(Ordering::Relaxed) {
                            let batch: Vec<Vec<u8>> = (0..10).map(|_| get("/", "")).collect();
                            let sent_at = start.elapsed();
                            match keepalive_exchange(frontend, &batch).await {
                                Ok(answers) => {
                                    for answer in answers {
                                        results.push((sent_at, answer.status == 200, answer.body));
                                    }
                                }
                                Err(e) => results.push((sent_at, false, e.to_string())),
                            }
                            // A steady load, not a flood: the agent's checks share its CPU.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        results
                    }));
                }
                let mut all = Vec::new();
                for task in tasks {
                    all.extend(task.await.expect("client task"));
                }
                all
            })
            .expect("load")
    };
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = start.elapsed();
    lab.stop(pids[1], Signal::SIGKILL)
        .expect("kill nginx on real2");
    wait_for_health(&status, "web2", "DOWN", Duration::from_secs(3)).expect("web2 down");
    let detected_at = start.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let results = load.join().expect("load thread");

    let total = results.len();
    let failed: Vec<_> = results.iter().filter(|(_, ok, _)| !ok).collect();
    let after_detection = results
        .iter()
        .filter(|(at, _, _)| *at > detected_at)
        .count();
    let real2_after = results
        .iter()
        .filter(|(at, ok, body)| *at > detected_at && *ok && body == "real2")
        .count();
    eprintln!(
        "{total} requests; nginx on real2 killed at {killed_at:?}, marked down at {detected_at:?}; \
         {} failed; {after_detection} sent after detection",
        failed.len()
    );
    assert!(total > 200, "the load was not steady: {total} requests");
    assert!(
        after_detection > 50,
        "{after_detection} requests after detection"
    );
    assert_eq!(real2_after, 0, "the dead server still got requests");
    // Requests already sent on a connection to the server when it died cannot be retried
    // (HAProxy answers 502 too); new ones are redispatched. After detection, none may fail.
    let failed_late: Vec<_> = failed
        .iter()
        .filter(|(at, _, _)| *at > detected_at)
        .collect();
    assert!(
        failed_late.is_empty(),
        "failed after detection (sent at, ok, error): {:?}",
        &failed_late[..failed_late.len().min(5)]
    );
    assert!(
        failed.len() <= CLIENTS,
        "{} failures: more than the requests in flight when the server died",
        failed.len()
    );
}
