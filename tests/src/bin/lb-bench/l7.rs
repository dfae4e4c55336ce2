//! `cargo xtask bench l7`: lb's HTTP proxy next to HAProxy (`nbthread 1`) and nginx
//! (`worker_processes 1`) in the same lab, one after another, with the same backend (nginx on
//! real1) and the same client (wrk on the client host). Per load: requests per second,
//! p50/p99 latency, CPU seconds the proxy process spent per 100,000 requests, and its RSS;
//! then the memory of idle keep-alive connections. Each figure also as a ratio to HAProxy's.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail, ensure};
use lb_tests::{
    agent::{lb_binary, unique_bpf_dir},
    daemons::nginx_backend,
    netns::Lab,
    topology::{balancer_with_reals, real_addr},
    traffic::{bulk_download, bulk_server},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const FRONTEND: &str = "10.0.1.1:8080";
const FRONTEND_TLS: &str = "10.0.1.1:8443";
/// TCP-mode frontend for the bulk row, in front of a bulk sender on real1:9000.
const FRONTEND_TCP: &str = "10.0.1.1:9000";
/// Bulk row: connections, each this many bytes.
const BULK_CONNECTIONS: u64 = 4;
const BULK_BYTES: u64 = 512 << 20;
const SECONDS: u32 = 8;
const CONNECTIONS: u32 = 50;
/// Streams in flight per HTTP/2 connection (h2load -m).
const H2_STREAMS: u32 = 10;
/// Idle connections held open for the memory row. HAProxy's maxconn must stay under this
/// machine's file limit (20,000; HAProxy needs two per connection plus spares).
const IDLE: usize = 5000;

/// The proxies compared (the conformance bench runs the same three).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Proxy {
    Lb,
    Haproxy,
    Nginx,
}

impl Proxy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proxy::Lb => "lb",
            Proxy::Haproxy => "haproxy",
            Proxy::Nginx => "nginx",
        }
    }
}

struct Load {
    name: &'static str,
    path: &'static str,
    close: bool,
    tls: bool,
}

const LOADS: [Load; 5] = [
    Load {
        name: "small, keep-alive",
        path: "/",
        close: false,
        tls: false,
    },
    Load {
        name: "small, Connection: close",
        path: "/",
        close: true,
        tls: false,
    },
    Load {
        name: "64 KiB, keep-alive",
        path: "/64k",
        close: false,
        tls: false,
    },
    Load {
        name: "HTTPS small, keep-alive",
        path: "/",
        close: false,
        tls: true,
    },
    Load {
        name: "HTTPS handshake per request",
        path: "/",
        close: true,
        tls: true,
    },
];

/// Writes a self-signed ECDSA certificate and its key into one PEM file (what all three
/// proxies accept) and returns its path.
fn certificate(dir: &Path) -> anyhow::Result<PathBuf> {
    let key = rcgen::KeyPair::generate()?;
    let cert =
        rcgen::CertificateParams::new(vec!["bench.example".to_string()])?.self_signed(&key)?;
    write(
        dir,
        "bench.pem",
        &format!("{}{}", cert.pem(), key.serialize_pem()),
    )
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_per_100k: f64,
    rss_mib: f64,
}

/// CPU seconds (user + system) of `pid` and its children.
fn tree_cpu(pid: u32) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for p in tree(pid) {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .with_context(|| format!("reading /proc/{p}/stat"))?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / 100.0;
    }
    Ok(total)
}

/// Resident memory of `pid` and its children, MiB.
pub(crate) fn tree_rss(pid: u32) -> f64 {
    tree(pid)
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .sum::<f64>()
        / 1024.0
}

fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        pids.extend(tree(child));
    }
    pids
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Starts `proxy` on the balancer; returns its pid.
fn start_proxy(lab: &Lab, proxy: Proxy, dir: &Path, pem: &Path) -> anyhow::Result<u32> {
    let backend = format!("{}:80", real_addr(1));
    let bulk = format!("{}:9000", real_addr(1));
    let pem = pem.display();
    let mut command = match proxy {
        Proxy::Lb => {
            let bpf_dir = unique_bpf_dir();
            let config = format!(
                "[global]\nbpf_dir = \"{}\"\nthreads = 1\n\n[defaults]\nlog = \"none\"\nmaxconn = 9000\n\n\
                 [[listen]]\nname = \"bench\"\nbind = [\"{FRONTEND}\", \"{FRONTEND_TLS} ssl crt {pem}\"]\n\
                 servers = [{{ name = \"b1\", addr = \"{backend}\" }}]\n\n\
                 [[listen]]\nname = \"bulk\"\nmode = \"tcp\"\nbind = [\"{FRONTEND_TCP}\"]\n\
                 servers = [{{ name = \"b1\", addr = \"{bulk}\" }}]\n",
                bpf_dir.display()
            );
            // The pins go with the lab; keep the guard's directory for the agent's lifetime.
            std::mem::forget(bpf_dir);
            let file = write(dir, "lb.toml", &config)?;
            let mut command = lab.host("lb").command(lb_binary()?)?;
            command.arg("run").arg("-c").arg(file);
            command
        }
        Proxy::Haproxy => {
            let config = format!(
                "global\n  nbthread 1\n  maxconn 9000\ndefaults\n  mode http\n  timeout connect 5s\n  \
                 timeout client 60s\n  timeout server 60s\n  option http-keep-alive\n\
                 frontend fe\n  bind {FRONTEND}\n  bind {FRONTEND_TLS} ssl crt {pem} alpn h2,http/1.1\n  default_backend be\nbackend be\n  server b1 {backend}\n\
                 listen bulk\n  mode tcp\n  bind {FRONTEND_TCP}\n  server b1 {bulk}\n"
            );
            let file = write(dir, "haproxy.cfg", &config)?;
            let mut command = lab.host("lb").command("haproxy")?;
            command.arg("-db").arg("-f").arg(file);
            command
        }
        Proxy::Nginx => {
            let config = format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
                 worker_processes 1;\npid {dir}/proxy.pid;\nerror_log {dir}/proxy-error.log;\n\
                 worker_rlimit_nofile 20000;\nevents {{ worker_connections 9000; }}\n\
                 http {{\n access_log off;\n keepalive_requests 1000000;\n keepalive_timeout 60s;\n\
                 client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};\n\
                 uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
                 upstream be {{ server {backend}; keepalive 64; }}\n\
                 server {{\n  listen {FRONTEND};\n  listen {FRONTEND_TLS} ssl http2;\n  ssl_certificate {pem};\n  ssl_certificate_key {pem};\n  location / {{ proxy_pass http://be; \
                 proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n }}\n}}\n\
                 stream {{\n server {{ listen {FRONTEND_TCP}; proxy_pass {bulk}; }}\n}}\n",
                dir = dir.display()
            );
            let file = write(dir, "nginx-proxy.conf", &config)?;
            let mut command = lab.host("lb").command("nginx")?;
            command.args(["-g", "daemon off;", "-c"]).arg(file);
            command
        }
    };
    command.stdout(Stdio::null()).stderr(Stdio::null());
    let pid = lab
        .start(command)
        .with_context(|| format!("starting {}", proxy.name()))?;
    // Ready once it answers.
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(50));
        let answered = lab
            .host("client")
            .spawn(|| async { get_once(FRONTEND.parse().expect("addr")).await })?
            .join()
            .map_err(|_| anyhow::anyhow!("probe panicked"))?;
        if answered.is_ok() {
            return Ok(pid);
        }
    }
    bail!("{} never answered on {FRONTEND}", proxy.name())
}

async fn get_once(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    ensure!(answer.starts_with(b"HTTP/1.1 200"), "not a 200");
    Ok(())
}

