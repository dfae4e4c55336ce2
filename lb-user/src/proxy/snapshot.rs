//! The proxy's configuration snapshot: frontends, backends and servers with their run-time
//! state. A snapshot is immutable; a reload builds a new one and the request path picks it up
//! on its next request. What outlives a reload is shared between snapshots by name: counters,
//! connection pools, in-flight counts, queue wake-ups, learnt sessions and maxconn slots, so
//! `show stat` keeps counting, maxconn holds across the switch and pooled connections stay warm.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use tokio::sync::{Notify, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::{
    balance::Balancer,
    cookie::SessionTable,
    counters::{self, Counters},
    log::Logger,
    upstream::{ConnectError, Pool, Sender},
};
use crate::{
    config::{BackendSpec, FrontendSpec, LogTarget, ServerSpec},
    health::HealthBoard,
};

/// A server with its run-time state.
pub(super) struct ServerState {
    pub(super) spec: ServerSpec,
    pub(super) pool: Arc<Pool>,
    /// Requests in flight (leastconn, maxconn), shared with the previous snapshot's server of
    /// the same name and address.
    pub(super) active: Arc<AtomicU32>,
    pub(super) counters: Arc<Counters>,
    /// The weight in force: the configured one until the runtime API sets another
    /// (HAProxy's `set weight`).
    pub(super) weight: Arc<AtomicU32>,
    /// When the checks last brought it back up (ms since the Unix epoch; 0: not ramping),
    /// for `slowstart`.
    pub(super) up_since_ms: Arc<AtomicU64>,
}

impl ServerState {
    /// Opens a connection to the server (TLS and HTTP/2 as its settings say); `upgrades`
    /// keeps it usable as a tunnel. With `share`, an HTTP/2 connection goes into the pool at
    /// once: requests arriving meanwhile become streams on it instead of connections of
    /// their own.
    pub(super) async fn connect(
        &self,
        timeout: std::time::Duration,
        upgrades: bool,
        share: bool,
    ) -> Result<Sender, ConnectError> {
        let sender = super::upstream::connect(
            self.spec.addr,
            timeout,
            upgrades,
            self.spec.tls.as_deref(),
            self.spec.h2,
        )
        .await?;
        if share && let Sender::Http2(shared) = &sender {
            self.pool.put(Sender::Http2(shared.clone()));
        }
        Ok(sender)
    }

    /// The weight balancing uses now: during `slowstart` after the server came back up, a
    /// share of the weight growing with the time since (at least 1).
    pub(super) fn current_weight(&self) -> u32 {
        let weight = self.weight.load(Ordering::Relaxed);
        let since = self.up_since_ms.load(Ordering::Relaxed);
        if self.spec.slowstart.is_zero() || since == 0 {
            return weight;
        }
        ramped(weight, since, unix_ms(), self.spec.slowstart)
    }
}

/// `weight` at `now_ms` for a server up since `since_ms` with a ramp of `slowstart`.
fn ramped(weight: u32, since_ms: u64, now_ms: u64, slowstart: std::time::Duration) -> u32 {
    let elapsed = now_ms.saturating_sub(since_ms);
    let total = slowstart.as_millis() as u64;
    if elapsed >= total {
        return weight;
    }
    let share = (u64::from(weight) * elapsed).div_ceil(total);
    (share as u32).clamp(1, weight.max(1))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A backend with its run-time state.
pub(super) struct BackendState {
    pub(super) spec: BackendSpec,
    /// Its entry on the health board.
    pub(super) board_index: usize,
    pub(super) balancer: Mutex<Balancer>,
    pub(super) servers: Vec<ServerState>,
    /// Signalled when a server slot frees, waking the first queued request.
    pub(super) freed: Arc<Notify>,
    pub(super) sessions: Option<Arc<SessionTable>>,
    pub(super) counters: Arc<Counters>,
}

/// A frontend with its run-time state.
pub(super) struct FrontendState {
    pub(super) spec: FrontendSpec,
    /// Some ACL (here or in a backend) reads headers: requests keep a copy of theirs.
    pub(super) uses_acls: bool,
    /// Some header rule may read the request as received.
    pub(super) uses_vars: bool,
    /// Request headers the proxy routes, persists or hashes on, or sets itself: a client's
    /// `Connection` option cannot remove them (RFC 9110 section 7.6.1 lets it remove the
    /// others).
    pub(super) kept_headers: Vec<hyper::header::HeaderName>,
    pub(super) counters: Arc<Counters>,
    pub(super) logger: Logger,
    /// Connections past `maxconn` wait in the kernel's accept queue for one of these.
    pub(super) slots: Option<Arc<Semaphore>>,
    /// The TLS acceptor of each bind (same order as `spec.bind`), built once per snapshot.
    pub(super) acceptors: Vec<Option<TlsAcceptor>>,
    /// Set when a reload removes this frontend: its connections finish what is in flight and
    /// close.
    pub(super) retired: watch::Sender<bool>,
}

/// The request headers a client may not drop through `Connection` for frontend `spec`: Host
/// and the framing fields, Cookie, what ACLs and hashes of it and of any backend read, and
/// the forwardfor header.
fn kept_headers(spec: &FrontendSpec, backends: &[BackendState]) -> Vec<hyper::header::HeaderName> {
    use hyper::header::{self, HeaderName};
    let mut kept = vec![
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::COOKIE,
    ];
    let acls = spec
        .acls
        .iter()
        .chain(backends.iter().flat_map(|b| b.spec.acls.iter()));
    kept.extend(
        acls.filter_map(|acl| acl.header())
            .filter_map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()),
    );
    for backend in backends {
        if let super::balance::HashInput::Header(name) = &backend.spec.hash_input {
            kept.push(name.clone());
        }
    }
    if let Some(forwardfor) = &spec.options.forwardfor {
        kept.push(forwardfor.header.clone());
    }
    kept.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    kept.dedup();
    kept
}

