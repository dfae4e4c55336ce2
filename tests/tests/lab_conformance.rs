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
    h2raw::{self, HeaderBlock},
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

/// `timeout client` 1 s, `timeout http_keep_alive` 1 s, one server with `maxconn = 2` and a
/// 300 ms queue.
fn timed_config() -> String {
    format!(
        "[defaults]\nlog = \"none\"\ntimeout = {{ client = \"1s\", http_keep_alive = \"1s\" }}\n\n\
         [[listen]]\nname = \"timed\"\nbind = [\"{H1}\", \"{H2} proto h2\"]\ntimeout = {{ queue = \"300ms\" }}\n\
         servers = [{{ name = \"r\", addr = \"{RECORDER}\", maxconn = 2 }}]\n"
    )
}

/// The status of `GET /` from a new connection.
async fn status_of_get() -> u16 {
    conformance::h1_exchange(
        addr(H1),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
        &[],
        Duration::from_secs(3),
    )
    .await
    .ok()
    .and_then(|s| s.first().copied())
    .unwrap_or(0)
}

/// A client with a 4 KiB receive buffer that asks for 4 MiB and never reads.
async fn non_reader() -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stream = socket.connect(addr(H1)).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    stream
}

/// Defect 1: clients that stop reading (HTTP/1.1 with a full socket buffer; HTTP/2 with a
/// zero window) hold their server slots only until `timeout client`, as in HAProxy; before,
/// every other client got 503 for as long as they stayed.
#[test]
fn a_client_that_stops_reading_gives_its_server_slot_back() {
    require_root();
    let (lab, _recorder, _agent, _dir) = start("stall", &timed_config());
    let (busy, freed) = lab
        .host("lb")
        .in_netns(|_| async {
            let _held = [non_reader().await, non_reader().await];
            tokio::time::sleep(Duration::from_millis(300)).await;
            let busy = status_of_get().await;
            tokio::time::sleep(Duration::from_millis(2500)).await;
            Ok((busy, status_of_get().await))
        })
        .expect("HTTP/1.1 clients");
    assert_eq!(busy, 503, "two stalled clients hold both slots");
    assert_eq!(
        freed, 200,
        "timeout client freed the slots while the clients stay"
    );
    let (busy, freed) = lab
        .host("lb")
        .in_netns(|_| async {
            // One HTTP/2 connection: window 0, two streams asking for 4 MiB each.
            let mut stream = TcpStream::connect(addr(H2)).await?;
            let mut out = h2raw::PREFACE.to_vec();
            out.extend_from_slice(&h2raw::settings(&[(
                h2raw::SETTINGS_INITIAL_WINDOW_SIZE,
                0,
            )]));
            for id in [1, 3] {
                let block = HeaderBlock::request("GET", "/big", Some("x"));
                out.extend_from_slice(&h2raw::frame(
                    h2raw::HEADERS,
                    h2raw::END_HEADERS | h2raw::END_STREAM,
                    id,
                    &block.0,
                ));
            }
            tokio::io::AsyncWriteExt::write_all(&mut stream, &out).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let busy = status_of_get().await;
            tokio::time::sleep(Duration::from_millis(2500)).await;
            let freed = status_of_get().await;
            drop(stream);
            Ok((busy, freed))
        })
        .expect("HTTP/2 client");
    assert_eq!(busy, 503, "two zero-window streams hold both slots");
    assert_eq!(
        freed, 200,
        "timeout client ended the stalled HTTP/2 connection"
    );
}

/// Reads frames until GOAWAY (its error code) or the end of the connection (`None`).
async fn goaway(stream: &mut TcpStream, limit: Duration) -> anyhow::Result<Option<u32>> {
    let mut reader = h2raw::FrameReader::default();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let Ok(frame) = tokio::time::timeout_at(deadline, reader.next(stream)).await else {
            anyhow::bail!("still open after {limit:?}");
        };
        match frame? {
            None => return Ok(None),
            Some((h2raw::GOAWAY, _, _, payload)) => {
                return Ok(payload
                    .get(4..8)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
            }
            Some((h2raw::SETTINGS, flags, _, _)) if flags & h2raw::ACK == 0 => {
                tokio::io::AsyncWriteExt::write_all(
                    stream,
                    &h2raw::frame(h2raw::SETTINGS, h2raw::ACK, 0, &[]),
                )
                .await?;
            }
            Some(_) => {}
        }
    }
}