/// Runs wrk from the client; returns (requests, requests/s, p50 ms, p99 ms).
fn wrk(lab: &Lab, load: &Load, seconds: u32) -> anyhow::Result<(f64, f64, f64, f64)> {
    let mut command = lab.host("client").command("wrk")?;
    command.args([
        "-t1".to_string(),
        format!("-c{CONNECTIONS}"),
        format!("-d{seconds}s"),
        "--latency".to_string(),
    ]);
    if load.close {
        command.args(["-H", "Connection: close"]);
    }
    if load.tls {
        command.arg(format!("https://{FRONTEND_TLS}{}", load.path));
    } else {
        command.arg(format!("http://{FRONTEND}{}", load.path));
    }
    let output = command
        .output()
        .context("running wrk (run `cargo xtask setup`)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(output.status.success(), "wrk failed: {text}");
    ensure!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors: {text}"
    );
    let requests: f64 = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no request count in {text}"))?;
    let rps: f64 = text
        .lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no Requests/sec in {text}"))?;
    let percentile = |p: &str| -> anyhow::Result<f64> {
        let value = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(p))
            .and_then(|l| l.split_whitespace().nth(1))
            .with_context(|| format!("no {p} latency in {text}"))?;
        let (number, unit) = value.split_at(
            value
                .find(|c: char| c.is_alphabetic())
                .unwrap_or(value.len()),
        );
        let number: f64 = number.parse()?;
        Ok(match unit {
            "us" => number / 1000.0,
            "ms" => number,
            "s" => number * 1000.0,
            other => bail!("latency unit `{other}`"),
        })
    };
    Ok((requests, rps, percentile("50%")?, percentile("99%")?))
}

/// Opens `count` connections, sends a request on each and keeps them open; returns the
/// proxy's RSS growth per connection in KiB.
fn idle_memory(lab: &Lab, pid: u32, count: usize) -> anyhow::Result<f64> {
    let before = tree_rss(pid);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let client = lab.host("client").spawn(move || async move {
        let mut streams = Vec::with_capacity(count);
        for _ in 0..count {
            let mut stream = TcpStream::connect(FRONTEND).await?;
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                .await?;
            streams.push(stream);
        }
        for stream in &mut streams {
            let mut buffer = [0u8; 512];
            let _ = stream.read(&mut buffer).await?;
        }
        let _ = ready_tx.send(());
        let _ = release_rx.await;
        anyhow::Ok(())
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .context("idle connections were not all answered")?;
    std::thread::sleep(Duration::from_secs(1));
    let after = tree_rss(pid);
    let _ = release_tx.send(());
    client
        .join()
        .map_err(|_| anyhow::anyhow!("idle client panicked"))??;
    Ok((after - before) * 1024.0 / count as f64)
}

/// CPU seconds the proxy spends per GB copied in TCP mode (nginx: its stream module).
fn bulk_cpu_per_gb(lab: &Lab, proxy: Proxy, pid: u32) -> anyhow::Result<f64> {
    let cpu = tree_cpu(pid)?;
    let got = lab
        .host("client")
        .spawn(|| async {
            let mut total = 0;
            for _ in 0..BULK_CONNECTIONS {
                total += bulk_download(FRONTEND_TCP.parse().expect("addr")).await?;
            }
            anyhow::Ok(total)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("bulk client panicked"))??;
    ensure!(
        got == BULK_CONNECTIONS * BULK_BYTES,
        "{} copied {got} bytes of {}",
        proxy.name(),
        BULK_CONNECTIONS * BULK_BYTES
    );
    Ok((tree_cpu(pid)? - cpu) * (1u64 << 30) as f64 / got as f64)
}

/// h2load over TLS (ALPN h2): `H2_STREAMS` streams in flight on each of `CONNECTIONS`
/// connections for `SECONDS`; every request must succeed. Returns (requests, requests/s,
/// mean latency ms).
fn h2load(lab: &Lab) -> anyhow::Result<(f64, f64, f64)> {
    let output = lab
        .host("client")
        .command("h2load")?
        .args([
            "-t1".to_string(),
            format!("-c{CONNECTIONS}"),
            format!("-m{H2_STREAMS}"),
            format!("-D{SECONDS}"),
            format!("https://{FRONTEND_TLS}/"),
        ])
        .output()
        .context("running h2load (run `cargo xtask setup`)")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(output.status.success(), "h2load failed: {text}");
    ensure!(
        text.contains("Application protocol: h2"),
        "h2load did not speak HTTP/2: {text}"
    );
    // "requests: 1000 total, 1000 started, 1000 done, 1000 succeeded, 0 failed, 0 errored, 0 timeout"
    let counts = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .with_context(|| format!("no request counts in {text}"))?;
    let count = |word: &str| -> Option<f64> {
        let words: Vec<&str> = counts.split([' ', ',']).filter(|w| !w.is_empty()).collect();
        words
            .windows(2)
            .find(|w| w[1] == word)
            .and_then(|w| w[0].parse().ok())
    };
    let done = count("succeeded").with_context(|| format!("no succeeded count in {counts}"))?;
    ensure!(
        count("failed") == Some(0.0) && count("errored") == Some(0.0),
        "h2load saw failures: {counts}"
    );
    let status_2xx = text
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse::<f64>().ok())
        .with_context(|| format!("no status codes in {text}"))?;
    ensure!(status_2xx == done, "h2load saw non-2xx answers: {text}");
    // "finished in 8.00s, 12345.67 req/s, 1.23MB/s"
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no req/s in {text}"))?;
    // "time for request:   1.2ms   30.1ms   4.5ms   2.1ms   80.00%" (min max mean sd)
    let mean = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("time for request:"))
        .and_then(|l| l.split_whitespace().nth(5))
        .with_context(|| format!("no request time in {text}"))?;
    let (number, unit) =
        mean.split_at(mean.find(|c: char| c.is_alphabetic()).unwrap_or(mean.len()));
    let number: f64 = number.parse()?;
    let mean_ms = match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        other => bail!("h2load time unit `{other}`"),
    };
    Ok((done, rps, mean_ms))
}

