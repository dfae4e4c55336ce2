//! Netns lab: HTTPS termination checked by a real client (curl with the test CA): two SNI
//! names and a default certificate, ALPN h2 and http/1.1 (HTTP/2 to the proxy, HTTP/1.1 to
//! the server), a plain bind redirecting to https, the
//! X-Forwarded-Proto and HSTS headers as rules. Needs root.

use std::{path::Path, process::Output, sync::Arc, time::Duration};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir, wait_for_checked_up, wait_for_health},
    app::{AppStats, app_server, spawn_apps},
    netns::Lab,
    require_root,
    topology::{balancer_with_reals, real_addr},
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::net::TcpListener;

/// Writes the test CA (`ca.pem`) and, for each name, `NAME.pem` with its certificate and key.
fn make_certificates(dir: &Path, names: &[&str]) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "lb test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
    for name in names {
        let mut params = CertificateParams::new(vec![(*name).to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, *name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
        std::fs::write(
            dir.join(format!("{name}.pem")),
            format!("{}{}", cert.pem(), key.serialize_pem()),
        )
        .expect("write certificate");
    }
}

fn curl(lab: &Lab, args: &[&str]) -> Output {
    lab.host("client")
        .command("curl")
        .expect("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .expect("running curl (cargo xtask setup installs it)")
}

#[test]
fn https_with_sni_default_certificate_and_redirect() {
    require_root();
    let lab = balancer_with_reals("tls", 1).build().expect("lab");
    let stats = Arc::new(AppStats::default());
    lab.host("real1")
        .spawn(move || async move {
            let listener = TcpListener::bind("0.0.0.0:80").await.expect("bind");
            app_server(listener, "real1".into(), stats, Duration::from_secs(120)).await;
        })
        .expect("app");
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path(), &["default.example", "a.example", "b.example"]);
    let pem = |name: &str| dir.path().join(format!("{name}.pem")).display().to_string();
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[[frontend]]\nname = \"www\"\n\
         bind = [\"10.0.1.1:8080\", \"10.0.1.1:8443 ssl crt {} crt {} crt {}\", \"10.0.1.1:8090 proto h2\"]\n\
         acls = [\"tls ssl_fc\"]\n\
         http_request = [\"redirect scheme https code 301 unless tls\", \"set-header X-Forwarded-Proto https\"]\n\
         http_response = [\"set-header Strict-Transport-Security max-age=31536000\"]\n\
         default_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nservers = [{{ name = \"web1\", addr = \"{}:80\" }}]\n",
        bpf_dir.display(),
        pem("default.example"),
        pem("a.example"),
        pem("b.example"),
        real_addr(1)
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    std::thread::sleep(Duration::from_millis(500));
    let ca = pem("ca");

    // Plain HTTP is sent to https, path and query kept.
    let redirect = curl(
        &lab,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            "-H",
            "Host: a.example:8443",
            "http://10.0.1.1:8080/head?x=1",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&redirect.stdout),
        "301 https://a.example:8443/head?x=1"
    );

    // Each SNI name gets its own certificate, verified against the CA by curl.
    for name in ["a.example", "b.example"] {
        let resolve = format!("{name}:8443:10.0.1.1");
        let url = format!("https://{name}:8443/head");
        let out = curl(
            &lab,
            &[
                "-v",
                "--http1.1",
                "-D",
                "-",
                "--cacert",
                &ca,
                "--resolve",
                &resolve,
                &url,
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(stdout.starts_with("http/1.1 200"), "{stdout}");
        assert!(
            stdout.contains("strict-transport-security: max-age=31536000"),
            "{stdout}"
        );
        assert!(
            stdout.contains("x-forwarded-proto: https"),
            "the server saw: {stdout}"
        );
        assert!(stderr.contains(&format!("CN={name}")), "{stderr}");
        assert!(stderr.contains("http/1.1"), "ALPN: {stderr}");
    }

    // HTTP/2 through the same bind (ALPN h2): routed, rewritten and answered the same way,
    // the server getting HTTP/1.1 with a Host header made from `:authority`.
    let out = curl(
        &lab,
        &[
            "-v",
            "--http2",
            "-D",
            "-",
            "--cacert",
            &ca,
            "--resolve",
            "a.example:8443:10.0.1.1",
            "https://a.example:8443/head?h2=1",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("http/2 200"), "{stdout}");
    assert!(
        stdout.contains("strict-transport-security: max-age=31536000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("get /head?h2=1 http/1.1"),
        "the server saw: {stdout}"
    );
    assert!(
        stdout.contains("host: a.example:8443"),
        "the server saw: {stdout}"
    );
    assert!(
        stdout.contains("x-forwarded-proto: https"),
        "the server saw: {stdout}"
    );

    // h2c with prior knowledge on the `proto h2` plain bind: HTTP/2 through the same rules
    // (not TLS, so the redirect to https applies).
    let out = curl(
        &lab,
        &[
            "--http2-prior-knowledge",
            "-D",
            "-",
            "-H",
            "Host: h2c.example",
            "http://10.0.1.1:8090/head",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(stdout.starts_with("http/2 301"), "{stdout}");
    assert!(
        stdout.contains("location: https://h2c.example/head"),
        "{stdout}"
    );

    // Another name gets the default certificate: curl rejects it for that name, and shows it.
    let out = curl(
        &lab,
        &[
            "-v",
            "--cacert",
            &ca,
            "--resolve",
            "other.example:8443:10.0.1.1",
            "https://other.example:8443/",
        ],
    );
    assert!(
        !out.status.success(),
        "a certificate for other.example was accepted"
    );
    let out = curl(
        &lab,
        &[
            "-v",
            "-k",
            "--resolve",
            "other.example:8443:10.0.1.1",
            "https://other.example:8443/",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("CN=default.example"), "{stderr}");
}

/// A client opening streams over one HTTP/2 connection and resetting them at once (the
/// "rapid reset" attack) makes no server work and no proxy growth; a header list past the
/// proxy's bound gets 431 (or a reset), never a forwarded request.
#[test]
fn http2_reset_flood_and_huge_headers_stay_bounded() {
    require_root();
    let lab = balancer_with_reals("h2flood", 1).build().expect("lab");
    let stats = Arc::new(AppStats::default());
    let seen = stats.clone();
    lab.host("real1")
        .spawn(move || async move {
            let listener = TcpListener::bind("0.0.0.0:80").await.expect("bind");
            app_server(listener, "real1".into(), seen, Duration::from_secs(120)).await;
        })
        .expect("app");
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path(), &["a.example"]);
    let pem = |name: &str| dir.path().join(format!("{name}.pem"));
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[defaults]\nlog = \"none\"\n\n[[listen]]\nname = \"www\"\n\
         bind = [\"10.0.1.1:8443 ssl crt {}\"]\nservers = [{{ name = \"web1\", addr = \"{}:80\" }}]\n",
        bpf_dir.display(),
        pem("a.example").display(),
        real_addr(1)
    );
    let agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    std::thread::sleep(Duration::from_millis(500));
    let rss = || {
        std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let before = rss();
    let ca = pem("ca");
    let (sent, closed, huge) = lab
        .host("client")
        .spawn(move || async move {
            const FLOOD: usize = 20_000;
            let mut send = h2_connect(&ca).await?;
            let mut sent = 0;
            let mut closed = false;
            for _ in 0..FLOOD {
                let request = http::Request::get("https://a.example:8443/slow").body(())?;
                let ready = match send.clone().ready().await {
                    Ok(ready) => ready,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                };
                send = ready;
                match send.send_request(request, true) {
                    Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
                sent += 1;
            }
            // A fresh connection with one header list past the bound.
            let mut send = h2_connect(&ca).await?.ready().await?;
            let request = http::Request::get("https://a.example:8443/")
                .header("x-huge", "a".repeat(128 * 1024))
                .body(())?;
            let huge = match send.send_request(request, true) {
                Ok((response, _)) => match response.await {
                    Ok(response) => Some(response.status().as_u16()),
                    Err(_) => None,
                },
                Err(_) => None,
            };
            anyhow::Ok((sent, closed, huge))
        })
        .expect("client")
        .join()
        .expect("client thread")
        .expect("flood");
    std::thread::sleep(Duration::from_millis(500));
    let after = rss();
    eprintln!(
        "rapid reset: {sent} streams sent before the proxy closed the connection ({closed}); \
         {} requests reached the server; huge headers: {huge:?}; RSS {before} -> {after} KiB",
        stats.requests()
    );

    assert!(
        stats.requests() < 1000,
        "{} requests reached the server",
        stats.requests()
    );
    assert!(
        huge.is_none_or(|status| status == 431),
        "a 128 KiB header list was answered {huge:?}"
    );
    assert!(
        after < before + 32 * 1024,
        "the proxy grew from {before} to {after} KiB"
    );
}

/// An HTTP/2 client connection to the lab's TLS bind, trusting the test CA at `ca`.
async fn h2_connect(ca: &Path) -> anyhow::Result<h2::client::SendRequest<bytes::Bytes>> {
    use tokio_rustls::rustls::pki_types::ServerName;
    let connector = lb_tests::traffic::tls_connector(ca, &[b"h2"])?;
    let tcp = tokio::net::TcpStream::connect("10.0.1.1:8443").await?;
    let tls = connector
        .connect(ServerName::try_from("a.example")?, tcp)
        .await?;
    let (send, connection) = h2::client::handshake(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// TLS to servers: an HTTPS nginx behind the proxy, verified against the test CA by name,
/// reached; the same server with a CA that did not sign it, refused (503, nothing sent);
/// `verify none`, reached.
#[test]
fn tls_to_servers_is_verified() {
    require_root();
    let lab = balancer_with_reals("tlsup", 1).build().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path(), &["backend.example"]);
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).expect("dir");
    make_certificates(&other, &[]);
    let pem = |name: &str| dir.path().join(format!("{name}.pem"));
    lb_tests::daemons::nginx_backend(
        &lab,
        "real1",
        &format!("{}:443", real_addr(1)),
        "secure real1",
        dir.path(),
        false,
        Some(&pem("backend.example")),
    )
    .expect("nginx");
    // The first SYN across a fresh lab waits for neighbour resolution: not in a check's time.
    lab.host("lb")
        .spawn(|| async {
            let _ = tokio::net::TcpStream::connect((real_addr(1).as_str(), 443)).await;
        })
        .expect("warm up")
        .join()
        .expect("warm up");
    // Each server is health-checked over TLS with the same settings (HAProxy's check-ssl).
    let server = |name: &str, ssl: &str| {
        format!(
            "[[listen]]\nname = \"{name}\"\nbind = [\"10.0.1.1:{}\"]\nretries = 0\n\
             servers = [{{ name = \"s_{name}\", addr = \"{}:443\", ssl = \"{ssl}\" }}]\n\
             check = {{ kind = \"http\", path = \"/\", inter = \"1s\", rise = 1, fall = 1, ssl = \"{ssl}\" }}\n\n",
            match name {
                "verified" => 8081,
                "wrong_ca" => 8082,
                _ => 8083,
            },
            real_addr(1)
        )
    };
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n{}{}{}",
        bpf_dir.display(),
        server(
            "verified",
            &format!(
                "verify required ca-file {} sni backend.example",
                pem("ca").display()
            )
        ),
        server(
            "wrong_ca",
            &format!(
                "verify required ca-file {} sni backend.example",
                other.join("ca.pem").display()
            )
        ),
        server("unverified", "verify none"),
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    let status = lb::agent::health_status_path(&bpf_dir);
    for server in ["s_verified", "s_unverified"] {
        wait_for_checked_up(&status, server, Duration::from_secs(5)).expect("checked up over TLS");
    }
    wait_for_health(&status, "s_wrong_ca", "DOWN", Duration::from_secs(5))
        .expect("a check over TLS with the wrong CA fails");
    let text = std::fs::read_to_string(&status).expect("status");
    assert!(
        text.lines()
            .any(|l| l.contains("s_wrong_ca") && l.contains("Layer6")),
        "{text}"
    );
    let get = |port: u16| {
        let out = curl(
            &lab,
            &["-w", " %{http_code}", &format!("http://10.0.1.1:{port}/")],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get(8081), "secure real1 200");
    assert!(
        get(8082).ends_with(" 503"),
        "an unverifiable server was used"
    );
    assert_eq!(get(8083), "secure real1 200");
}

/// `proto h2` on a server: lb speaks HTTP/2 to it, over TLS (ALPN h2) and with prior
/// knowledge (h2c), whatever the client spoke; nginx answers with the protocol it served.
#[test]
fn http2_to_servers() {
    require_root();
    let lab = balancer_with_reals("h2up", 2).build().expect("lab");
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path(), &["backend.example"]);
    let text = "served over $server_protocol";
    lb_tests::daemons::nginx_backend(
        &lab,
        "real1",
        &format!("{}:443 http2", real_addr(1)),
        text,
        dir.path(),
        false,
        Some(&dir.path().join("backend.example.pem")),
    )
    .expect("nginx with TLS");
    lb_tests::daemons::nginx_backend(
        &lab,
        "real2",
        &format!("{}:8080 http2", real_addr(2)),
        text,
        dir.path(),
        false,
        None,
    )
    .expect("nginx h2c");
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n\
         [[listen]]\nname = \"tls\"\nbind = [\"10.0.1.1:8091\"]\n\
         servers = [{{ name = \"t\", addr = \"{}:443\", ssl = \"verify none\", proto = \"h2\" }}]\n\n\
         [[listen]]\nname = \"clear\"\nbind = [\"10.0.1.1:8092\"]\n\
         servers = [{{ name = \"c\", addr = \"{}:8080\", proto = \"h2\" }}]\n",
        bpf_dir.display(),
        real_addr(1),
        real_addr(2)
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    for port in [8091, 8092] {
        for _ in 0..3 {
            let out = curl(
                &lab,
                &["-w", " %{http_code}", &format!("http://10.0.1.1:{port}/")],
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "served over HTTP/2.0 200",
                "port {port}"
            );
        }
    }
}

/// h2load drives HTTP/2 over TLS (ALPN h2) through ACL routing: two paths, two backends;
/// every request succeeds and each backend gets the requests of its path.
#[test]
fn h2load_through_acl_routing() {
    require_root();
    let lab = balancer_with_reals("h2load", 2).build().expect("lab");
    let stats = spawn_apps(&lab, &[1, 2]);
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path(), &["site.example"]);
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[[frontend]]\nname = \"www\"\n\
         bind = [\"10.0.1.1:8443 ssl crt {}\"]\nacls = [\"api path_beg /api\"]\n\
         use_backend = [\"api if api\"]\ndefault_backend = \"static\"\n\n\
         [[backend]]\nname = \"static\"\nservers = [{{ name = \"s1\", addr = \"{}:80\" }}]\n\n\
         [[backend]]\nname = \"api\"\nservers = [{{ name = \"a1\", addr = \"{}:80\" }}]\n",
        bpf_dir.display(),
        dir.path().join("site.example.pem").display(),
        real_addr(1),
        real_addr(2)
    );
    let _agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    let uris = dir.path().join("uris");
    std::fs::write(
        &uris,
        "https://10.0.1.1:8443/index.html\nhttps://10.0.1.1:8443/api/users\n",
    )
    .expect("uri list");
    let output = lab
        .host("client")
        .command("h2load")
        .expect("h2load")
        .args(["-n", "400", "-c", "4", "-m", "10", "-i"])
        .arg(&uris)
        .output()
        .expect("running h2load (cargo xtask setup installs nghttp2-client)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("Application protocol: h2"), "{text}");
    assert!(
        text.contains("400 succeeded, 0 failed, 0 errored"),
        "not every request succeeded:\n{text}"
    );
    assert!(text.contains("status codes: 400 2xx"), "{text}");
    // h2load takes the URIs in turn: half to each backend.
    assert_eq!(stats[0].requests(), 200, "static");
    assert_eq!(stats[1].requests(), 200, "api");
}
