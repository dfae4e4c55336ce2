//! Netns lab: the agent as an HTTP proxy. A frontend on the balancer routes `/api` to one
//! backend and everything else to another (round robin), adds X-Forwarded-For, follows the
//! health checks, answers 503 when no server is up and 400 to a malformed request, which it
//! never forwards. Needs root.

use std::{collections::BTreeMap, net::SocketAddr, sync::atomic::Ordering, time::Duration};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir, wait_for_checked_up, wait_for_health},
    netns::Lab,
    require_root,
    topology::{balancer_with_reals, real_addr},
    traffic::{behaviour, http_echo_head_server, http_exchange, spawn_controlled_servers},
};
use tokio::net::TcpListener;

const FRONTEND: &str = "10.0.1.1:8080";

fn config(bpf_dir: &std::path::Path) -> String {
    format!(
        "[global]\nbpf_dir = \"{}\"\n\n\
         [[frontend]]\nname = \"main\"\nbind = [\"{FRONTEND}\"]\noptions = [\"forwardfor\"]\n\
         acls = [\"is_api path_beg -i /api\"]\nuse_backend = [\"api if is_api\"]\ndefault_backend = \"web\"\n\n\
         [[backend]]\nname = \"api\"\nservers = [{{ name = \"api1\", addr = \"{}:80\" }}]\n\n\
         [[backend]]\nname = \"web\"\nbalance = \"roundrobin\"\n\
         servers = [{{ name = \"web1\", addr = \"{}:80\" }}, {{ name = \"web2\", addr = \"{}:80\" }}]\n\
         check = {{ kind = \"http\", path = \"/health\", inter = \"200ms\", timeout = \"150ms\", rise = 1, fall = 2 }}\n",
        bpf_dir.display(),
        real_addr(1),
        real_addr(2),
        real_addr(3)
    )
}

fn get(lab: &Lab, path: &str) -> (u16, String) {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n");
    exchange(lab, raw.into_bytes())
}

fn exchange(lab: &Lab, raw: Vec<u8>) -> (u16, String) {
    let frontend: SocketAddr = FRONTEND.parse().expect("frontend");
    lab.host("client")
        .spawn(move || async move { http_exchange(frontend, &raw).await })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("an HTTP answer")
}

#[test]
fn routes_balances_follows_health_and_refuses_bad_requests() {
    require_root();
    let lab = balancer_with_reals("l7", 3).build().expect("build the lab");
    lab.host("real1")
        .spawn(|| async {
            let listener = TcpListener::bind("0.0.0.0:80").await.expect("bind");
            http_echo_head_server(listener, "real1".into(), Duration::from_secs(60)).await;
        })
        .expect("api server");
    let modes = spawn_controlled_servers(&lab, &["real2", "real3"], Duration::from_secs(60))
        .expect("web servers");
    // Warm the lab up: the very first SYN across a fresh lab is retransmitted after 1 s (the
    // neighbour entries are being made), longer than this test's 150 ms check timeout.
    lab.host("lb")
        .spawn(|| async {
            for i in 2..=3 {
                let _ = tokio::net::TcpStream::connect((real_addr(i).as_str(), 80)).await;
            }
        })
        .expect("warm up")
        .join()
        .expect("warm up");
    let bpf_dir = unique_bpf_dir();
    let _agent =
        RunningAgent::start(&lab, lab.host("lb"), &config(&bpf_dir), &bpf_dir, &[]).expect("agent");
    let status = lb::agent::health_status_path(&bpf_dir);
    for server in ["web1", "web2"] {
        wait_for_checked_up(&status, server, Duration::from_secs(5)).expect("checked up at start");
    }

    // ACL routing, with X-Forwarded-For added.
    let (code, body) = get(&lab, "/API/orders?id=7");
    assert_eq!(code, 200);
    assert!(body.starts_with("real1\n"), "{body}");
    assert!(body.contains("get /api/orders?id=7 http/1.1"), "{body}");
    assert!(body.contains("x-forwarded-for: 10.0.1.2"), "{body}");

    // Round robin over the web servers.
    let mut tally: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..6 {
        let (code, body) = get(&lab, "/");
        assert_eq!(code, 200);
        *tally.entry(body).or_default() += 1;
    }
    assert_eq!(
        tally,
        BTreeMap::from([("real2".to_string(), 3), ("real3".to_string(), 3)])
    );

    // A server failing its checks gets nothing; with none up, 503.
    modes[0].store(behaviour::ERROR, Ordering::Relaxed);
    wait_for_health(&status, "web1", "DOWN", Duration::from_secs(3)).expect("web1 down");
    for _ in 0..4 {
        assert_eq!(get(&lab, "/"), (200, "real3".to_string()));
    }
    modes[1].store(behaviour::DEAD, Ordering::Relaxed);
    wait_for_health(&status, "web2", "DOWN", Duration::from_secs(3)).expect("web2 down");
    let (code, body) = get(&lab, "/");
    assert_eq!(code, 503);
    assert!(body.contains("No server is available"), "{body}");

    // A malformed request is answered 400 and goes nowhere.
    let (code, _) = exchange(
        &lab,
        b"GET /api HTTP/1.1\r\nHost shop.example\r\n\r\n".to_vec(),
    );
    assert_eq!(code, 400);
}
