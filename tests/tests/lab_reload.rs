//! Netns lab: reloading the agent under load. wrk keeps HTTP/1.1 and HTTPS keep-alive traffic
//! on the proxy while 20 reloads add and remove servers, a backend with its routing rule, a
//! whole frontend (its listener opens and closes) and a TCP-mode server; one reload in the
//! middle carries a broken configuration. Expected: wrk sees no error and no non-2xx answer,
//! a TCP-mode tunnel opened before the reloads still carries data after them, the broken
//! configuration is refused with its file and line and changes nothing, health state of a
//! server that stayed is kept, and an added frontend serves while a removed one refuses.
//! Needs root.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir, wait_for_checked_up},
    daemons::nginx_backend,
    netns::Lab,
    require_root,
    topology::{balancer_with_reals, real_addr},
    traffic::{http_exchange, line_echo_server},
};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{TcpListener, TcpStream},
};

const SITE: &str = "10.0.1.1:8080";
const SITE_TLS: &str = "10.0.1.1:8443";
const EXTRA: &str = "10.0.1.1:9090";
const TUNNEL: &str = "10.0.1.1:7000";
const RELOADS: usize = 20;

/// The configuration of reload `step`: web1 always, web2 on even steps, web3 unless the step
/// is a multiple of 3; the `api` backend and its rule on odd steps; the `extra` frontend
/// when `step % 4` is 1 or 2; the tunnel's second server on even steps.
fn config(bpf_dir: &Path, pem: &Path, step: usize) -> String {
    let mut servers = vec![format!(
        "{{ name = \"web1\", addr = \"{}:80\" }}",
        real_addr(1)
    )];
    if step.is_multiple_of(2) {
        servers.push(format!(
            "{{ name = \"web2\", addr = \"{}:80\" }}",
            real_addr(2)
        ));
    }
    if !step.is_multiple_of(3) {
        servers.push(format!(
            "{{ name = \"web3\", addr = \"{}:80\" }}",
            real_addr(3)
        ));
    }
    let api = step % 2 == 1;
    let mut text = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[defaults]\nlog = \"none\"\noptions = [\"redispatch\"]\n\n\
         [[frontend]]\nname = \"site\"\nbind = [\"{SITE}\", \"{SITE_TLS} ssl crt {}\"]\ndefault_backend = \"web\"\n",
        bpf_dir.display(),
        pem.display()
    );
    if api {
        text.push_str("acls = [\"is_api path_beg /api\"]\nuse_backend = [\"api if is_api\"]\n");
    }
    text.push_str(&format!(
        "\n[[backend]]\nname = \"web\"\nbalance = \"roundrobin\"\nservers = [{}]\n\
         check = {{ kind = \"http\", path = \"/\", inter = \"1s\", timeout = \"1s\", rise = 1, fall = 3 }}\n",
        servers.join(", ")
    ));
    if api {
        text.push_str(&format!(
            "\n[[backend]]\nname = \"api\"\nservers = [{{ name = \"api1\", addr = \"{}:80\" }}]\n",
            real_addr(3)
        ));
    }
    if matches!(step % 4, 1 | 2) {
        text.push_str(&format!(
            "\n[[listen]]\nname = \"extra\"\nbind = [\"{EXTRA}\"]\nservers = [{{ name = \"x1\", addr = \"{}:80\" }}]\n",
            real_addr(2)
        ));
    }
    let mut tunnel = vec![format!(
        "{{ name = \"t1\", addr = \"{}:7000\" }}",
        real_addr(1)
    )];
    if step.is_multiple_of(2) {
        tunnel.push(format!(
            "{{ name = \"t2\", addr = \"{}:7000\" }}",
            real_addr(2)
        ));
    }
    text.push_str(&format!(
        "\n[[listen]]\nname = \"tunnel\"\nmode = \"tcp\"\nbind = [\"{TUNNEL}\"]\nbalance = \"first\"\n\
         timeout = {{ tunnel = \"60s\", client = \"60s\", server = \"60s\" }}\nservers = [{}]\n",
        tunnel.join(", ")
    ));
    text
}

fn certificate(dir: &Path) -> std::path::PathBuf {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["reload.example".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let path = dir.join("site.pem");
    std::fs::write(&path, format!("{}{}", cert.pem(), key.serialize_pem())).expect("write pem");
    path
}

/// GET / on `addr` from the client: the status, or the error.
fn get(lab: &Lab, addr: &'static str) -> anyhow::Result<u16> {
    lab.host("client")
        .spawn(move || async move {
            let addr: SocketAddr = addr.parse()?;
            let raw = b"GET / HTTP/1.1\r\nHost: site\r\nConnection: close\r\n\r\n";
            http_exchange(addr, raw).await.map(|(status, _)| status)
        })?
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))?
}

