//! Real traffic for lab tests and the demo: a TCP echo server and a client that checks every
//! byte comes back, and a UDP echo pair.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, ensure};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
};

/// Accepts `connections` connections one after another and echoes each until its client
/// closes its side.
pub async fn tcp_echo_server(listener: TcpListener, connections: usize) -> anyhow::Result<()> {
    for _ in 0..connections {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).await?;
        }
    }
    Ok(())
}

/// Opens `connections` connections to `server` one after another; on each sends `bytes`
/// bytes of a pattern, half-closes, and checks the echo is identical. Returns bytes echoed.
pub async fn tcp_echo_client(
    server: SocketAddr,
    connections: usize,
    bytes: usize,
) -> anyhow::Result<usize> {
    let pattern: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let mut echoed = 0;
    for i in 0..connections {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server))
            .await
            .with_context(|| format!("connection {i} to {server} timed out"))??;
        let (mut reader, mut writer) = stream.into_split();
        let send = pattern.clone();
        let writer_task = tokio::spawn(async move {
            writer.write_all(&send).await?;
            writer.shutdown().await?;
            anyhow::Ok(())
        });
        let mut back = Vec::with_capacity(bytes);
        tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut back))
            .await
            .with_context(|| format!("echo on connection {i} timed out"))??;
        writer_task.await??;
        ensure!(
            back == pattern,
            "connection {i}: echoed bytes differ from what was sent"
        );
        echoed += back.len();
    }
    Ok(echoed)
}

/// Echoes `datagrams` UDP datagrams back to their senders.
pub async fn udp_echo_server(socket: UdpSocket, datagrams: usize) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..datagrams {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], peer).await?;
    }
    Ok(())
}

/// Sends `datagrams` numbered datagrams to `server`, waiting for each echo. Returns how many
/// came back intact.
pub async fn udp_echo_client(server: SocketAddr, datagrams: usize) -> anyhow::Result<usize> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    let mut buf = vec![0u8; 2048];
    let mut echoed = 0;
    for i in 0..datagrams {
        let message = format!("datagram {i}");
        socket.send(message.as_bytes()).await?;
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .with_context(|| format!("no echo for datagram {i}"))??;
        ensure!(
            &buf[..n] == message.as_bytes(),
            "datagram {i} came back altered"
        );
        echoed += 1;
    }
    Ok(echoed)
}

/// Accepts connections on `listener` until `lifetime` runs out, serving each with `serve` on a
/// task of its own: the accept loop every test server shares.
pub async fn serve_connections<F, Fut>(listener: TcpListener, lifetime: Duration, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let accept = async {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        }
    };
    let _ = tokio::time::timeout(lifetime, accept).await;
}

/// A small HTTP/1.1 server for lab reals: answers every request with `name` as the body and
/// closes the connection. Serves until `lifetime` runs out.
pub async fn http_name_server(listener: TcpListener, name: String, lifetime: Duration) {
    serve_connections(listener, lifetime, |mut stream| {
        let name = name.clone();
        async move {
            if read_request(&mut stream).await {
                respond(&mut stream, "200 OK", &name).await;
            }
        }
    })
    .await;
}