/// The running proxy: every frontend and backend, for the request path and `show stat`.
pub struct Proxy {
    pub(super) frontends: Vec<FrontendState>,
    pub(super) backends: Vec<BackendState>,
    pub(super) board: watch::Receiver<HealthBoard>,
    /// Which frontend and which of its binds listens on each address.
    binds: HashMap<SocketAddr, (usize, usize)>,
    /// Loggers by target, shared by frontends logging to the same place.
    loggers: Vec<(LogTarget, Logger)>,
}

impl Proxy {
    /// Builds a snapshot. State that survives a reload is taken from `previous` where a
    /// frontend, backend or server of the same name (and, for servers, address) exists.
    /// `board_base` is the board index of the first backend (L4 services come first).
    pub(super) fn build(
        frontends: Vec<FrontendSpec>,
        backends: Vec<BackendSpec>,
        board_base: usize,
        board: watch::Receiver<HealthBoard>,
        previous: Option<&Proxy>,
    ) -> std::io::Result<Proxy> {
        let backends: Vec<BackendState> = backends
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let old =
                    previous.and_then(|p| p.backends.iter().find(|b| b.spec.name == spec.name));
                backend_state(spec, board_base + i, old)
            })
            .collect();
        let mut loggers: Vec<(LogTarget, Logger)> = Vec::new();
        let mut states = Vec::new();
        let mut binds = HashMap::new();
        for (f, spec) in frontends.into_iter().enumerate() {
            let reusable = previous
                .iter()
                .flat_map(|p| p.loggers.iter())
                .chain(loggers.iter())
                .find(|(t, _)| *t == spec.log)
                .map(|(_, logger)| logger.clone());
            let logger = match reusable {
                Some(logger) => logger,
                None => Logger::start(&spec.log)?,
            };
            if !loggers.iter().any(|(t, _)| *t == spec.log) {
                loggers.push((spec.log.clone(), logger.clone()));
            }
            let uses_acls =
                !spec.acls.is_empty() || backends.iter().any(|b| !b.spec.acls.is_empty());
            let uses_vars = !spec.request_rules.is_empty()
                || !spec.response_rules.is_empty()
                || backends
                    .iter()
                    .any(|b| !b.spec.request_rules.is_empty() || !b.spec.response_rules.is_empty());
            let kept_headers = kept_headers(&spec, &backends);
            for (i, bind) in spec.bind.iter().enumerate() {
                binds.insert(bind.addr, (f, i));
            }
            let old = previous.and_then(|p| p.frontend(&spec.name, spec.mode));
            let slots = match old {
                Some(old) if old.spec.maxconn == spec.maxconn => old.slots.clone(),
                _ => (spec.maxconn > 0).then(|| Arc::new(Semaphore::new(spec.maxconn as usize))),
            };
            states.push(FrontendState {
                uses_acls,
                uses_vars,
                kept_headers,
                counters: old.map_or_else(Arc::default, |o| o.counters.clone()),
                acceptors: spec
                    .bind
                    .iter()
                    .map(|b| b.tls.as_ref().map(|t| t.acceptor()))
                    .collect(),
                slots,
                retired: watch::channel(false).0,
                spec,
                logger,
            });
        }
        Ok(Proxy {
            frontends: states,
            backends,
            board,
            binds,
            loggers,
        })
    }

    /// How many frontends this snapshot has.
    pub fn frontend_count(&self) -> usize {
        self.frontends.len()
    }

    /// The frontend named `name` serving `mode`, if this snapshot has one.
    pub(super) fn frontend(&self, name: &str, mode: crate::config::Mode) -> Option<&FrontendState> {
        self.frontend_index(name, mode).map(|f| &self.frontends[f])
    }

    /// Index of the frontend named `name` serving `mode`.
    pub(super) fn frontend_index(&self, name: &str, mode: crate::config::Mode) -> Option<usize> {
        self.frontends
            .iter()
            .position(|f| f.spec.name == name && f.spec.mode == mode)
    }

    /// The frontend and bind listening on `addr`.
    pub(super) fn bind_of(&self, addr: SocketAddr) -> Option<(usize, usize)> {
        self.binds.get(&addr).copied()
    }

    /// Every address some frontend listens on.
    pub(super) fn bind_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.binds.keys().copied()
    }

    /// True if server `s` of backend `b` may take traffic: not checked, or in service on
    /// `board`.
    pub(super) fn server_up(&self, board: &HealthBoard, b: usize, s: usize) -> bool {
        !self.backends[b].servers[s].spec.check
            || self.health_of(board, b, s).is_none_or(|st| st.in_service())
    }

    /// The board's entry for server `s` of backend `b`. Found by position, checked by name:
    /// after a reload a request still running on an older snapshot may hold positions the
    /// board has given to other servers, and then the names find the right entry.
    fn health_of<'a>(
        &self,
        board: &'a HealthBoard,
        b: usize,
        s: usize,
    ) -> Option<&'a crate::health::BackendState> {
        let backend = &self.backends[b];
        let server = &backend.servers[s].spec.name;
        let named = |st: &&crate::health::BackendState| {
            st.service == backend.spec.name && st.server == *server
        };
        board
            .get(&(backend.board_index, s as u32))
            .filter(named)
            .or_else(|| board.values().find(named))
    }

    /// True if server `s` of backend `b` is down by its checks alone (not taken out by an
    /// operator): what `option persist` may still send a cookie's requests to.
    pub(super) fn server_checked_down(&self, board: &HealthBoard, b: usize, s: usize) -> bool {
        self.backends[b].servers[s].spec.check
            && self.health_of(board, b, s).is_some_and(|st| {
                st.verdict == crate::health::threshold::Verdict::Down
                    && st.admin == crate::health::Admin::Ready
            })
    }

    /// The current health board.
    pub(super) fn board(&self) -> HealthBoard {
        self.board.borrow().clone()
    }

    /// Sets the weight of `backend/server` (HAProxy's `set weight`); false if there is no
    /// such server.
    pub fn set_weight(&self, backend: &str, server: &str, weight: u32) -> bool {
        let found = self
            .backends
            .iter()
            .filter(|b| b.spec.name == backend)
            .flat_map(|b| b.servers.iter())
            .find(|s| s.spec.name == server);
        match found {
            Some(state) => {
                state
                    .weight
                    .store(weight, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    "Server {backend}/{server} weight set to {weight} (operator request)"
                );
                true
            }
            None => false,
        }
    }

    /// Reads from `board` when each checked server last came back up (a server up since
    /// start-up does not ramp, as in HAProxy), for `slowstart`.
    pub fn note_health(&self, board: &HealthBoard) {
        for backend in &self.backends {
            for (s, server) in backend.servers.iter().enumerate() {
                if server.spec.slowstart.is_zero() {
                    continue;
                }
                let since = match board
                    .get(&(backend.board_index, s as u32))
                    .filter(|st| st.service == backend.spec.name && st.server == server.spec.name)
                {
                    Some(state)
                        if state.verdict == crate::health::threshold::Verdict::Up
                            && state.transitions > 0 =>
                    {
                        state
                            .since
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64)
                    }
                    _ => 0,
                };
                server.up_since_ms.store(since, Ordering::Relaxed);
            }
        }
    }

    /// HAProxy-style `show stat`: one line per frontend, backend and server.
    pub fn render_stats(&self) -> String {
        let mut out = format!("{}\n", counters::HEADER);
        for frontend in &self.frontends {
            out.push_str(
                &frontend
                    .counters
                    .render(&format!("{}/FRONTEND", frontend.spec.name)),
            );
            out.push('\n');
        }
        for backend in &self.backends {
            for server in &backend.servers {
                let name = format!("{}/{}", backend.spec.name, server.spec.name);
                out.push_str(&server.counters.render(&name));
                out.push('\n');
            }
            out.push_str(
                &backend
                    .counters
                    .render(&format!("{}/BACKEND", backend.spec.name)),
            );
            out.push('\n');
        }
        out
    }
}