fn wrk(lab: &Lab, url: &str, seconds: u64) -> std::process::Child {
    lab.host("client")
        .command("wrk")
        .expect("wrk")
        .args(["-t1", "-c8", &format!("-d{seconds}s"), url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running wrk (cargo xtask setup installs it)")
}

fn wrk_result(child: std::process::Child) -> String {
    let output = child.wait_with_output().expect("wrk");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "wrk failed: {text}");
    text
}

/// nginx answering its name on real1..=3 port 80, and line servers on port 7000 of the first
/// `line_servers` reals.
fn start_servers(lab: &Lab, dir: &Path, line_servers: usize) {
    for i in 1..=3 {
        nginx_backend(
            lab,
            &format!("real{i}"),
            &format!("{}:80", real_addr(i)),
            &format!("real{i}"),
            dir,
            false,
            None,
        )
        .expect("nginx");
    }
    for i in 1..=line_servers {
        lab.host(&format!("real{i}"))
            .spawn(move || async move {
                let listener = TcpListener::bind("0.0.0.0:7000").await.expect("bind");
                line_echo_server(listener, format!("real{i}"), Duration::from_secs(120)).await;
            })
            .expect("line server");
    }
}

/// A TCP-mode tunnel through the proxy: it sends a line at once and another when told to;
/// the thread returns both answers.
fn open_tunnel(
    lab: &Lab,
) -> (
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<anyhow::Result<(String, String)>>,
) {
    let (go_on, resume) = std::sync::mpsc::channel::<()>();
    let tunnel = lab
        .host("client")
        .spawn(move || async move {
            let stream = TcpStream::connect(TUNNEL).await?;
            let (reader, mut writer) = stream.into_split();
            let mut lines = BufReader::new(reader).lines();
            writer.write_all(b"before\n").await?;
            let before = lines.next_line().await?.unwrap_or_default();
            // Nothing else runs on this thread: waiting here blocks nobody.
            let _ = resume.recv();
            writer.write_all(b"after\n").await?;
            let after = lines.next_line().await?.unwrap_or_default();
            anyhow::Ok((before, after))
        })
        .expect("tunnel client");
    (go_on, tunnel)
}

/// Has the tunnel send its second line and checks both answers came from real1.
fn close_tunnel(
    go_on: std::sync::mpsc::Sender<()>,
    tunnel: std::thread::JoinHandle<anyhow::Result<(String, String)>>,
    across: &str,
) {
    let _ = go_on.send(());
    let (before, after) = tunnel
        .join()
        .expect("tunnel thread")
        .expect("tunnel exchange");
    assert_eq!(before, "real1:before");
    assert_eq!(after, "real1:after", "the tunnel survived {across}");
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    require_root();
    let lab = balancer_with_reals("reload", 3).build().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = certificate(dir.path());
    start_servers(&lab, dir.path(), 2);
    let bpf_dir = unique_bpf_dir();
    let agent = RunningAgent::start(
        &lab,
        lab.host("lb"),
        &config(&bpf_dir, &pem, 0),
        &bpf_dir,
        &[],
    )
    .expect("agent");
    let status = lb::agent::health_status_path(&bpf_dir);
    for server in ["web1", "web2"] {
        wait_for_checked_up(&status, server, Duration::from_secs(5)).expect("up");
    }
    let started = Instant::now();

    // A TCP-mode tunnel opened before the reloads, used again after them.
    let (go_on, tunnel) = open_tunnel(&lab);

    let seconds = 10;
    let plain = wrk(&lab, &format!("http://{SITE}/"), seconds);
    let tls = wrk(&lab, &format!("https://{SITE_TLS}/"), seconds);
    std::thread::sleep(Duration::from_millis(500));
    let load_started = Instant::now();
    for step in 1..=RELOADS {
        let answer = agent
            .reload(&config(&bpf_dir, &pem, step))
            .unwrap_or_else(|e| panic!("reload {step}: {e}"));
        assert!(answer.starts_with("ok:"), "reload {step}: {answer}");
        match step {
            // The extra frontend was just added, then removed.
            1 => {
                assert!(answer.contains("1 opened"), "{answer}");
                assert_eq!(get(&lab, EXTRA).expect("extra frontend"), 200);
            }
            3 => {
                assert!(answer.contains("1 closed"), "{answer}");
                assert!(get(&lab, EXTRA).is_err(), "removed frontend still answers");
            }
            10 => {
                // A broken configuration: refused, named, and nothing changes.
                let stat_before = agent.ctl("show stat").expect("show stat");
                let broken = config(&bpf_dir, &pem, step).replace(
                    "balance = \"roundrobin\"",
                    "balance = \"roundrobin\"\nretries = \"many\"",
                );
                let refused = agent
                    .reload(&broken)
                    .expect_err("a broken config is refused");
                let text = refused.to_string();
                assert!(text.contains(".toml") && text.contains("retries"), "{text}");
                let stat_after = agent.ctl("show stat").expect("show stat");
                let names = |s: &str| -> Vec<String> {
                    s.lines()
                        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                        .collect()
                };
                assert_eq!(names(&stat_before), names(&stat_after));
                assert_eq!(get(&lab, SITE).expect("site after a refused reload"), 200);
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let reloading = load_started.elapsed();
    assert!(
        reloading < Duration::from_secs(seconds - 1),
        "the reloads took {reloading:?}, longer than the load ran"
    );
    close_tunnel(go_on, tunnel, "the reloads");

    for (name, child) in [("HTTP", plain), ("HTTPS", tls)] {
        let text = wrk_result(child);
        assert!(
            !text.contains("Socket errors") && !text.contains("Non-2xx"),
            "{name} load saw failures across {RELOADS} reloads:\n{text}"
        );
        let requests: u64 = text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(requests > 1000, "{name}: only {requests} requests:\n{text}");
    }

    // web1 stayed in every configuration: its health state (since when it is up) was kept.
    let servers = agent.ctl("show servers").expect("show servers");
    let since: u64 = servers
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("web1"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|s| s.trim_end_matches('s').parse().ok())
        .unwrap_or_else(|| panic!("no web1 line in {servers}"));
    let elapsed = started.elapsed().as_secs();
    assert!(
        since + 2 >= elapsed,
        "web1 up for {since}s after {elapsed}s: its state was reset\n{servers}"
    );
}

const VIP: &str = "10.0.1.100";

/// True if the VIP is on the balancer's client-side interface.
fn vip_present(lab: &Lab) -> bool {
    lab.host("lb")
        .command("ip")
        .expect("ip")
        .args(["-o", "-4", "addr", "show", "dev", "eth0"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{VIP}/24")))
        .unwrap_or(false)
}

/// True once process `pid` has exited (gone, or a zombie nobody reaped yet).
fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                == Some("Z")
        })
        .unwrap_or(true)
}

#[test]
fn binary_upgrade_under_load_fails_no_request_and_keeps_the_vip() {
    require_root();
    let lab = balancer_with_reals("upgrade", 3).build().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = certificate(dir.path());
    start_servers(&lab, dir.path(), 1);
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "{}\n[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 61\npriority = 100\n\
         version = 3\nadvert = \"100ms\"\nvips = [\"{VIP}/24\"]\n",
        config(&bpf_dir, &pem, 0)
    );
    let old = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    let status = lb::agent::health_status_path(&bpf_dir);
    for server in ["web1", "web2"] {
        wait_for_checked_up(&status, server, Duration::from_secs(5)).expect("up");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !vip_present(&lab) {
        assert!(
            Instant::now() < deadline,
            "the lone node never became master"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A tunnel through the old agent, used before and after the upgrade.
    let (go_on, tunnel) = open_tunnel(&lab);

    let seconds = 6;
    let plain = wrk(&lab, &format!("http://{SITE}/"), seconds);
    let tls = wrk(&lab, &format!("https://{SITE_TLS}/"), seconds);
    std::thread::sleep(Duration::from_secs(1));
    // Watch the VIP while the new agent takes over: a shell loop in the balancer's namespace
    // prints a line each time it finds the VIP missing.
    let watcher = lab
        .host("lb")
        .command("sh")
        .expect("sh")
        .args([
            "-c",
            &format!(
                "while true; do ip -o -4 addr show dev eth0 | grep -q '{VIP}/24' || echo gap; sleep 0.02; done"
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("VIP watcher");
    // A new agent with a broken configuration stops at its own error; the old one goes on.
    let broken = config.replace("priority = 100", "priority = \"high\"");
    let refused = RunningAgent::start(&lab, lab.host("lb"), &broken, &bpf_dir, &["--upgrade"]);
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("priority"),
        "an upgrade with a broken configuration started, or failed otherwise: {message}"
    );
    assert!(
        !exited(old.pid()),
        "the old agent left for a broken upgrade"
    );
    let new = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &["--upgrade"])
        .expect("the new agent takes over");

    // The tunnel still runs through the old agent, which waits for it before exiting.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !exited(old.pid()),
        "the old agent left while a tunnel was open"
    );
    close_tunnel(go_on, tunnel, "the upgrade");
    let deadline = Instant::now() + Duration::from_secs(seconds + 5);
    while !exited(old.pid()) {
        assert!(
            Instant::now() < deadline,
            "the old agent did not exit once its connections were done"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for (name, child) in [("HTTP", plain), ("HTTPS", tls)] {
        let text = wrk_result(child);
        assert!(
            !text.contains("Socket errors") && !text.contains("Non-2xx"),
            "{name} load saw failures across the upgrade:\n{text}"
        );
    }
    // The old agent left everything to the new one: the VIP never went away, the new agent
    // answers on the runtime API and serves.
    let mut watcher = watcher;
    let _ = watcher.kill();
    let output = watcher.wait_with_output().expect("watcher");
    let gaps = String::from_utf8_lossy(&output.stdout).lines().count();
    assert_eq!(
        gaps, 0,
        "the VIP was missing {gaps} times during the upgrade"
    );
    assert!(vip_present(&lab));
    let stat = new.ctl("show stat").expect("show stat");
    assert!(stat.contains("site/FRONTEND"), "{stat}");
    assert_eq!(get(&lab, SITE).expect("site after the upgrade"), 200);
}
