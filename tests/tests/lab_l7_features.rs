//! Netns lab: the agent as an HTTP proxy in front of recording application servers
//! (`lb_tests::app`): cookie persistence with redispatch when the cookie's server dies,
//! JSESSIONID stickiness, header rules and forwardfor, server connection reuse, maxconn with
//! a FIFO queue and `timeout queue`, retries with and without redispatch, WebSocket tunnels,
//! request smuggling refused before anything is forwarded, timeouts, error files and the
//! access log. Needs root.

use std::{
    net::SocketAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use lb_tests::{
    agent::{BpfDir, RunningAgent, unique_bpf_dir, wait_for_checked_up, wait_for_health},
    app::{Answer, get, keepalive_exchange, spawn_apps},
    netns::Lab,
    require_root,
    topology::{balancer_with_reals, real_addr},
    traffic::{behaviour, http_exchange, spawn_controlled_servers},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

const FRONTEND: &str = "10.0.1.1:8080";

fn frontend() -> SocketAddr {
    FRONTEND.parse().expect("frontend address")
}

/// Runs `requests` over one client connection from the client host.
fn exchange(lab: &Lab, requests: Vec<Vec<u8>>) -> Vec<Answer> {
    lab.host("client")
        .spawn(move || async move { keepalive_exchange(frontend(), &requests).await })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("answers")
}

fn one(lab: &Lab, request: Vec<u8>) -> Answer {
    exchange(lab, vec![request]).remove(0)
}

fn start(lab: &Lab, body: &str) -> (RunningAgent, BpfDir) {
    let bpf_dir = unique_bpf_dir();
    let config = format!("[global]\nbpf_dir = \"{}\"\n\n{body}", bpf_dir.display());
    let agent = RunningAgent::start(lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    // The listener is up once a connection is accepted.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lab
        .host("client")
        .spawn(|| async { TcpStream::connect(frontend()).await.map(|_| ()) })
        .expect("probe")
        .join()
        .expect("probe thread")
        .is_err()
    {
        assert!(Instant::now() < deadline, "the frontend never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    (agent, bpf_dir)
}

fn servers(reals: &[usize], extra: &str) -> String {
    let list: Vec<String> = reals
        .iter()
        .map(|i| {
            format!(
                "{{ name = \"web{i}\", addr = \"{}:80\"{extra} }}",
                real_addr(*i)
            )
        })
        .collect();
    format!("servers = [{}]\n", list.join(", "))
}

/// The agent's `show stat` answer.
fn show_stat(lab: &Lab, bpf_dir: &std::path::Path) -> String {
    let socket = lb::admin::socket_path(bpf_dir);
    lab.host("lb")
        .spawn(move || async move { lb::admin::request(&socket, "show stat").await })
        .expect("stat")
        .join()
        .expect("stat thread")
        .expect("show stat")
}

/// Column `index` of the `show stat` line of `name` ("" if absent).
fn stat(stats: &str, name: &str, index: usize) -> String {
    stats
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(index))
        .unwrap_or_default()
        .to_string()
}

/// Warms the lab's neighbour entries so the first connections are not delayed by a second.
fn warm_up(lab: &Lab, reals: &[usize]) {
    let addrs: Vec<String> = reals.iter().map(|i| real_addr(*i)).collect();
    lab.host("lb")
        .spawn(move || async move {
            for addr in addrs {
                let _ = TcpStream::connect((addr.as_str(), 80)).await;
            }
        })
        .expect("warm up")
        .join()
        .expect("warm up");
}

#[test]
fn cookie_insert_sticks_and_moves_when_its_server_dies() {
    require_root();
    let lab = balancer_with_reals("l7cookie", 3).build().expect("lab");
    let modes = spawn_controlled_servers(&lab, &["real1", "real2"], Duration::from_secs(120))
        .expect("servers");
    warm_up(&lab, &[1, 2]);
    let (_agent, bpf_dir) = start(
        &lab,
        &format!(
            "[[frontend]]\nname = \"www\"\nbind = [\"{FRONTEND}\"]\ndefault_backend = \"app\"\n\n\
             [[backend]]\nname = \"app\"\ncookie = \"SRV insert indirect nocache httponly\"\n{}\
             check = {{ kind = \"http\", path = \"/\", inter = \"200ms\", timeout = \"150ms\", rise = 1, fall = 2 }}\n",
            servers(&[1, 2], "")
        ),
    );
    let status = lb::agent::health_status_path(&bpf_dir);
    for s in ["web1", "web2"] {
        wait_for_checked_up(&status, s, Duration::from_secs(5)).expect("up");
    }
    let first = one(&lab, get("/", ""));
    assert_eq!(first.status, 200);
    let set = first
        .header("set-cookie")
        .expect("a persistence cookie")
        .to_string();
    assert!(set.ends_with("; path=/; HttpOnly"), "{set}");
    assert_eq!(first.header("cache-control"), Some("private"), "nocache");
    let pinned = first.body.clone();
    let cookie = set.split(';').next().expect("pair").to_string();
    assert_eq!(cookie, format!("SRV=web{}", &pinned[4..]));
    // Every request with the cookie goes to its server, and needs no new cookie.
    let answers = exchange(
        &lab,
        (0..6)
            .map(|_| get("/", &format!("Cookie: {cookie}\r\n")))
            .collect(),
    );
    for answer in &answers {
        assert_eq!(answer.body, pinned);
        assert_eq!(answer.header("set-cookie"), None);
    }
    // Its server dies: the cookie is ignored and a new one names the other server.
    let index = if pinned == "real1" { 0 } else { 1 };
    modes[index].store(behaviour::DEAD, Ordering::Relaxed);
    let name = format!("web{}", index + 1);
    wait_for_health(&status, &name, "DOWN", Duration::from_secs(3)).expect("down");
    let moved = one(&lab, get("/", &format!("Cookie: {cookie}\r\n")));
    assert_eq!(moved.status, 200);
    assert_ne!(moved.body, pinned);
    let new_cookie = moved.header("set-cookie").expect("a new cookie");
    assert!(
        new_cookie.starts_with(&format!("SRV=web{}", 2 - index)),
        "{new_cookie}"
    );
}

#[test]
fn learnt_jsessionid_keeps_a_session_on_its_server() {
    require_root();
    let lab = balancer_with_reals("l7jsess", 2).build().expect("lab");
    let apps = spawn_apps(&lab, &[1, 2]);
    warm_up(&lab, &[1, 2]);
    let (_agent, _dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"tomcat\"\nbind = [\"{FRONTEND}\"]\nbalance = \"roundrobin\"\n\
             stick_cookie = {{ name = \"JSESSIONID\", size = 1000, expire = \"10m\" }}\n{}",
            servers(&[1, 2], "")
        ),
    );
    let login = one(&lab, get("/login", ""));
    let session = login
        .header("set-cookie")
        .and_then(|v| v.split(';').next())
        .expect("the application's session cookie")
        .to_string();
    let owner = login.body.clone();
    // Without the session, round robin alternates; with it, every request stays.
    let plain: Vec<String> = exchange(&lab, (0..4).map(|_| get("/", "")).collect())
        .into_iter()
        .map(|a| a.body)
        .collect();
    assert!(plain.contains(&"real1".to_string()) && plain.contains(&"real2".to_string()));
    for answer in exchange(
        &lab,
        (0..6)
            .map(|_| get("/", &format!("Cookie: {session}\r\n")))
            .collect(),
    ) {
        assert_eq!(answer.body, owner);
    }
    assert!(apps.iter().all(|a| a.requests() > 0));
}

#[test]
fn header_rules_forwardfor_and_server_connection_reuse() {
    require_root();
    let lab = balancer_with_reals("l7hdr", 1).build().expect("lab");
    let apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1]);
    let warm_up_connections = apps[0].connections();
    let (_agent, _dir) = start(
        &lab,
        &format!(
            "[defaults]\noptions = [\"forwardfor header X-Real-IP\"]\n\n\
             [[frontend]]\nname = \"www\"\nbind = [\"{FRONTEND}\"]\ndefault_backend = \"app\"\n\
             acls = [\"is_api path_beg /api\"]\n\
             http_request = [\"set-header X-Forwarded-Proto http\", \"set-header Host %[req.hdr(host)]\", \
             \"del-header X-Debug\", \"add-header X-Api yes if is_api\", \"replace-path ^/old/(.*) /\\\\1\", \
             \"replace-header User-Agent ^curl/(.*) tool/\\\\1\"]\n\
             http_response = [\"set-header X-Served-By %[be_name]/%[srv_name]\", \"set-header X-NGINX NGINX-LB\"]\n\n\
             [[backend]]\nname = \"app\"\n{}",
            servers(&[1], "")
        ),
    );
    let answers = exchange(
        &lab,
        vec![
            get("/head", "X-Debug: 1\r\n"),
            get("/api/head", ""),
            get("/head", ""),
            get("/old/head?x=1", "User-Agent: curl/8.0\r\n"),
        ],
    );
    // replace-path keeps the query; replace-header rewrites a matching value as a whole.
    let rewritten = answers[3].body.to_ascii_lowercase();
    assert!(
        rewritten.starts_with("get /head?x=1 http/1.1"),
        "{rewritten}"
    );
    assert!(rewritten.contains("user-agent: tool/8.0"), "{rewritten}");
    let head = answers[0].body.to_ascii_lowercase();
    assert!(head.contains("x-real-ip: 10.0.1.2"), "{head}");
    assert!(head.contains("x-forwarded-proto: http"), "{head}");
    assert!(head.contains("host: shop.example"), "{head}");
    assert!(!head.contains("x-debug"), "{head}");
    assert!(!head.contains("x-api"), "{head}");
    assert_eq!(answers[0].header("x-served-by"), Some("app/web1"));
    assert_eq!(answers[0].header("x-nginx"), Some("NGINX-LB"));
    assert!(answers[1].body.to_ascii_lowercase().contains("x-api: yes"));
    // Two more clients, one request each: all requests share server connections.
    for _ in 0..2 {
        assert_eq!(one(&lab, get("/", "")).status, 200);
    }
    assert_eq!(apps[0].requests(), 6);
    // Reuse is opportunistic (a request arriving while the only idle connection is still
    // finishing its previous response opens another), so allow one extra on a loaded machine.
    let opened = apps[0].connections() - warm_up_connections;
    assert!(
        opened <= 2,
        "{opened} server connections for 6 requests: the proxy does not reuse them"
    );
}

#[test]
fn maxconn_queues_in_order_and_times_out() {
    require_root();
    let lab = balancer_with_reals("l7queue", 1).build().expect("lab");
    let _apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1]);
    let (_agent, bpf_dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"app\"\nbind = [\"{FRONTEND}\"]\ntimeout = {{ queue = \"700ms\" }}\n{}",
            servers(&[1], ", maxconn = 1")
        ),
    );
    // Three requests at once to a server taking one at a time, 500 ms each: the first is
    // served at once, the second after ~500 ms in the queue (under 700), the third would
    // wait ~1000 ms and gets 503 at 700.
    let results = lab
        .host("client")
        .spawn(|| async {
            let mut tasks = Vec::new();
            for i in 0..3u64 {
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(50 * i)).await;
                    let started = Instant::now();
                    let answer = keepalive_exchange(frontend(), &[get("/slow", "")]).await;
                    (answer.map(|mut a| a.remove(0).status), started.elapsed())
                }));
            }
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await.expect("task"));
            }
            out
        })
        .expect("clients")
        .join()
        .expect("client thread");
    let statuses: Vec<u16> = results
        .iter()
        .map(|(s, _)| *s.as_ref().expect("an answer"))
        .collect();
    assert_eq!(statuses, [200, 200, 503], "{results:?}");
    assert!(results[1].1 >= Duration::from_millis(400), "{results:?}");
    assert!(
        results[2].1 >= Duration::from_millis(600) && results[2].1 < Duration::from_millis(1000),
        "{results:?}"
    );
    let stats = show_stat(&lab, &bpf_dir);
    assert_eq!(stat(&stats, "app/BACKEND", 16), "2", "queue max: {stats}");
    assert_eq!(stat(&stats, "app/BACKEND", 17), "1", "denied: {stats}");
}

