//! Netns lab: HTTPS termination checked by a real client (curl with the test CA): two SNI
//! names and a default certificate, ALPN h2 and http/1.1 (HTTP/2 to the proxy, HTTP/1.1 to
//! the server), a plain bind redirecting to https, the
//! X-Forwarded-Proto and HSTS headers as rules. Needs root.

use std::{path::Path, process::Output, sync::Arc, time::Duration};

use lb_tests::{
    agent::{RunningAgent, unique_bpf_dir},
    app::{AppStats, app_server},
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
         bind = [\"10.0.1.1:8080\", \"10.0.1.1:8443 ssl crt {} crt {} crt {}\"]\n\
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
