//! TCP mode (`mode tcp`): a client connection is paired with a server connection chosen by
//! the backend's algorithm (up servers with room, the FIFO queue past maxconn, retries and
//! redispatch as in HTTP mode), then bytes are copied both ways with half-closes passed on,
//! until both sides finish or `timeout tunnel` passes idle. One tcplog line per connection.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::{Instant, SystemTime},
};

use tokio::net::TcpStream;

use super::{
    balance::Key,
    log::{TcpEntry, format_tcplog},
    server::{Attempts, Proxy, Slot, acquire, millis},
    tunnel::{self, TunnelEnd},
};

/// Serves one client connection of TCP-mode frontend `f`.
pub(super) async fn serve<IO>(
    stream: IO,
    client: SocketAddr,
    _local: SocketAddr,
    f: usize,
    proxy: &Arc<Proxy>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let accepted = SystemTime::now();
    let started = Instant::now();
    let frontend = &proxy.frontends[f];
    // Validation gives every TCP frontend a default backend.
    let Some(b) = frontend.spec.default_backend else {
        return;
    };
    let backend = &proxy.backends[b];
    let _backend_session = backend.counters.enter();
    let board = proxy.board();
    let up = |s: usize| proxy.server_up(&board, b, s);
    let key = Key {
        src: Some(client.ip()),
        text: None,
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
    let _ = server_stream.set_nodelay(true);
    entry.t_connect = millis(connect_started);
    entry.retries = attempts.made;
    let server = &backend.servers[s];
    entry.server = server.spec.name.clone();
    let _server_session = server.counters.enter();
    let stats = tunnel::run(stream, server_stream, backend.spec.timeout_tunnel).await;
    drop(slot);
    for counters in [&frontend.counters, &backend.counters, &server.counters] {
        counters.bytes_in.fetch_add(stats.up, Ordering::Relaxed);
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

fn log(proxy: &Proxy, f: usize, mut entry: TcpEntry, started: Instant) {
    let logger = &proxy.frontends[f].logger;
    if !logger.is_off() {
        entry.t_total = millis(started);
        logger.log(format_tcplog(&entry));
    }
}