#[test]
fn retries_go_to_another_server_only_with_redispatch() {
    require_root();
    let lab = balancer_with_reals("l7retry", 2).build().expect("lab");
    let _apps = spawn_apps(&lab, &[2]);
    warm_up(&lab, &[1, 2]);
    // web1 has nothing listening: connections are refused. `first` always picks it.
    let (_agent, bpf_dir) = start(
        &lab,
        &format!(
            "[[frontend]]\nname = \"www\"\nbind = [\"{FRONTEND}\"]\nacls = [\"strict path_beg /strict\"]\n\
             use_backend = [\"strict if strict\"]\ndefault_backend = \"lenient\"\n\n\
             [[backend]]\nname = \"lenient\"\nbalance = \"first\"\nretries = 2\noptions = [\"redispatch\"]\n{}\n\
             [[backend]]\nname = \"strict\"\nbalance = \"first\"\nretries = 2\n{}",
            servers(&[1, 2], ""),
            servers(&[1, 2], "")
        ),
    );
    let lenient = one(&lab, get("/", ""));
    assert_eq!((lenient.status, lenient.body.as_str()), (200, "real2"));
    let strict = one(&lab, get("/strict", ""));
    assert_eq!(
        strict.status, 503,
        "without redispatch every retry stays on web1"
    );
    let stats = show_stat(&lab, &bpf_dir);
    let column = |name: &str, index: usize| stat(&stats, name, index);
    // conn errors, retries, redispatches: lenient 2/2/1, strict 3/2/0.
    assert_eq!(
        [
            column("lenient/BACKEND", 12),
            column("lenient/BACKEND", 13),
            column("lenient/BACKEND", 14)
        ],
        ["2", "2", "1"],
        "{stats}"
    );
    assert_eq!(
        [
            column("strict/BACKEND", 12),
            column("strict/BACKEND", 13),
            column("strict/BACKEND", 14)
        ],
        ["3", "2", "0"],
        "{stats}"
    );
}