/// What one proxy measured: the wrk rows, idle KiB per connection, TCP CPU-s per GB, and the
/// HTTP/2 row (p50 holds h2load's mean).
struct Measured {
    rows: Vec<Figures>,
    idle_kib: f64,
    bulk_cpu_per_gb: f64,
    h2: Figures,
}

fn measure(lab: &Lab, proxy: Proxy, dir: &Path, pem: &Path) -> anyhow::Result<Measured> {
    let pid = start_proxy(lab, proxy, dir, pem)?;
    // Warm-up: connections, pools, caches.
    wrk(lab, &LOADS[0], 2)?;
    let idle = idle_memory(lab, pid, IDLE)?;
    let mut rows = Vec::new();
    for load in &LOADS {
        let cpu = tree_cpu(pid)?;
        let (requests, rps, p50, p99) = wrk(lab, load, SECONDS)?;
        let spent = tree_cpu(pid)? - cpu;
        rows.push(Figures {
            rps,
            p50_ms: p50,
            p99_ms: p99,
            cpu_per_100k: spent * 100_000.0 / requests,
            rss_mib: tree_rss(pid),
        });
    }
    let cpu = tree_cpu(pid)?;
    let (requests, rps, mean_ms) = h2load(lab)?;
    let h2 = Figures {
        rps,
        p50_ms: mean_ms,
        p99_ms: f64::NAN,
        cpu_per_100k: (tree_cpu(pid)? - cpu) * 100_000.0 / requests,
        rss_mib: tree_rss(pid),
    };
    let bulk = bulk_cpu_per_gb(lab, proxy, pid)?;
    // Stop it: the next proxy binds the same address.
    // SAFETY: plain kill(2) of a child this lab started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(500));
    Ok(Measured {
        rows,
        idle_kib: idle,
        bulk_cpu_per_gb: bulk,
        h2,
    })
}

