//! TCP mode (`mode tcp`): a client connection is paired with a server connection chosen by
//! the backend's algorithm (up servers with room, the FIFO queue past maxconn, retries and
//! redispatch as in HTTP mode), then bytes are copied both ways with half-closes passed on,
//! until both sides finish or `timeout tunnel` passes idle. One tcplog line per connection.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant, SystemTime},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

use super::{
    balance::{HashInput, Key, rdp_cookie},
    log::{TcpEntry, format_tcplog},
    server::{Attempts, Proxy, Slot, acquire, millis},
    tunnel::TunnelEnd,
};

/// Serves one client connection of TCP-mode frontend `f`.
pub(super) async fn serve(stream: TcpStream, client: SocketAddr, f: usize, proxy: &Arc<Proxy>) {
    let accepted = SystemTime::now();
    let started = Instant::now();
    let frontend = &proxy.frontends[f];
    let _session = frontend.counters.enter();
    // Validation gives every TCP frontend a default backend.
    let Some(b) = frontend.spec.default_backend else {
        return;
    };
    let backend = &proxy.backends[b];
    let _backend_session = backend.counters.enter();
    let board = proxy.board();
    let up = |s: usize| proxy.server_up(&board, b, s);
    // rdp-cookie: the client's first packet names its session; it is read now and sent to
    // the server first.
    let mut stream = stream;
    let mut first = Vec::new();
    if let HashInput::RdpCookie(name) = &backend.spec.hash_input {
        first = read_first_packet(&mut stream, name).await;
    }
    let cookie = match &backend.spec.hash_input {
        HashInput::RdpCookie(name) => rdp_cookie(&first, name).map(str::to_string),
        _ => None,
    };
    let key = Key {
        src: Some(client.ip()),
        text: cookie.as_deref(),
    };
    let mut entry = TcpEntry {
        client,
        accepted,
        frontend: frontend.spec.name.clone(),
        backend: backend.spec.name.clone(),
        server: "<NOSRV>".into(),
        t_queue: -1,
        t_connect: -1,
        t_total: 0,
        bytes: 0,
        termination: *b"--",
        retries: 0,
    };
    let mut tried = vec![false; backend.servers.len()];
    let queued_at = Instant::now();
    let Some(mut s) = acquire(backend, None, &tried, &up, key, queued_at).await else {
        backend.counters.denied.fetch_add(1, Ordering::Relaxed);
        entry.termination = *b"sQ";
        log(proxy, f, entry, started);
        return;
    };
    entry.t_queue = millis(queued_at);
    let mut slot = Slot::take(proxy, b, s);
    let connect_started = Instant::now();
    let mut attempts = Attempts::default();
    let server_stream = loop {
        let server = &backend.servers[s];
        let connected = tokio::time::timeout(
            backend.spec.timeout_connect,
            TcpStream::connect(server.spec.addr),
        )
        .await;
        if let Ok(Ok(stream)) = connected {
            break stream;
        }
        if !attempts.failed(proxy, b, &mut s, &mut slot, &mut tried, &up, key) {
            entry.server = server.spec.name.clone();
            entry.termination = *b"SC";
            entry.retries = attempts.made;
            log(proxy, f, entry, started);
            return;
        }
    };
    let mut server_stream = server_stream;
    let _ = server_stream.set_nodelay(true);
    if !first.is_empty() && server_stream.write_all(&first).await.is_err() {
        entry.server = backend.servers[s].spec.name.clone();
        entry.termination = *b"SD";
        log(proxy, f, entry, started);
        return;
    }
    entry.t_connect = millis(connect_started);
    entry.retries = attempts.made;
    let server = &backend.servers[s];
    entry.server = server.spec.name.clone();
    let _server_session = server.counters.enter();
    let stats = super::splice::run(&stream, &server_stream, backend.spec.timeout_tunnel).await;
    drop(slot);
    for counters in [&frontend.counters, &backend.counters, &server.counters] {
        counters
            .bytes_in
            .fetch_add(stats.up + first.len() as u64, Ordering::Relaxed);
        counters.bytes_out.fetch_add(stats.down, Ordering::Relaxed);
    }
    entry.bytes = stats.down;
    entry.termination = match stats.end {
        TunnelEnd::Closed => *b"--",
        TunnelEnd::Idle => *b"cD",
        TunnelEnd::Error => *b"CD",
    };
    log(proxy, f, entry, started);
}

/// How long a client may take to send the packet rdp-cookie reads (HAProxy's
/// `tcp-request inspect-delay`, which RDP setups set to a few seconds).
const INSPECT_DELAY: Duration = Duration::from_secs(5);

/// Reads the client's first bytes until the RDP cookie line `name` ends, the packet is
/// complete, or the inspect delay passes; returns what was read.
async fn read_first_packet<IO: AsyncRead + Unpin>(stream: &mut IO, name: &str) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(256);
    let deadline = tokio::time::Instant::now() + INSPECT_DELAY;
    loop {
        let mut chunk = [0u8; 512];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
            _ => return buffer,
        }
        // A TPKT header gives the packet's length; stop once it is all here.
        let complete = buffer.len() >= 4
            && buffer.len() >= usize::from(u16::from_be_bytes([buffer[2], buffer[3]]));
        if complete || rdp_cookie(&buffer, name).is_some() || buffer.len() >= 4096 {
            return buffer;
        }
    }
}

fn log(proxy: &Proxy, f: usize, mut entry: TcpEntry, started: Instant) {
    let logger = &proxy.frontends[f].logger;
    if !logger.is_off() {
        entry.t_total = millis(started);
        logger.log(format_tcplog(&entry));
    }
}
