//! The proxy's listening sockets and the snapshot they serve. A reload swaps the snapshot
//! and changes only the listeners whose addresses came or went: a socket on an address that
//! stays is never closed, so no connection attempt is refused across a reload. Sockets may
//! also be inherited from a previous process (binary upgrade).

use std::{
    collections::HashMap,
    net::SocketAddr,
    os::fd::{AsRawFd as _, RawFd},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use arc_swap::ArcSwap;
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinHandle,
};

use super::{
    server::{Wire, serve_connection},
    snapshot::Proxy,
};
use crate::{
    config::{BackendSpec, FrontendSpec},
    health::HealthBoard,
};

/// Opens a listening socket that may bind an address this host does not hold yet
/// (IP_FREEBIND), so a frontend on a VRRP VIP starts on a backup node.
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// One listening socket and the task accepting on it.
struct Listener {
    /// The socket's descriptor, lent to a new process on a binary upgrade.
    fd: RawFd,
    /// Kept so the descriptor stays valid while the accept task runs.
    _socket: Arc<TcpListener>,
    task: JoinHandle<()>,
}

/// The running proxy: the current snapshot and the sockets serving it.
pub struct ProxyRuntime {
    current: Arc<ArcSwap<Proxy>>,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    global_slots: Option<Arc<Semaphore>>,
    board: watch::Receiver<HealthBoard>,
    /// Client connections open now.
    live: Arc<AtomicUsize>,
}

impl ProxyRuntime {
    /// Builds the first snapshot and listens on every bind address, taking sockets from
    /// `inherited` (a previous process's, by address) before binding new ones.
    pub fn start(
        frontends: Vec<FrontendSpec>,
        backends: Vec<BackendSpec>,
        board_base: usize,
        global_maxconn: u32,
        board: watch::Receiver<HealthBoard>,
        mut inherited: HashMap<SocketAddr, std::net::TcpListener>,
    ) -> std::io::Result<Arc<ProxyRuntime>> {
        let proxy = Proxy::build(frontends, backends, board_base, board.clone(), None)?;
        let runtime = Arc::new(ProxyRuntime {
            current: Arc::new(ArcSwap::from_pointee(proxy)),
            listeners: Mutex::new(HashMap::new()),
            global_slots: (global_maxconn > 0)
                .then(|| Arc::new(Semaphore::new(global_maxconn as usize))),
            board,
            live: Arc::default(),
        });
        let addrs: Vec<SocketAddr> = runtime.current().bind_addrs().collect();
        let mut opened = Vec::new();
        for addr in addrs {
            let socket = match inherited.remove(&addr) {
                Some(socket) => {
                    tracing::info!(%addr, "listening socket inherited from the previous process");
                    socket
                }
                None => bind(addr)?,
            };
            opened.push((addr, socket));
        }
        runtime.listen(opened)?;
        Ok(runtime)
    }

    /// The snapshot serving new requests now.
    pub fn current(&self) -> Arc<Proxy> {
        self.current.load_full()
    }

    /// Builds the snapshot for `frontends` and `backends` and binds the addresses it adds.
    /// Nothing changes yet; an error (an address that cannot be bound) leaves everything as
    /// it was.
    pub fn prepare(
        &self,
        frontends: Vec<FrontendSpec>,
        backends: Vec<BackendSpec>,
        board_base: usize,
    ) -> std::io::Result<Prepared> {
        let proxy = Proxy::build(
            frontends,
            backends,
            board_base,
            self.board.clone(),
            Some(&self.current()),
        )?;
        let listeners = self.lock();
        let mut fresh = Vec::new();
        for addr in proxy.bind_addrs() {
            if !listeners.contains_key(&addr) {
                fresh.push((addr, bind(addr)?));
            }
        }
        Ok(Prepared { proxy, fresh })
    }

    /// Switches to a prepared snapshot: requests already running finish on the old one,
    /// listeners of addresses no longer configured close, and connections of removed
    /// frontends finish what is in flight and close.
    pub fn commit(&self, prepared: Prepared) -> ReloadReport {
        let Prepared { proxy, fresh } = prepared;
        let old = self.current();
        let wanted: Vec<SocketAddr> = proxy.bind_addrs().collect();
        let mut report = ReloadReport {
            opened: fresh.len(),
            ..ReloadReport::default()
        };
        self.current.store(Arc::new(proxy));
        if let Err(error) = self.listen(fresh) {
            tracing::error!(%error, "a new listening socket could not be used");
        }
        {
            let mut listeners = self.lock();
            let gone: Vec<SocketAddr> = listeners
                .keys()
                .filter(|a| !wanted.contains(a))
                .copied()
                .collect();
            for addr in gone {
                if let Some(listener) = listeners.remove(&addr) {
                    listener.task.abort();
                    tracing::info!(%addr, "no longer listening");
                    report.closed += 1;
                }
            }
        }
        let current = self.current();
        for frontend in &old.frontends {
            if current
                .frontend(&frontend.spec.name, frontend.spec.mode)
                .is_none()
            {
                frontend.retired.send_replace(true);
                report.retired_frontends += 1;
            }
        }
        report
    }

    /// Descriptors of the listening sockets by address, for a new process taking over.
    pub fn listener_fds(&self) -> Vec<(SocketAddr, RawFd)> {
        self.lock().iter().map(|(a, l)| (*a, l.fd)).collect()
    }

    /// Hands over to a new process that accepts on copies of the sockets: stops accepting,
    /// and serves each open connection's next request with `Connection: close` (an idle
    /// connection is not closed under a client that may be sending on it).
    pub fn hand_over(&self) -> std::io::Result<()> {
        for (_, listener) in self.lock().drain() {
            listener.task.abort();
        }
        let empty = Proxy::build(Vec::new(), Vec::new(), 0, self.board.clone(), None)?;
        self.current.store(Arc::new(empty));
        Ok(())
    }