fn backend_state(
    spec: BackendSpec,
    board_index: usize,
    old: Option<&BackendState>,
) -> BackendState {
    let servers = spec
        .servers
        .iter()
        .map(|s| {
            let previous = old.and_then(|o| {
                o.servers
                    .iter()
                    .find(|p| p.spec.name == s.name && p.spec.addr == s.addr)
            });
            ServerState {
                spec: s.clone(),
                // Pooled TLS connections were made with the old settings: start afresh.
                pool: previous
                    .filter(|p| p.spec.tls.is_none() && s.tls.is_none())
                    .map_or_else(Arc::default, |p| p.pool.clone()),
                active: previous.map_or_else(Arc::default, |p| p.active.clone()),
                counters: previous.map_or_else(Arc::default, |p| p.counters.clone()),
                // A weight set at run time stays until the configured weight changes.
                weight: previous
                    .filter(|p| p.spec.weight == s.weight)
                    .map_or_else(|| Arc::new(AtomicU32::new(s.weight)), |p| p.weight.clone()),
                up_since_ms: previous.map_or_else(Arc::default, |p| p.up_since_ms.clone()),
            }
        })
        .collect();
    // Learnt sessions name servers by position: they carry over only when the servers did.
    let same_servers = old.is_some_and(|o| {
        o.spec.servers.len() == spec.servers.len()
            && o.spec
                .servers
                .iter()
                .zip(&spec.servers)
                .all(|(a, b)| a.name == b.name && a.addr == b.addr)
    });
    let sessions = match old.and_then(|o| o.sessions.as_ref()) {
        Some(table)
            if same_servers && old.is_some_and(|o| o.spec.stick_cookie == spec.stick_cookie) =>
        {
            Some(table.clone())
        }
        _ => spec
            .stick_cookie
            .as_ref()
            .map(|(name, size, expire)| Arc::new(SessionTable::new(name.clone(), *size, *expire))),
    };
    BackendState {
        balancer: Mutex::new(Balancer::new(spec.hash_type).all_backups(spec.options.allbackups)),
        servers,
        sessions,
        freed: old.map_or_else(Arc::default, |o| o.freed.clone()),
        counters: old.map_or_else(Arc::default, |o| o.counters.clone()),
        board_index,
        spec,
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc, time::Duration};

    use super::{Proxy, ramped};
    use crate::{
        config,
        health::{self, threshold::Verdict},
    };

    #[tokio::test]
    async fn health_is_found_by_name_when_positions_moved() {
        let text = "[[backend]]\nname = \"app\"\n\
                    servers = [{ name = \"a\", addr = \"10.0.2.11:80\" }, { name = \"b\", addr = \"10.0.2.12:80\" }]\n\
                    check = { kind = \"tcp\" }\n\n\
                    [[frontend]]\nname = \"www\"\nbind = [\"127.0.0.1:0\"]\ndefault_backend = \"app\"\n";
        let loaded = config::load_str(std::path::Path::new("lb.toml"), text).expect("config");
        let model = crate::dataplane::model::L4Model::from_config(&loaded);
        let targets = health::targets(&model, &loaded);
        // A board from a later layout: the two servers' positions swapped, `a` down.
        let mut board: BTreeMap<_, _> = (*health::initial_board(&targets)).clone();
        let (key_a, key_b) = (targets[0].key, targets[1].key);
        let mut state_a = board[&key_a].clone();
        let state_b = board[&key_b].clone();
        state_a.verdict = Verdict::Down;
        board.insert(key_a, state_b);
        board.insert(key_b, state_a);
        let board = Arc::new(board);
        let (_tx, rx) = tokio::sync::watch::channel(board.clone());
        let proxy = Proxy::build(
            loaded.resolved.frontends.clone(),
            loaded.resolved.backends.clone(),
            model.services.len(),
            rx,
            None,
        )
        .expect("snapshot");
        assert!(
            !proxy.server_up(&board, 0, 0),
            "a is down, wherever its entry sits"
        );
        assert!(proxy.server_up(&board, 0, 1));
    }

    #[test]
    fn slowstart_ramps_the_weight_up_from_one() {
        let ramp = Duration::from_secs(10);
        assert_eq!(
            ramped(100, 1_000, 1_000, ramp),
            1,
            "just up: the least weight"
        );
        assert_eq!(ramped(100, 1_000, 3_500, ramp), 25);
        assert_eq!(ramped(100, 1_000, 10_999, ramp), 100);
        assert_eq!(ramped(100, 1_000, 11_000, ramp), 100, "done");
        assert_eq!(ramped(1, 1_000, 1_500, ramp), 1);
    }
}