/// Defect 2: an idle HTTP/2 connection (nothing after the preface and SETTINGS, or nothing
/// after its last response) gets GOAWAY(NO_ERROR) at `timeout http_keep_alive`, as from
/// HAProxy and nginx; before, it stayed open for good.
#[test]
fn idle_http2_connections_get_goaway_at_the_keep_alive_timeout() {
    require_root();
    let (lab, _recorder, _agent, _dir) = start("h2idle", &timed_config());
    let (silent, after_request, elapsed) = lab
        .host("lb")
        .in_netns(|_| async {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr(H2)).await?;
            let mut out = h2raw::PREFACE.to_vec();
            out.extend_from_slice(&h2raw::settings(&[]));
            tokio::io::AsyncWriteExt::write_all(&mut stream, &out).await?;
            let silent = goaway(&mut stream, Duration::from_secs(5)).await?;
            let elapsed = started.elapsed();
            // One request, then nothing.
            let mut stream = TcpStream::connect(addr(H2)).await?;
            let mut out = h2raw::PREFACE.to_vec();
            out.extend_from_slice(&h2raw::settings(&[]));
            let block = HeaderBlock::request("GET", "/", Some("x"));
            out.extend_from_slice(&h2raw::frame(
                h2raw::HEADERS,
                h2raw::END_HEADERS | h2raw::END_STREAM,
                1,
                &block.0,
            ));
            tokio::io::AsyncWriteExt::write_all(&mut stream, &out).await?;
            let after_request = goaway(&mut stream, Duration::from_secs(5)).await?;
            Ok((silent, after_request, elapsed))
        })
        .expect("HTTP/2 clients");
    assert_eq!(silent, Some(0), "GOAWAY(NO_ERROR) to a silent connection");
    assert!(
        elapsed >= Duration::from_millis(900),
        "not before the keep-alive timeout: {elapsed:?}"
    );
    assert_eq!(
        after_request,
        Some(0),
        "GOAWAY(NO_ERROR) after the last stream"
    );
}

/// Defect 9: a client's broken body is the client's: 400 (or 408 when it stalls past
/// `timeout client`), counted in `cli_abrt` of the backend and server, and not as a server
/// error (no 5xx); before, it was 502 and `SH--`.
#[test]
fn a_broken_request_body_is_counted_against_the_client() {
    require_root();
    let (lab, _recorder, agent, _dir) = start("body", &timed_config());
    let (broken, stalled) = lab
        .host("lb")
        .in_netns(|_| async {
            let broken = conformance::h1_exchange(
                addr(H1),
                b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
                1,
                &[],
                Duration::from_secs(3),
            )
            .await?;
            let stalled = conformance::h1_exchange(
                addr(H1),
                b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",
                1,
                &[],
                Duration::from_secs(4),
            )
            .await?;
            Ok((broken, stalled))
        })
        .expect("clients");
    assert_eq!(broken, [400], "a malformed chunk");
    assert_eq!(stalled, [408], "a body paused past timeout client");
    let stat = agent.ctl("show stat").expect("show stat");
    let row = |name: &str| -> Vec<String> {
        stat.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {stat}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    for name in ["timed/BACKEND", "timed/r"] {
        let columns = row(name);
        assert_eq!(columns[18], "2", "{name} cli_abrt: {stat}");
        assert_eq!(columns[10], "0", "{name} 5xx: {stat}");
    }
}

/// Defect 2, TLS: a client that completes the handshake (ALPN http/1.1) and sends nothing is
/// closed at `timeout http_request` counted from the accept; before, the guard switched
/// itself off when that timer fired and the connection waited for hyper's backstop (11 s
/// with the attack run's settings).
#[test]
fn a_silent_tls_client_is_closed_at_the_request_timeout() {
    use tokio_rustls::rustls::pki_types::ServerName;
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["a.example".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    let pem = dir.path().join("a.pem");
    std::fs::write(&pem, format!("{}{}", cert.pem(), key.serialize_pem())).expect("write");
    let config = format!(
        "[defaults]\nlog = \"none\"\ntimeout = {{ http_request = \"1s\", http_keep_alive = \"5s\" }}\n\n\
         [[listen]]\nname = \"tls\"\nbind = [\"{H1}\", \"127.0.0.1:8443 ssl crt {}\"]\n\
         servers = [{{ name = \"r\", addr = \"{RECORDER}\" }}]\n",
        pem.display()
    );
    let (lab, _recorder, _agent, _dir) = start("tlssilent", &config);
    let ca = pem.clone();
    let waited = lab
        .host("lb")
        .in_netns(move |_| async move {
            let connector = lb_tests::traffic::tls_connector(&ca, &[b"http/1.1"])?;
            let started = Instant::now();
            let tcp = TcpStream::connect("127.0.0.1:8443").await?;
            let mut stream = connector
                .connect(ServerName::try_from("a.example")?, tcp)
                .await?;
            let mut buffer = [0u8; 1024];
            let _ = tokio::time::timeout(
                Duration::from_secs(8),
                tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
            )
            .await;
            Ok(started.elapsed())
        })
        .expect("TLS client");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(2500),
        "closed after {waited:?}, timeout http_request is 1 s"
    );
}