#[test]
fn websocket_upgrade_becomes_a_tunnel() {
    require_root();
    let lab = balancer_with_reals("l7ws", 1).build().expect("lab");
    let _apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1]);
    let (_agent, _dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"ws\"\nbind = [\"{FRONTEND}\"]\ntimeout = {{ tunnel = \"2s\" }}\n{}",
            servers(&[1], "")
        ),
    );
    let echoed = lab
        .host("client")
        .spawn(|| async {
            let mut stream = TcpStream::connect(frontend()).await?;
            stream
                .write_all(
                    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                )
                .await?;
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                stream.read_exact(&mut byte).await?;
                head.push(byte[0]);
            }
            let mut echoed = Vec::new();
            for word in [&b"ping"[..], b"pong-pong"] {
                stream.write_all(word).await?;
                let mut back = vec![0u8; word.len()];
                stream.read_exact(&mut back).await?;
                echoed.push(String::from_utf8_lossy(&back).into_owned());
            }
            anyhow::Ok((String::from_utf8_lossy(&head).into_owned(), echoed))
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("tunnel");
    assert!(echoed.0.starts_with("HTTP/1.1 101"), "{}", echoed.0);
    assert!(
        echoed.0.to_ascii_lowercase().contains("upgrade: websocket"),
        "{}",
        echoed.0
    );
    assert_eq!(echoed.1, ["ping", "pong-pong"]);
}