/// GET / from `server`, from the local address `bind` (a fixed source port makes the flow
/// predictable). Returns the response body.
pub async fn http_get_from(bind: SocketAddr, server: SocketAddr) -> anyhow::Result<String> {
    let socket = if bind.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(bind)?;
    let mut stream = tokio::time::timeout(Duration::from_secs(5), socket.connect(server))
        .await
        .with_context(|| format!("connecting from {bind} to {server} timed out"))??;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .with_context(|| format!("response from {server} timed out"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of headers in the response")?;
    ensure!(
        head.starts_with("HTTP/1.1 200"),
        "unexpected response: {head}"
    );
    Ok(body.to_string())
}

/// A line server for long-lived connections: answers each line with `name:line`. Serves
/// until `lifetime` runs out.
pub async fn line_echo_server(listener: TcpListener, name: String, lifetime: Duration) {
    serve_connections(listener, lifetime, |stream| {
        let name = name.clone();
        async move {
            let (reader, mut writer) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if writer
                    .write_all(format!("{name}:{line}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
    .await;
}

/// Sends `bytes` bytes to every client that connects, then closes. Serves until `lifetime`.
pub async fn bulk_server(listener: TcpListener, bytes: u64, lifetime: Duration) {
    serve_connections(listener, lifetime, |mut stream| async move {
        let chunk = vec![0x5a_u8; 256 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if stream.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Reads everything `server` sends on one connection; returns the byte count.
pub async fn bulk_download(server: SocketAddr) -> anyhow::Result<u64> {
    let mut stream = TcpStream::connect(server).await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

/// `count` short HTTP connections (connect, GET, read to close) spread round-robin over
/// `targets`, `concurrency` at a time. Fails on the first failed request.
pub async fn http_load(
    targets: Vec<SocketAddr>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let targets = std::sync::Arc::new(targets);
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let next = next.clone();
        let targets = targets.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                let target = targets[i % targets.len()];
                let mut stream = TcpStream::connect(target)
                    .await
                    .with_context(|| format!("connect {target}"))?;
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
                    .await?;
                let mut response = Vec::with_capacity(128);
                stream.read_to_end(&mut response).await?;
                ensure!(
                    response.starts_with(b"HTTP/1.1 200"),
                    "bad response from {target}"
                );
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    Ok(())
}

/// Behaviours of [`controlled_http_server`], switched at run time.
pub mod behaviour {
    /// Answer 200 with the server's name.
    pub const OK: u8 = 0;
    /// Answer 500.
    pub const ERROR: u8 = 1;
    /// Accept, read the request, never answer.
    pub const HANG: u8 = 2;
    /// Answer 200 after 500 ms.
    pub const SLOW: u8 = 3;
    /// Answer 500 and 200 in turn (a flapping server).
    pub const ALTERNATE: u8 = 4;
    /// Not listening at all (connections are refused).
    pub const DEAD: u8 = 5;
}

/// An HTTP server whose behaviour (see [`behaviour`]) the test switches through `mode`.
/// Listens on `addr` while not [`behaviour::DEAD`]. Serves until `lifetime` runs out.
pub async fn controlled_http_server(
    addr: SocketAddr,
    name: String,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    lifetime: Duration,
) {
    use std::sync::atomic::Ordering;
    let serve = async {
        let mut turn = 0u64;
        loop {
            if mode.load(Ordering::Relaxed) == behaviour::DEAD {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            let Ok(listener) = TcpListener::bind(addr).await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            while mode.load(Ordering::Relaxed) != behaviour::DEAD {
                let accepted =
                    tokio::time::timeout(Duration::from_millis(10), listener.accept()).await;
                let Ok(Ok((mut stream, _))) = accepted else {
                    continue;
                };
                turn += 1;
                let current = mode.load(Ordering::Relaxed);
                let name = name.clone();
                tokio::spawn(async move {
                    if !read_request(&mut stream).await {
                        return;
                    }
                    let fail = current == behaviour::ERROR
                        || (current == behaviour::ALTERNATE && turn.is_multiple_of(2));
                    match current {
                        behaviour::HANG => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            return;
                        }
                        behaviour::SLOW => tokio::time::sleep(Duration::from_millis(500)).await,
                        _ => {}
                    }
                    let (status, body) = if fail {
                        ("500 Internal Server Error", "error")
                    } else {
                        ("200 OK", name.as_str())
                    };
                    respond(&mut stream, status, body).await;
                });
            }
            // Dropping the listener: new connections are refused from here on.
        }
    };
    let _ = tokio::time::timeout(lifetime, serve).await;
}

/// Which server answers a line-echo service at `addr` right now: the name part of its
/// `name:line` reply, or `None` if nobody answers within `limit`.
pub async fn who_answers(addr: SocketAddr, limit: Duration) -> Option<String> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (reader, mut writer) = stream.into_split();
        writer.write_all(b"who\n").await.ok()?;
        let line = tokio::io::BufReader::new(reader)
            .lines()
            .next_line()
            .await
            .ok()??;
        line.split_once(':').map(|(name, _)| name.to_string())
    };
    tokio::time::timeout(limit, attempt).await.ok().flatten()
}

/// Writes a whole `Connection: close` response and closes the write side.
async fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Reads an HTTP request head (up to the blank line); false if the client went away first.
async fn read_request(stream: &mut TcpStream) -> bool {
    read_request_head(stream).await.is_some()
}

/// Reads an HTTP request head (up to the blank line) and returns it; `None` if the client went
/// away first.
async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    Some(request)
}

/// Sends `raw` (a whole HTTP/1.1 request) to `server` and reads the answer to the end: the
/// status code and the body.
pub async fn http_exchange(server: SocketAddr, raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server))
        .await
        .with_context(|| format!("connecting to {server} timed out"))??;
    stream.write_all(raw).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .context("response timed out")??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    Ok((status, body.to_string()))
}

/// An HTTP server answering every request with its own name and the request head it got
/// (lower-cased header names), so tests can see what a proxy forwarded.
pub async fn http_echo_head_server(listener: TcpListener, name: String, lifetime: Duration) {
    serve_connections(listener, lifetime, |mut stream| {
        let name = name.clone();
        async move {
            let Some(request) = read_request_head(&mut stream).await else {
                return;
            };
            let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
            respond(&mut stream, "200 OK", &format!("{name}\n{head}")).await;
        }
    })
    .await;
}

/// Starts a [`controlled_http_server`] on port 80 of each of `hosts` of `lab` (named after
/// its host) and returns the switches that set their behaviour, in the same order.
pub fn spawn_controlled_servers(
    lab: &crate::netns::Lab,
    hosts: &[&str],
    lifetime: Duration,
) -> anyhow::Result<Vec<std::sync::Arc<std::sync::atomic::AtomicU8>>> {
    let mut modes = Vec::with_capacity(hosts.len());
    for host in hosts {
        let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(behaviour::OK));
        let (name, switch) = (host.to_string(), mode.clone());
        lab.host(host).spawn(move || async move {
            controlled_http_server(SocketAddr::from(([0, 0, 0, 0], 80)), name, switch, lifetime)
                .await;
        })?;
        modes.push(mode);
    }
    Ok(modes)
}

/// A TLS client trusting only the CA certificates in the PEM file `ca`, offering `alpn`.
pub fn tls_connector(
    ca: &std::path::Path,
    alpn: &[&[u8]],
) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls::{
        self,
        pki_types::{CertificateDer, pem::PemObject},
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}
