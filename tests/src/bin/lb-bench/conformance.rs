//! `cargo xtask bench conformance`: the request-path conformance table
//! (`lb_tests::conformance`) against lb, HAProxy and nginx side by side, each in front of the
//! same recording server, so where they differ shows row by row; then the HTTP/2 bomb shape's
//! memory per stream (1,000 HPACK-indexed one-byte cookie fields, the client's window at 0).
//! Prints; asserts nothing about the yardsticks (lb's own rows are asserted by the lab test).

use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use lb_tests::{
    agent::{lb_binary, unique_bpf_dir},
    conformance::{self, Outcome, Recorder},
    h2raw,
    netns::{Lab, LabSpec},
};
use tokio::net::{TcpListener, TcpStream};

use crate::l7::Proxy;

const H1: &str = "127.0.0.1:8080";
const H2: &str = "127.0.0.1:8081";
const RECORDER: &str = "127.0.0.1:9000";
/// Bomb connections and streams per connection.
const BOMB_CONNECTIONS: usize = 10;
const BOMB_STREAMS: usize = 100;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("address")
}

/// Starts `proxy` with the table's frontend (ACLs, deny rule, tenants backend); its pid.
fn start(lab: &Lab, proxy: Proxy, dir: &Path) -> anyhow::Result<u32> {
    let mut command = match proxy {
        Proxy::Lb => {
            let bpf_dir = unique_bpf_dir();
            let config = format!(
                "[global]\nbpf_dir = \"{}\"\n\n{}",
                bpf_dir.display(),
                conformance::lb_config(addr(H1), addr(H2), addr(RECORDER))
            );
            std::mem::forget(bpf_dir);
            let file = dir.join("lb.toml");
            std::fs::write(&file, config)?;
            let mut command = lab.host("lb").command(lb_binary()?)?;
            command.arg("run").arg("-c").arg(file);
            command
        }
        Proxy::Haproxy => {
            let config = format!(
                "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  \
                 timeout server 30s\n  option http-keep-alive\n\
                 frontend fe\n  bind {H1}\n  bind {H2} proto h2\n  acl is_adm path_beg /adm\n  \
                 acl good_host hdr(host) -i public.example\n  acl tenant hdr(x-tenant) blue\n  \
                 http-request deny if is_adm !good_host\n  use_backend tenants if tenant\n  default_backend rec\n\
                 backend rec\n  server r {RECORDER}\nbackend tenants\n  server t {RECORDER}\n"
            );
            let file = dir.join("haproxy.cfg");
            std::fs::write(&file, config)?;
            let mut command = lab.host("lb").command("haproxy")?;
            command.arg("-db").arg("-f").arg(file);
            command
        }
        Proxy::Nginx => {
            let config = format!(
                "worker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n access_log off;\n client_body_temp_path {dir}; proxy_temp_path {dir};\n\
                 fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
                 upstream rec {{ server {RECORDER}; keepalive 16; }}\n\
                 server {{\n  listen {H1};\n  listen {H2} http2;\n\
                 location /adm {{ if ($host != public.example) {{ return 403; }} proxy_pass http://rec; \
                 proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n\
                 location / {{ proxy_pass http://rec; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n }}\n}}\n",
                dir = dir.display()
            );
            let file = dir.join("nginx.conf");
            std::fs::write(&file, config)?;
            let mut command = lab.host("lb").command("nginx")?;
            command.args(["-g", "daemon off;", "-c"]).arg(file);
            command
        }
    };
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let pid = lab.start(command)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = lab
            .host("lb")
            .in_netns(|_| async { Ok(TcpStream::connect(addr(H1)).await.is_ok()) })?;
        if up {
            return Ok(pid);
        }
        if Instant::now() > deadline {
            bail!("{} never listened on {H1}", proxy.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cell of the table: the statuses and the request lines the server saw.
fn cell(outcome: &Outcome) -> String {
    let statuses: Vec<String> = outcome.statuses.iter().map(u16::to_string).collect();
    let seen = outcome.request_lines();
    format!(
        "{} {}",
        if statuses.is_empty() {
            "-".to_string()
        } else {
            statuses.join(",")
        },
        if seen.is_empty() { "-" } else { &seen }
    )
}

/// Memory per bomb stream: RSS growth of `pid` over 10 connections x 100 streams, KiB.
fn bomb_memory(lab: &Lab, pid: u32) -> anyhow::Result<f64> {
    let before = crate::l7::tree_rss(pid);
    let (tx, rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = lab.host("lb").spawn(move || async move {
        let mut held = Vec::new();
        for _ in 0..BOMB_CONNECTIONS {
            let Ok(mut stream) = TcpStream::connect(addr(H2)).await else {
                continue;
            };
            let mut out = h2raw::PREFACE.to_vec();
            out.extend_from_slice(&h2raw::settings(&[(
                h2raw::SETTINGS_INITIAL_WINDOW_SIZE,
                0,
            )]));
            for s in 0..BOMB_STREAMS {
                let block = conformance::bomb_block(1000);
                out.extend_from_slice(&h2raw::frame(
                    h2raw::HEADERS,
                    h2raw::END_HEADERS | h2raw::END_STREAM,
                    1 + 2 * s as u32,
                    &block.0,
                ));
            }
            let _ = tokio::io::AsyncWriteExt::write_all(&mut stream, &out).await;
            held.push(stream);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let _ = tx.send(());
        // Hold until measured.
        let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
        drop(held);
    })?;
    rx.recv_timeout(Duration::from_secs(30))
        .context("bomb connections")?;
    let after = crate::l7::tree_rss(pid);
    let _ = release_tx.send(());
    let _ = holder.join();
    Ok((after - before) * 1024.0 / (BOMB_CONNECTIONS * BOMB_STREAMS) as f64)
}

pub fn conformance() -> anyhow::Result<()> {
    let vectors = conformance::vectors();
    let mut columns: Vec<Vec<String>> = Vec::new();
    let mut memory = Vec::new();
    for proxy in [Proxy::Lb, Proxy::Haproxy, Proxy::Nginx] {
        let lab = LabSpec::new("conformbench").host("lb").build()?;
        let dir = tempfile::tempdir()?;
        let recorder = Recorder::default();
        let serving = recorder.clone();
        lab.host("lb").spawn(move || async move {
            if let Ok(listener) = TcpListener::bind(RECORDER).await {
                serving.serve(listener, Duration::from_secs(600)).await;
            }
        })?;
        let pid = start(&lab, proxy, dir.path())?;
        let rows = vectors.clone();
        let cells: Vec<(String, bool)> = lab.host("lb").in_netns(move |_| async move {
            let mut cells = Vec::new();
            for vector in &rows {
                let outcome =
                    conformance::run_vector(vector, addr(H1), addr(H2), &recorder).await?;
                cells.push((cell(&outcome), outcome.matches(vector)));
            }
            Ok(cells)
        })?;
        columns.push(
            cells
                .into_iter()
                .map(|(c, m)| format!("{}{c}", if m { "" } else { "*" }))
                .collect(),
        );
        memory.push(bomb_memory(&lab, pid)?);
    }
    println!(
        "Request-path conformance: status(es) the client got, then the request lines the server saw;\n\
         * marks a cell that differs from lb's expectation (RFC-based, see `why` in tests/src/conformance.rs)\n"
    );
    println!(
        "{:<62} {:>3}  {:<28} {:<28} {:<28}",
        "row", "def", "lb", "haproxy", "nginx"
    );
    for (i, vector) in vectors.iter().enumerate() {
        let short = |s: &str| -> String { s.chars().take(28).collect() };
        println!(
            "{:<62} {:>3}  {:<28} {:<28} {:<28}",
            vector.name.chars().take(62).collect::<String>(),
            vector.defect,
            short(&columns[0][i]),
            short(&columns[1][i]),
            short(&columns[2][i]),
        );
    }
    let differing = |c: &Vec<String>| c.iter().filter(|x| x.starts_with('*')).count();
    println!(
        "\nrows: {}; differing from the expectation: lb {}, haproxy {}, nginx {}",
        vectors.len(),
        differing(&columns[0]),
        differing(&columns[1]),
        differing(&columns[2])
    );
    println!(
        "\nHTTP/2 bomb shape ({BOMB_CONNECTIONS} connections x {BOMB_STREAMS} streams, 1,000 indexed cookie fields each, window 0):\n\
         memory per stream, KiB: lb {:.1}, haproxy {:.1}, nginx {:.1}; lb / haproxy {}, lb / nginx {}",
        memory[0],
        memory[1],
        memory[2],
        ratio(memory[0], memory[1]),
        ratio(memory[0], memory[2])
    );
    Ok(())
}

/// `a / b`, or why there is none: a yardstick that grew by less than 0.1 KiB per stream
/// (HAProxy closes such connections) gives no meaningful ratio.
fn ratio(a: f64, b: f64) -> String {
    if b < 0.1 {
        "n/a (the yardstick kept nothing)".to_string()
    } else {
        format!("{:.2}", a / b)
    }
}