#[test]
fn smuggling_vectors_get_400_and_reach_no_server() {
    require_root();
    let lab = balancer_with_reals("l7smug", 1).build().expect("lab");
    let apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1]);
    let (_agent, _dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"app\"\nbind = [\"{FRONTEND}\"]\n{}",
            servers(&[1], "")
        ),
    );
    let vectors: [(&str, &[u8]); 9] = [
        (
            "Content-Length and Transfer-Encoding",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "Transfer-Encoding then Content-Length",
            b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n",
        ),
        (
            "both framings on the second request of a connection",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "two different Content-Lengths",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "a header name with a space",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
        ),
        (
            "a bad chunk size",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "a coding other than chunked last",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
        ),
        (
            "a control character in a value",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
        ),
    ];
    for (what, raw) in vectors {
        let raw = raw.to_vec();
        let pipelined = what.contains("second request");
        let (status, body) = lab
            .host("client")
            .spawn(move || async move { http_exchange(frontend(), &raw).await })
            .expect("client")
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        if pipelined {
            // The first request is answered; the second gets the 400.
            assert_eq!(status, 200, "{what}");
            assert!(body.contains("HTTP/1.1 400"), "{what}: {body}");
        } else {
            assert_eq!(status, 400, "{what}");
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let heads = apps[0].heads.lock().expect("heads").clone();
    assert!(
        heads.iter().all(|h| h.starts_with("GET / ")),
        "forwarded: {heads:?}"
    );
    assert_eq!(
        heads.len(),
        1,
        "only the pipelined GET went through: {heads:?}"
    );
    // A well-formed chunked request still goes through.
    let ok = one(
        &lab,
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            .to_vec(),
    );
    assert_eq!(ok.status, 200);
    // A body that merely contains such header lines is only a body.
    let body = "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    let ok = one(
        &lab,
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    );
    assert_eq!(ok.status, 200);
}