pub fn l7() -> anyhow::Result<()> {
    for tool in ["wrk", "h2load", "haproxy", "nginx"] {
        if std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            bail!("{tool} is missing: run `cargo xtask setup`");
        }
    }
    let dir = tempfile::tempdir()?;
    let lab = balancer_with_reals("l7bench", 1).build()?;
    lab.host("real1").spawn(|| async {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:9000")
            .await
            .expect("bind the bulk sender");
        bulk_server(listener, BULK_BYTES, Duration::from_secs(1800)).await;
    })?;
    nginx_backend(
        &lab,
        "real1",
        &format!("{}:80", real_addr(1)),
        "hello from the backend\\n",
        dir.path(),
        false,
        None,
    )?;
    let pem = certificate(dir.path())?;
    let proxies = [Proxy::Lb, Proxy::Haproxy, Proxy::Nginx];
    let mut results = Vec::new();
    for proxy in proxies {
        results.push(measure(&lab, proxy, dir.path(), &pem)?);
    }
    let haproxy = &results[1];
    println!(
        "l7: wrk -t1 -c{CONNECTIONS} -d{SECONDS}s from the client host; one backend (nginx); proxies with one thread"
    );
    println!(
        "{:<28} {:<8} {:>9} {:>6} {:>8} {:>6} {:>8} {:>6} {:>10} {:>6} {:>8} {:>6}",
        "load",
        "proxy",
        "req/s",
        "/ha",
        "p50 ms",
        "/ha",
        "p99 ms",
        "/ha",
        "CPU-s/100k",
        "/ha",
        "RSS MiB",
        "/ha"
    );
    for (l, load) in LOADS.iter().enumerate() {
        for (p, proxy) in proxies.iter().enumerate() {
            let f = results[p].rows[l];
            let h = haproxy.rows[l];
            println!(
                "{:<28} {:<8} {:>9.0} {:>6.2} {:>8.2} {:>6.2} {:>8.2} {:>6.2} {:>10.2} {:>6.2} {:>8.1} {:>6.2}",
                load.name,
                proxy.name(),
                f.rps,
                f.rps / h.rps,
                f.p50_ms,
                f.p50_ms / h.p50_ms,
                f.p99_ms,
                f.p99_ms / h.p99_ms,
                f.cpu_per_100k,
                f.cpu_per_100k / h.cpu_per_100k,
                f.rss_mib,
                f.rss_mib / h.rss_mib
            );
        }
    }
    println!();
    println!(
        "HTTP/2 over TLS: h2load -t1 -c{CONNECTIONS} -m{H2_STREAMS} -D{SECONDS} (mean latency; h2load prints no percentiles)"
    );
    println!(
        "{:<8} {:>9} {:>6} {:>8} {:>6} {:>10} {:>6} {:>8} {:>6}",
        "proxy", "req/s", "/ha", "mean ms", "/ha", "CPU-s/100k", "/ha", "RSS MiB", "/ha"
    );
    for (p, proxy) in proxies.iter().enumerate() {
        let (f, h) = (results[p].h2, haproxy.h2);
        println!(
            "{:<8} {:>9.0} {:>6.2} {:>8.2} {:>6.2} {:>10.2} {:>6.2} {:>8.1} {:>6.2}",
            proxy.name(),
            f.rps,
            f.rps / h.rps,
            f.p50_ms,
            f.p50_ms / h.p50_ms,
            f.cpu_per_100k,
            f.cpu_per_100k / h.cpu_per_100k,
            f.rss_mib,
            f.rss_mib / h.rss_mib
        );
    }
    println!();
    println!("{IDLE} idle keep-alive connections (one request answered on each, then held):");
    for (p, proxy) in proxies.iter().enumerate() {
        println!(
            "{:<8} {:>8.1} KiB per connection   / haproxy {:>5.2}",
            proxy.name(),
            results[p].idle_kib,
            results[p].idle_kib / haproxy.idle_kib
        );
    }
    println!();
    println!(
        "TCP mode, {BULK_CONNECTIONS} x {} MiB downloads: proxy CPU-s per GB (nginx: stream module)",
        BULK_BYTES >> 20
    );
    for (p, proxy) in proxies.iter().enumerate() {
        println!(
            "{:<8} {:>8.3} CPU-s/GB   / haproxy {:>5.2}",
            proxy.name(),
            results[p].bulk_cpu_per_gb,
            results[p].bulk_cpu_per_gb / haproxy.bulk_cpu_per_gb
        );
    }
    println!(
        "targets: CPU per request and p99 no worse than HAProxy's; memory per idle connection no more"
    );
    Ok(())
}