    /// Client connections open now.
    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Listener>> {
        // A panic elsewhere while holding the lock leaves a map that is still consistent.
        self.listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn listen(&self, sockets: Vec<(SocketAddr, std::net::TcpListener)>) -> std::io::Result<()> {
        let mut listeners = self.lock();
        for (addr, socket) in sockets {
            socket.set_nonblocking(true)?;
            let socket = Arc::new(TcpListener::from_std(socket)?);
            let fd = socket.as_raw_fd();
            let task = tokio::spawn(accept_loop(
                socket.clone(),
                addr,
                self.current.clone(),
                self.global_slots.clone(),
                self.live.clone(),
            ));
            tracing::info!(%addr, "listening");
            listeners.insert(
                addr,
                Listener {
                    fd,
                    _socket: socket,
                    task,
                },
            );
        }
        Ok(())
    }
}

/// A snapshot ready to serve, with the sockets of the addresses it adds.
pub struct Prepared {
    proxy: Proxy,
    fresh: Vec<(SocketAddr, std::net::TcpListener)>,
}

/// What a reload changed in the proxy.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReloadReport {
    /// Listening sockets opened.
    pub opened: usize,
    /// Listening sockets closed.
    pub closed: usize,
    /// Frontends removed (their connections drain).
    pub retired_frontends: usize,
}

/// How long a listener stops accepting after `error`. A shortage of descriptors or memory
/// lasts until connections close: accepting again at once would spin on the same error
/// (nginx stops accepting for 500 ms, HAProxy pauses its listeners). An error of one
/// connection (reset before it was accepted, refused by a firewall) needs no pause.
fn accept_pause(error: &std::io::Error) -> Option<std::time::Duration> {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            Some(std::time::Duration::from_millis(100))
        }
        _ => None,
    }
}

/// How often a listener that keeps pausing says so.
const ACCEPT_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts on `socket` for whichever frontend the current snapshot binds to `addr`.
async fn accept_loop(
    socket: Arc<TcpListener>,
    addr: SocketAddr,
    current: Arc<ArcSwap<Proxy>>,
    global_slots: Option<Arc<Semaphore>>,
    live: Arc<AtomicUsize>,
) {
    // Pauses for a shortage of descriptors or memory since the last warning, and when that was.
    let mut pauses = 0u32;
    let mut warned: Option<std::time::Instant> = None;
    loop {
        let proxy = current.load_full();
        let Some((f, bind)) = proxy.bind_of(addr) else {
            // The reload that removed this address is closing the socket.
            return;
        };
        // Past maxconn (the frontend's, then the global one), connections wait in the
        // kernel's accept queue (HAProxy stops accepting the same way).
        let permit = match &proxy.frontends[f].slots {
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        let global_permit = match &global_slots {
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        };
        let (stream, peer) = match socket.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                if let Some(pause) = accept_pause(&error) {
                    // Said at most every 10 s: a shortage can last.
                    pauses += 1;
                    if warned.is_none_or(|at| at.elapsed() >= ACCEPT_WARNING_EVERY) {
                        tracing::warn!(%addr, %error, ?pause, pauses, "accept failed; pausing this listener");
                        warned = Some(std::time::Instant::now());
                        pauses = 0;
                    }
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
        };
        // The request head's time runs from here, a TLS handshake included.
        let accepted = std::time::Instant::now();
        // A reload may have happened while this task waited: serve the newest snapshot.
        let newest = current.load_full();
        let (proxy, f, bind) = match newest.bind_of(addr) {
            Some((f, bind)) => (newest, f, bind),
            None => (proxy, f, bind),
        };
        let acceptor = proxy.frontends[f].acceptors.get(bind).cloned().flatten();
        let h2c = proxy.frontends[f].spec.bind.get(bind).is_some_and(|b| b.h2);
        let current = current.clone();
        let counted = LiveConnection::enter(&live);
        tokio::spawn(async move {
            let _counted = counted;
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().unwrap_or(peer);
            match acceptor {
                // TCP mode: the plain socket, for zero-copy tunnels.
                None if proxy.frontends[f].spec.mode == crate::config::Mode::Tcp => {
                    super::tcp::serve(stream, peer, f, &proxy).await
                }
                None => {
                    let wire = if h2c { Wire::Auto } else { Wire::Http1 };
                    serve_connection(
                        stream, peer, local, f, proxy, current, false, wire, accepted,
                    )
                    .await
                }
                Some(acceptor) => {
                    // The handshake counts against the request head's time.
                    let limit = proxy.frontends[f].spec.timeout_http_request;
                    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_connection(
                                tls,
                                peer,
                                local,
                                f,
                                proxy,
                                current,
                                true,
                                Wire::Auto,
                                accepted,
                            )
                            .await
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop((permit, global_permit));
        });
    }
}

/// Counts one open client connection while it lives.
struct LiveConnection(Arc<AtomicUsize>);

impl LiveConnection {
    fn enter(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        LiveConnection(live.clone())
    }
}

impl Drop for LiveConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_shortages_pause_accepting_and_one_connection_errors_do_not() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let error = std::io::Error::from_raw_os_error(errno);
            assert_eq!(
                accept_pause(&error),
                Some(std::time::Duration::from_millis(100)),
                "{error}"
            );
        }
        for errno in [libc::ECONNABORTED, libc::EPERM, libc::EPROTO] {
            assert_eq!(
                accept_pause(&std::io::Error::from_raw_os_error(errno)),
                None
            );
        }
    }
}
