//! Netns lab: the proxy in `mode tcp`, laid out as the seed's Kubernetes API server balancer
//! (three servers on 6443 with checks): connections spread round robin, half-closes pass in
//! both directions with the other direction still open, and a server that dies is detected
//! and avoided by new connections. Needs root.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir, wait_for_checked_up, wait_for_health},
    netns::Lab,
    require_root,
    topology::{balancer_with_reals, real_addr},
    traffic::{line_echo_server, serve_connections, who_answers},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

const API: &str = "10.0.1.1:6443";
const HALF: &str = "10.0.1.1:7000";

fn ask(lab: &Lab, addr: &'static str) -> Option<String> {
    lab.host("client")
        .spawn(move || async move {
            who_answers(addr.parse().expect("addr"), Duration::from_secs(2)).await
        })
        .expect("client")
        .join()
        .expect("client thread")
}

#[test]
fn apiserver_layout_half_close_and_server_death() {
    require_root();
    let lab = balancer_with_reals("tcpmode", 3).build().expect("lab");
    for i in 1..=3 {
        // real3's server stops after 3 s: its listener goes and connections are refused.
        let lifetime = Duration::from_secs(if i == 3 { 3 } else { 120 });
        lab.host(&format!("real{i}"))
            .spawn(move || async move {
                let listener = TcpListener::bind("0.0.0.0:6443").await.expect("bind");
                line_echo_server(listener, format!("real{i}"), lifetime).await;
            })
            .expect("server");
    }
    // On real1:7000, a server that half-closes in both orders: it answers what it read once
    // the client ended its side, and counts bytes arriving after its own side ended.
    let late = Arc::new(AtomicUsize::new(0));
    let late_seen = late.clone();
    lab.host("real1")
        .spawn(move || async move {
            let listener = TcpListener::bind("0.0.0.0:7000").await.expect("bind");
            // First connection: read to the client's FIN, then answer and close.
            let (mut first, _) = listener.accept().await.expect("accept");
            let mut got = Vec::new();
            first.read_to_end(&mut got).await.expect("read");
            first
                .write_all(format!("read {}", got.len()).as_bytes())
                .await
                .expect("write");
            drop(first);
            // Second connection: say bye and end our side first, then count what comes.
            let (mut second, _) = listener.accept().await.expect("accept");
            second.write_all(b"bye").await.expect("write");
            second.shutdown().await.expect("shutdown");
            let mut rest = Vec::new();
            second.read_to_end(&mut rest).await.expect("read");
            late_seen.store(rest.len(), Ordering::SeqCst);
        })
        .expect("half-close server");

    // Warm the neighbour entries: the first SYN across a fresh lab waits a second for them,
    // longer than the checks' timeout.
    lab.host("lb")
        .spawn(|| async {
            for i in 1..=3 {
                let _ = TcpStream::connect((real_addr(i).as_str(), 6443)).await;
            }
        })
        .expect("warm up")
        .join()
        .expect("warm up");
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[defaults]\nmode = \"tcp\"\ntimeout = {{ connect = \"2s\", client = \"30s\", server = \"30s\" }}\n\n\
         [[listen]]\nname = \"apiserver\"\nbind = [\"{API}\"]\nbalance = \"roundrobin\"\n\
         servers = [{{ name = \"m1\", addr = \"{}:6443\" }}, {{ name = \"m2\", addr = \"{}:6443\" }}, {{ name = \"m3\", addr = \"{}:6443\" }}]\n\
         check = {{ kind = \"tcp\", inter = \"200ms\", timeout = \"150ms\", rise = 1, fall = 2 }}\n\n\
         [[listen]]\nname = \"half\"\nbind = [\"{HALF}\"]\nservers = [{{ name = \"h1\", addr = \"{}:7000\", check = false }}]\n",
        bpf_dir.display(),
        real_addr(1),
        real_addr(2),
        real_addr(3),
        real_addr(1)
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    let status = lb::agent::health_status_path(&bpf_dir);
    for server in ["m1", "m2", "m3"] {
        wait_for_checked_up(&status, server, Duration::from_secs(5)).expect("up");
    }

    // Round robin over the three API servers, one server per connection.
    let mut seen: Vec<String> = (0..6).map(|_| ask(&lab, API).expect("an answer")).collect();
    seen.sort();
    assert_eq!(seen, ["real1", "real1", "real2", "real2", "real3", "real3"]);

    // Half-close, client first: the server reads to our FIN and still answers.
    let (answer, late_bytes) = lab
        .host("client")
        .spawn(|| async {
            let half: SocketAddr = HALF.parse().expect("addr");
            let mut stream = TcpStream::connect(half).await?;
            stream.write_all(b"hello").await?;
            stream.shutdown().await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            // Server first: it ends its side, we read to its FIN and still send.
            let mut stream = TcpStream::connect(half).await?;
            let mut bye = Vec::new();
            stream.read_to_end(&mut bye).await?;
            anyhow::ensure!(bye == b"bye", "got {bye:?}");
            stream.write_all(b"late data").await?;
            stream.shutdown().await?;
            anyhow::Ok((answer, 9))
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("half-close exchanges");
    assert_eq!(answer, "read 5");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while late.load(Ordering::SeqCst) != late_bytes && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        late.load(Ordering::SeqCst),
        late_bytes,
        "bytes after the server's FIN"
    );

    // real3's server is gone: detected, and new connections avoid it.
    wait_for_health(&status, "m3", "DOWN", Duration::from_secs(5)).expect("m3 down");
    for _ in 0..6 {
        let who = ask(&lab, API).expect("an answer");
        assert_ne!(who, "real3");
    }
}

/// `balance rdp-cookie`: an RDP client's first packet (`Cookie: mstshash=USER`) decides the
/// server, so a user's reconnections land on the same one; the packet still reaches it.
#[test]
fn rdp_cookie_keeps_each_user_on_one_server() {
    require_root();
    let lab = balancer_with_reals("rdp", 3).build().expect("lab");
    for i in 1..=3 {
        // A terminal server stand-in: reads the client's bytes up to the first line end and
        // answers its name and what it read (the RDP packet is not text, so no line reader).
        lab.host(&format!("real{i}"))
            .spawn(move || async move {
                let listener = TcpListener::bind("0.0.0.0:3389").await.expect("bind");
                serve_connections(listener, Duration::from_secs(60), |mut stream| async move {
                    let mut got = Vec::new();
                    let mut byte = [0u8; 1];
                    while !got.ends_with(b"\n") {
                        if stream.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        got.push(byte[0]);
                    }
                    let reply = format!("real{i}:{}\n", String::from_utf8_lossy(&got).trim_end());
                    let _ = stream.write_all(reply.as_bytes()).await;
                })
                .await;
            })
            .expect("server");
    }
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[[listen]]\nname = \"rdp\"\nmode = \"tcp\"\nbind = [\"10.0.1.1:3389\"]\n\
         balance = \"rdp-cookie\"\n\
         servers = [{{ name = \"t1\", addr = \"{}:3389\" }}, {{ name = \"t2\", addr = \"{}:3389\" }}, {{ name = \"t3\", addr = \"{}:3389\" }}]\n",
        bpf_dir.display(),
        real_addr(1),
        real_addr(2),
        real_addr(3)
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    std::thread::sleep(Duration::from_millis(500));
    let users = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    let answers = lab
        .host("client")
        .spawn(move || async move {
            let mut answers = Vec::new();
            for user in users {
                for _ in 0..3 {
                    let mut stream = TcpStream::connect("10.0.1.1:3389").await?;
                    // An X.224 Connection Request in a TPKT, with the routing cookie.
                    let cookie = format!("Cookie: mstshash={user}\r\n");
                    let length = (11 + cookie.len() + 8) as u16;
                    let mut packet = vec![0x03, 0x00];
                    packet.extend_from_slice(&length.to_be_bytes());
                    packet.extend_from_slice(&[(length - 5) as u8, 0xe0, 0, 0, 0, 0, 0]);
                    packet.extend_from_slice(cookie.as_bytes());
                    packet.extend_from_slice(&[0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00]);
                    stream.write_all(&packet).await?;
                    let mut reply = Vec::new();
                    let mut byte = [0u8; 1];
                    while !reply.ends_with(b"\n") {
                        stream.read_exact(&mut byte).await?;
                        reply.push(byte[0]);
                    }
                    let reply = String::from_utf8_lossy(&reply).into_owned();
                    // The server got the whole cookie line: it echoes it after its name.
                    anyhow::ensure!(reply.contains(&format!("mstshash={user}")), "{reply}");
                    let name = reply.split(':').next().unwrap_or_default().to_string();
                    answers.push((user, name));
                }
            }
            anyhow::Ok(answers)
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("RDP connections");
    let mut servers = std::collections::BTreeSet::new();
    for user in users {
        let seen: std::collections::BTreeSet<&String> = answers
            .iter()
            .filter(|(u, _)| *u == user)
            .map(|(_, s)| s)
            .collect();
        assert_eq!(seen.len(), 1, "{user} went to {seen:?}");
        servers.extend(seen.into_iter().cloned());
    }
    assert!(servers.len() >= 2, "eight users all on {servers:?}");
}