#[test]
fn timeouts_errorfile_and_access_log() {
    require_root();
    let lab = balancer_with_reals("l7time", 2).build().expect("lab");
    let _apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1, 2]);
    let dir = tempfile::tempdir().expect("tempdir");
    let errorfile = dir.path().join("503.http");
    std::fs::write(
        &errorfile,
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nX-Maintenance: yes\r\n\r\nback soon\n",
    )
    .expect("errorfile");
    let log = dir.path().join("access.log");
    let (_agent, _bpf) = start(
        &lab,
        &format!(
            "[defaults]\nlog = \"{}\"\nerrorfile = [\"503 {}\"]\n\n\
             [[frontend]]\nname = \"www\"\nbind = [\"{FRONTEND}\"]\n\
             timeout = {{ http_request = \"300ms\", http_keep_alive = \"150ms\", client = \"400ms\" }}\n\
             acls = [\"slow path_beg /slow\", \"gone path_beg /gone\"]\n\
             use_backend = [\"slow if slow\", \"gone if gone\"]\ndefault_backend = \"app\"\n\n\
             [[backend]]\nname = \"app\"\n{}\n\
             [[backend]]\nname = \"slow\"\ntimeout = {{ server = \"200ms\" }}\n{}\n\
             [[backend]]\nname = \"gone\"\nretries = 0\nservers = [{{ name = \"none\", addr = \"{}:80\" }}]\n",
            log.display(),
            errorfile.display(),
            servers(&[1], ""),
            servers(&[1], ""),
            real_addr(2)
        ),
    );
    assert_eq!(one(&lab, get("/", "")).status, 200);
    // A server slower than `timeout server`: 504.
    assert_eq!(one(&lab, get("/slow", "")).status, 504);
    // No server answers: the errorfile, as written.
    let gone = one(&lab, get("/gone", ""));
    assert_eq!(gone.status, 503);
    assert_eq!(gone.header("x-maintenance"), Some("yes"));
    assert_eq!(gone.body, "back soon\n");
    // A client that sends half a request head and stops: cut off after `timeout
    // http_request`, never forwarded.
    let slowloris = lab
        .host("client")
        .spawn(|| async {
            let mut stream = TcpStream::connect(frontend()).await?;
            stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await?;
            let started = Instant::now();
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
            anyhow::Ok((
                started.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            ))
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("slowloris");
    assert!(
        slowloris.0 >= Duration::from_millis(250) && slowloris.0 < Duration::from_secs(2),
        "{slowloris:?}"
    );
    assert!(slowloris.1.starts_with("HTTP/1.1 408"), "{slowloris:?}");
    assert!(
        slowloris
            .1
            .contains("didn't send a complete request in time")
    );
    // Keep-alive: a response slower than `timeout http_keep_alive` still arrives (the timer
    // runs only between requests); then the idle connection is closed after it.
    let kept = lab
        .host("client")
        .spawn(|| async {
            let mut stream = TcpStream::connect(frontend()).await?;
            // /slow gets its 504 after `timeout server` (200 ms): longer than the keep-alive
            // timeout (150 ms), which must not cut it.
            stream
                .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                .await?;
            let mut answer = vec![0u8; 4096];
            let n = stream.read(&mut answer).await?;
            let first = String::from_utf8_lossy(&answer[..n]).into_owned();
            let idle_from = Instant::now();
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
            anyhow::Ok((first, idle_from.elapsed()))
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("keep-alive exchange");
    assert!(kept.0.starts_with("HTTP/1.1 504"), "{}", kept.0);
    assert!(
        kept.1 >= Duration::from_millis(100) && kept.1 < Duration::from_secs(2),
        "the idle connection was closed after {:?}",
        kept.1
    );
    // A request body that stalls past `timeout client`: the connection is cut.
    let stalled = lab
        .host("client")
        .spawn(|| async {
            let mut stream = TcpStream::connect(frontend()).await?;
            stream
                .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
                .await?;
            let started = Instant::now();
            let mut rest = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
            anyhow::Ok(started.elapsed())
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("stalled body");
    assert!(
        stalled >= Duration::from_millis(300) && stalled < Duration::from_secs(2),
        "a stalled body was cut after {stalled:?}"
    );
    // A malformed request and a connection that sends nothing are logged too.
    let (status, _) = lab
        .host("client")
        .spawn(|| async {
            http_exchange(frontend(), b"GET / HTTP/1.1\r\nBad Header\r\n\r\n").await
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("an answer");
    assert_eq!(status, 400);
    lab.host("client")
        .spawn(|| async { drop(TcpStream::connect(frontend()).await) })
        .expect("client")
        .join()
        .expect("client thread");
    std::thread::sleep(Duration::from_millis(300));
    let lines = std::fs::read_to_string(&log).expect("access log");
    let bad: Vec<&str> = lines.lines().filter(|l| l.contains("<BADREQ>")).collect();
    assert!(
        bad.iter()
            .any(|l| l.contains(" 400 ") && l.contains(" PR-- ")),
        "no 400 PR-- line in {lines}"
    );
    assert!(
        bad.iter()
            .any(|l| l.contains(" 408 ") && l.contains(" cR-- ")),
        "no 408 cR-- line for the slow client in {lines}"
    );
    assert!(
        bad.iter()
            .any(|l| l.contains(" -1 ") && l.contains(" CR-- ")),
        "no line for the connection that sent nothing in {lines}"
    );
    let ok_line = lines
        .lines()
        .find(|l| l.contains(" app/web1 "))
        .unwrap_or_else(|| panic!("no app line in {lines}"));
    // 10.0.1.2:PORT [DD/Mon/YYYY:HH:MM:SS.mmm] www app/web1 TR/Tw/Tc/Tr/Ta 200 BYTES - - ---- ...
    let fields: Vec<&str> = ok_line.split_whitespace().collect();
    assert!(fields[0].starts_with("10.0.1.2:"), "{ok_line}");
    assert!(
        fields[1].starts_with('[') && fields[1].len() == 26,
        "{ok_line}"
    );
    assert_eq!(fields[2], "www");
    assert_eq!(fields[4].split('/').count(), 5, "{ok_line}");
    assert_eq!(fields[5], "200");
    assert_eq!(fields[6], "5", "bytes of `real1`");
    assert_eq!(fields[9], "----");
    assert!(ok_line.ends_with("\"GET / HTTP/1.1\""), "{ok_line}");
    let timeout_line = lines
        .lines()
        .find(|l| l.contains(" slow/web1 "))
        .expect("a slow line");
    assert!(
        timeout_line.contains(" 504 ") && timeout_line.contains(" sH-- "),
        "{timeout_line}"
    );
    let gone_line = lines
        .lines()
        .find(|l| l.contains(" gone/none "))
        .expect("a gone line");
    assert!(
        gone_line.contains(" 503 ") && gone_line.contains(" SC-- "),
        "{gone_line}"
    );
}

/// Global `maxconn 1`: while one client connection is open, a second one waits to be
/// accepted, and is served as soon as the first closes.
#[test]
fn global_maxconn_holds_further_connections_until_one_closes() {
    require_root();
    let lab = balancer_with_reals("l7maxc", 1).build().expect("lab");
    let _apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1]);
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\nmaxconn = 1\n\n[[listen]]\nname = \"app\"\nbind = [\"{FRONTEND}\"]\n{}",
        bpf_dir.display(),
        servers(&[1], "")
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    std::thread::sleep(Duration::from_millis(500));
    let waited = lab
        .host("client")
        .spawn(|| async {
            // The first client takes the only slot and keeps its connection open.
            let mut first = TcpStream::connect(frontend()).await?;
            first.write_all(&get("/", "")).await?;
            let mut buffer = [0u8; 256];
            let _ = first.read(&mut buffer).await?;
            let second = tokio::spawn(async {
                let started = Instant::now();
                let answers =
                    keepalive_exchange(frontend(), &[get("/", "Connection: close\r\n")]).await;
                (answers.map(|a| a[0].status), started.elapsed())
            });
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert!(
                !second.is_finished(),
                "the second connection was served while the first held the slot"
            );
            drop(first);
            let (status, waited) = second.await?;
            anyhow::Ok((status?, waited))
        })
        .expect("clients")
        .join()
        .expect("client thread")
        .expect("exchange");
    assert_eq!(waited.0, 200);
    assert!(waited.1 >= Duration::from_millis(600), "{waited:?}");
}

/// `http-request deny` refuses (403, or `deny_status`) before anything is forwarded;
/// `monitor-uri` is answered by the proxy itself; with `option allbackups` every backup
/// serves once the primary is gone (without it, only the first).
#[test]
fn deny_monitor_uri_and_allbackups() {
    require_root();
    let lab = balancer_with_reals("l7deny", 3).build().expect("lab");
    let apps = spawn_apps(&lab, &[2, 3]);
    warm_up(&lab, &[1, 2, 3]);
    // web1 (real1) has no server: the primary is down from the start.
    let (agent, bpf_dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"app\"\nbind = [\"{FRONTEND}\"]\noptions = [\"allbackups\"]\n\
             monitor_uri = \"/haproxy_test\"\n\
             acls = [\"admin path_beg /admin\", \"scraper hdr(user-agent) -i badbot\"]\n\
             http_request = [\"deny if admin\", \"deny deny_status 429 if scraper\"]\n\
             check = {{ kind = \"tcp\", inter = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\n\
             servers = [{{ name = \"web1\", addr = \"{}:80\" }}, \
             {{ name = \"b2\", addr = \"{}:80\", backup = true }}, \
             {{ name = \"b3\", addr = \"{}:80\", backup = true }}]\n",
            real_addr(1),
            real_addr(2),
            real_addr(3)
        ),
    );
    let status = lb::agent::health_status_path(&bpf_dir);
    wait_for_health(&status, "web1", "DOWN", Duration::from_secs(5)).expect("web1 down");
    let answers = exchange(
        &lab,
        vec![
            get("/admin/users", ""),
            get("/", "User-Agent: BadBot\r\n"),
            get("/haproxy_test", ""),
        ],
    );
    assert_eq!(answers[0].status, 403);
    assert_eq!(answers[1].status, 429);
    assert_eq!(answers[2].status, 200);
    assert!(
        answers[2].body.contains("Service ready"),
        "{}",
        answers[2].body
    );
    let forwarded: usize = apps.iter().map(|a| a.requests()).sum();
    assert_eq!(forwarded, 0, "denied and monitor requests reached a server");
    // Both backups serve, round robin.
    let bodies: Vec<String> = exchange(&lab, (0..6).map(|_| get("/", "")).collect())
        .into_iter()
        .map(|a| a.body)
        .collect();
    for backup in ["real2", "real3"] {
        assert_eq!(
            bodies.iter().filter(|b| b.as_str() == backup).count(),
            3,
            "{bodies:?}"
        );
    }
    let stats = show_stat(&lab, &bpf_dir);
    assert_eq!(
        stat(&stats, "app/FRONTEND", 17),
        "2",
        "denied count\n{stats}"
    );
    // The runtime API changes a weight (HAProxy's `set weight`): b3 at 0 takes nothing.
    assert_eq!(agent.ctl("set weight app/b3 0").expect("ctl").trim(), "ok");
    assert!(
        agent
            .ctl("set weight app/none 1")
            .expect("ctl")
            .starts_with("error:")
    );
    let bodies: Vec<String> = exchange(&lab, (0..4).map(|_| get("/", "")).collect())
        .into_iter()
        .map(|a| a.body)
        .collect();
    assert!(bodies.iter().all(|b| b == "real2"), "{bodies:?}");
}

/// `option persist`: a request whose cookie names a server its checks call down still goes
/// there (with `redispatch` as the way out if it does not answer); without a cookie, no
/// server is up: 503, which `errorloc` turns into a redirect.
#[test]
fn option_persist_sends_a_cookie_to_its_checked_down_server() {
    require_root();
    let lab = balancer_with_reals("l7persist", 2).build().expect("lab");
    let _apps = spawn_apps(&lab, &[1, 2]);
    warm_up(&lab, &[1, 2]);
    // The checks probe port 81, where nothing listens: both servers are DOWN, yet serve on 80.
    let (_agent, bpf_dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"app\"\nbind = [\"{FRONTEND}\"]\noptions = [\"persist\", \"redispatch\"]\n\
             cookie = \"SRV insert indirect\"\nerrorloc = [\"503 303 https://status.example.com/\"]\n\
             check = {{ kind = \"tcp\", port = 81, inter = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\n\
             servers = [{{ name = \"web1\", addr = \"{}:80\", cookie = \"a\" }}, {{ name = \"web2\", addr = \"{}:80\", cookie = \"b\" }}]\n",
            real_addr(1),
            real_addr(2)
        ),
    );
    let status = lb::agent::health_status_path(&bpf_dir);
    for server in ["web1", "web2"] {
        wait_for_health(&status, server, "DOWN", Duration::from_secs(5)).expect("down");
    }
    let answers = exchange(
        &lab,
        vec![
            get("/", "Cookie: SRV=b\r\n"),
            get("/", "Cookie: SRV=a\r\n"),
            get("/", ""),
        ],
    );
    assert_eq!(
        (answers[0].status, answers[0].body.as_str()),
        (200, "real2")
    );
    assert_eq!(
        (answers[1].status, answers[1].body.as_str()),
        (200, "real1")
    );
    // No cookie and no server up: the 503 becomes the errorloc's redirect.
    assert_eq!(answers[2].status, 303);
    assert_eq!(
        answers[2].header("location"),
        Some("https://status.example.com/")
    );
}

/// Accepts (and drops) connections on `port` of `host` for `lifetime`: what a TCP check needs.
fn check_port(lab: &Lab, host: &str, port: u16, lifetime: Duration) {
    lab.host(host)
        .spawn(move || async move {
            let listener = TcpListener::bind(("0.0.0.0", port)).await.expect("bind");
            let _ = tokio::time::timeout(lifetime, async {
                loop {
                    let _ = listener.accept().await;
                }
            })
            .await;
        })
        .expect("check port");
}

/// `slowstart`: a server the checks bring back up starts with a small share of its weight,
/// and has all of it once the slowstart time has passed.
#[test]
fn slowstart_ramps_a_returning_server_up() {
    require_root();
    let lab = balancer_with_reals("l7slow", 2).build().expect("lab");
    let _apps = spawn_apps(&lab, &[1, 2]);
    warm_up(&lab, &[1, 2]);
    check_port(&lab, "real1", 81, Duration::from_secs(60));
    let (_agent, bpf_dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"app\"\nbind = [\"{FRONTEND}\"]\n\
             check = {{ kind = \"tcp\", port = 81, inter = \"200ms\", timeout = \"200ms\", rise = 1, fall = 1 }}\n\
             servers = [{{ name = \"web1\", addr = \"{}:80\", weight = 100 }}, \
             {{ name = \"web2\", addr = \"{}:80\", weight = 100, slowstart = \"3s\" }}]\n",
            real_addr(1),
            real_addr(2)
        ),
    );
    let status = lb::agent::health_status_path(&bpf_dir);
    wait_for_health(&status, "web2", "DOWN", Duration::from_secs(5)).expect("web2 down");
    check_port(&lab, "real2", 81, Duration::from_secs(60));
    wait_for_health(&status, "web2", "UP", Duration::from_secs(5)).expect("web2 back up");
    let up_at = Instant::now();
    let share = |lab: &Lab| {
        exchange(lab, (0..40).map(|_| get("/", "")).collect())
            .iter()
            .filter(|a| a.body == "real2")
            .count()
    };
    let early = share(&lab);
    assert!(
        up_at.elapsed() < Duration::from_millis(1500),
        "the first requests took too long to be early"
    );
    assert!(
        early <= 12,
        "web2 took {early} of 40 just after coming back"
    );
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(up_at.elapsed()) + Duration::from_millis(200),
    );
    let late = share(&lab);
    eprintln!("slowstart: web2 took {early} of 40 at once, {late} of 40 after the ramp");
    assert!(
        (16..=24).contains(&late),
        "web2 took {late} of 40 after slowstart"
    );
}

/// A backend's `http_request` redirect and deny rules apply once the backend is chosen (they
/// were accepted and then ignored), and answering rules apply in the order written, as
/// HAProxy evaluates `http-request` rules: a redirect written before a deny wins for the
/// requests both match.
#[test]
fn backend_rules_answer_in_the_order_written() {
    require_root();
    let lab = balancer_with_reals("l7brules", 1).build().expect("lab");
    let apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1]);
    let (_agent, _bpf_dir) = start(
        &lab,
        &format!(
            "[[frontend]]\nname = \"www\"\nbind = [\"{FRONTEND}\"]\ndefault_backend = \"app\"\n\n\
             [[backend]]\nname = \"app\"\n\
             acls = [\"old path_beg /old\", \"admin path_beg /admin\"]\n\
             http_request = [\"deny deny_status 429 if admin\", \
             \"redirect prefix https://new.example if old\", \"deny if old\"]\n\
             servers = [{{ name = \"web1\", addr = \"{}:80\" }}]\n",
            real_addr(1)
        ),
    );
    let answers = exchange(
        &lab,
        vec![get("/admin/users", ""), get("/old/a", ""), get("/", "")],
    );
    assert_eq!(answers[0].status, 429, "the backend's deny");
    assert_eq!(
        answers[1].status, 302,
        "the redirect, written before the deny"
    );
    assert_eq!(
        answers[1].header("location"),
        Some("https://new.example/old/a")
    );
    assert_eq!(answers[2].status, 200);
    let forwarded: usize = apps.iter().map(|a| a.requests()).sum();
    assert_eq!(
        forwarded, 1,
        "only the request no rule answered reached the server"
    );
}

/// CPU ticks (user + system) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces): utime and stime are the 12th
    // and 13th.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Out of file descriptors, a listener pauses before accepting again (nginx and HAProxy do
/// the same) instead of retrying at once: with the agent's limit lowered just above what it
/// holds, 100 clients connect, about 20 are accepted, the rest wait in the kernel's queue,
/// and the agent stays nearly idle (before, it spun on EMFILE at a whole core). Once they
/// close, it serves again.
#[test]
fn running_out_of_descriptors_pauses_accepting_instead_of_spinning() {
    require_root();
    let lab = balancer_with_reals("l7emfile", 1).build().expect("lab");
    let _apps = spawn_apps(&lab, &[1]);
    warm_up(&lab, &[1]);
    let (agent, _bpf_dir) = start(
        &lab,
        &format!(
            "[[listen]]\nname = \"app\"\nbind = [\"{FRONTEND}\"]\n{}",
            servers(&[1], "")
        ),
    );
    let pid = agent.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .count();
    let limit = format!("--nofile={}:{}", open + 20, open + 20);
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &limit])
        .status()
        .expect("prlimit");
    assert!(lowered.success(), "prlimit");
    let holding = lab
        .host("client")
        .spawn(|| async {
            let mut streams = Vec::new();
            for _ in 0..100 {
                let connect = TcpStream::connect(frontend());
                if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await
                {
                    streams.push(stream);
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            streams.len()
        })
        .expect("clients");
    std::thread::sleep(Duration::from_millis(1000));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks(pid) - before;
    let connected = holding.join().expect("clients thread");
    assert_eq!(connected, 100, "the kernel queued every connection");
    // 100 ticks a second is one whole core.
    assert!(
        used < 30,
        "the agent used {used} ticks in one second while out of descriptors"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(one(&lab, get("/", "")).status, 200, "serving again");
}
