//! Health checks: one verdict per backend, published as an immutable snapshot (the
//! [`HealthBoard`]) that the L4 data plane reads (and later the L7 proxy and VRRP tracking).
//!
//! Layout: `probe` runs one check (TCP, HTTP, script); `threshold` turns results into a
//! verdict with HAProxy's rise/fall and interval rules; this file schedules one task per
//! backend and publishes every change. A slow check only delays its own backend.

pub mod probe;
pub mod threshold;

use std::{
    collections::BTreeMap,
    hash::{BuildHasher as _, Hasher as _},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use self::{
    probe::Outcome,
    threshold::{Tracker, Verdict},
};
use crate::{
    config::{CheckSpec, Config},
    dataplane::model::L4Model,
};

/// A backend: (index of the L4 service in the model, real id).
pub type BackendKey = (usize, u32);

/// What the checks currently say about one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendState {
    /// Service name.
    pub service: String,
    /// Server name (`address:port`).
    pub server: String,
    /// Up or down.
    pub verdict: Verdict,
    /// The last check, if one ran.
    pub last: Option<Outcome>,
    /// When the verdict last changed (or checking started).
    pub since: SystemTime,
    /// Checks run.
    pub checks: u64,
    /// Verdict changes.
    pub transitions: u64,
    /// What an operator set (HAProxy's `set server ... state`).
    pub admin: Admin,
}

/// Operator states of a backend, set at run time (`lb ctl set server ... state ...`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Admin {
    /// In service when its checks pass.
    #[default]
    Ready,
    /// No new flows; established ones continue (HAProxy `drain`, LVS weight 0).
    Drain,
    /// Out of service whatever the checks say (HAProxy `maint`).
    Maint,
}

impl BackendState {
    /// Takes new flows: checks pass and the operator has not taken it out.
    pub fn in_service(&self) -> bool {
        self.verdict == Verdict::Up && self.admin == Admin::Ready
    }

    /// The state word `lb stats` prints.
    pub fn word(&self) -> &'static str {
        match (self.admin, self.verdict) {
            (Admin::Maint, _) => "MAINT",
            (Admin::Drain, _) => "DRAIN",
            (Admin::Ready, Verdict::Up) => "UP",
            (Admin::Ready, Verdict::Down) => "DOWN",
        }
    }
}

/// Sets the operator state of `service/server` on the board; false if there is no such
/// backend. A changed board is published to every reader like a check result.
pub fn set_admin(
    board: &watch::Sender<HealthBoard>,
    service: &str,
    server: &str,
    admin: Admin,
) -> bool {
    let mut found = false;
    board.send_modify(|board| {
        for state in Arc::make_mut(board).values_mut() {
            if state.service == service && state.server == server {
                state.admin = admin;
                state.since = SystemTime::now();
                found = true;
            }
        }
    });
    if found {
        tracing::warn!("Server {service}/{server} is going {admin:?} (operator request)");
    }
    found
}

/// The immutable snapshot every reader gets; a new one is published on each check result.
pub type HealthBoard = Arc<BTreeMap<BackendKey, BackendState>>;

/// One backend to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its key on the board.
    pub key: BackendKey,
    /// Service name.
    pub service: String,
    /// Server name (`address:port`).
    pub server: String,
    /// Where the check connects (the real, or the check's `addr`/`port`).
    pub addr: SocketAddr,
    /// The check.
    pub check: CheckSpec,
}

/// The backends of every L4 service that has a check.
pub fn targets(model: &L4Model, config: &Config) -> Vec<Target> {
    let mut targets = Vec::new();
    for (index, service) in model.services.iter().enumerate() {
        let Some(check) = config.resolved.l4.get(index).and_then(|s| s.check.as_ref()) else {
            continue;
        };
        for (real_id, _) in &service.members {
            let Some(real) = model.real(*real_id) else {
                continue;
            };
            targets.push(Target {
                key: (index, *real_id),
                service: service.name.clone(),
                server: SocketAddr::new(real.addr, real.port).to_string(),
                addr: SocketAddr::new(
                    check.addr.unwrap_or(real.addr),
                    check.port.unwrap_or(real.port),
                ),
                check: check.clone(),
            });
        }
    }
    // L7 backends follow the L4 services on the board: backend b is entry l4_count + b,
    // server s of it is real id s, named as HAProxy names them (`backend/server`).
    for (b, backend) in config.resolved.backends.iter().enumerate() {
        let Some(check) = &backend.check else {
            continue;
        };
        for (s, server) in backend.servers.iter().enumerate() {
            if !server.check {
                continue;
            }
            targets.push(Target {
                key: (model.services.len() + b, s as u32),
                service: backend.name.clone(),
                server: server.name.clone(),
                addr: SocketAddr::new(
                    check.addr.unwrap_or(server.addr.ip()),
                    check.port.unwrap_or(server.addr.port()),
                ),
                check: check.clone(),
            });
        }
    }
    targets
}

/// The board before any check ran: every backend up, as HAProxy starts its servers.
pub fn initial_board(targets: &[Target]) -> HealthBoard {
    let now = SystemTime::now();
    Arc::new(targets.iter().map(|t| (t.key, starting(t, now))).collect())
}

/// A target's state before any check ran: up, as HAProxy starts its servers.
fn starting(target: &Target, now: SystemTime) -> BackendState {
    BackendState {
        service: target.service.clone(),
        server: target.server.clone(),
        verdict: Verdict::Up,
        last: None,
        since: now,
        checks: 0,
        transitions: 0,
        admin: Admin::Ready,
    }
}

/// A pseudo-random fraction of `span`, so checks of many backends do not fire together.
fn jitter(span: Duration) -> Duration {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let fraction = (hasher.finish() % 1000) as u32;
    span * fraction / 1000
}

/// The board for a new set of targets (after a reload): a target that was checked before,
/// same backend name, server name, address and check, keeps its state (verdict, counts,
/// operator state); new ones start up, as at start-up. Also returns how many kept theirs.
pub fn carry_over(
    targets: &[Target],
    old_targets: &[Target],
    old_board: &HealthBoard,
) -> (HealthBoard, usize) {
    let now = SystemTime::now();
    let mut kept_count = 0;
    let board = targets
        .iter()
        .map(|target| {
            let kept = old_targets
                .iter()
                .find(|o| {
                    o.service == target.service
                        && o.server == target.server
                        && o.addr == target.addr
                        && o.check == target.check
                })
                .and_then(|o| old_board.get(&o.key));
            let state = match kept {
                Some(state) => {
                    kept_count += 1;
                    state.clone()
                }
                None => starting(target, now),
            };
            (target.key, state)
        })
        .collect();
    (Arc::new(board), kept_count)
}

/// Running health checks, on a thread and runtime of their own: a busy proxy on the agent's
/// runtime cannot delay a check past its timeout and mark a healthy server down. Dropping
/// this stops them and waits for the thread, so no result of theirs is published after.
pub struct Checks {
    // Field order is drop order: the tasks are aborted, then the thread stops.
    _tasks: tokio::task::JoinSet<()>,
    _thread: crate::runtime_thread::RuntimeThread,
}

/// Starts checking `targets`, publishing results on `board`. Each target starts from the
/// verdict the board holds for it.
pub fn spawn(targets: Vec<Target>, board: watch::Sender<HealthBoard>) -> std::io::Result<Checks> {
    let thread = crate::runtime_thread::RuntimeThread::start("lb-health")?;
    let tasks = spawn_tasks(targets, board, thread.handle());
    Ok(Checks {
        _tasks: tasks,
        _thread: thread,
    })
}

fn spawn_tasks(
    targets: Vec<Target>,
    board: watch::Sender<HealthBoard>,
    runtime: &tokio::runtime::Handle,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for target in targets {
        let board = board.clone();
        let verdict = board
            .borrow()
            .get(&target.key)
            .map_or(Verdict::Up, |s| s.verdict);
        tasks.spawn_on(
            async move {
                let timing = target.check.timing;
                let mut tracker = Tracker::starting(verdict);
                // The first check lands somewhere in the first interval.
                tokio::time::sleep(jitter(timing.inter)).await;
                loop {
                    let outcome = target
                        .check
                        .probe
                        .run(target.addr, target.check.timeout)
                        .await;
                    let change = tracker.record(outcome.passed, &timing);
                    publish(&board, &target, &outcome, change);
                    // Up to a tenth of the interval of jitter keeps backends from synchronising.
                    let interval = tracker.next_interval(&timing);
                    tokio::time::sleep(interval + jitter(interval / 10)).await;
                }
            },
            runtime,
        );
    }
    tasks
}

fn publish(
    board: &watch::Sender<HealthBoard>,
    target: &Target,
    outcome: &Outcome,
    change: Option<Verdict>,
) {
    board.send_modify(|board| {
        let map = Arc::make_mut(board);
        if let Some(state) = map.get_mut(&target.key) {
            state.checks += 1;
            state.last = Some(outcome.clone());
            if let Some(verdict) = change {
                state.verdict = verdict;
                state.since = SystemTime::now();
                state.transitions += 1;
            }
        }
        if let Some(verdict) = change {
            let active = map
                .iter()
                .filter(|((service, _), s)| *service == target.key.0 && s.verdict == Verdict::Up)
                .count();
            let word = if verdict == Verdict::Up { "UP" } else { "DOWN" };
            let code = outcome.code.map(|c| format!(", code: {c}")).unwrap_or_default();
            tracing::warn!(
                "Server {}/{} is {word}, reason: {}{code}, check duration: {}ms. {active} active servers left.",
                target.service,
                target.server,
                outcome.reason,
                outcome.duration.as_millis()
            );
        }
    });
}

/// Renders the board for `lb stats` (one line per backend).
pub fn render(board: &BTreeMap<BackendKey, BackendState>) -> String {
    let now = SystemTime::now();
    let mut out = format!(
        "{:<16} {:<28} {:<6} {:<32} {:>10} {:>12}\n",
        "service", "server", "state", "last check", "duration", "since"
    );
    for state in board.values() {
        let (last, duration) = match &state.last {
            Some(o) => (
                format!(
                    "{}{}",
                    o.reason,
                    o.code.map(|c| format!(" ({c})")).unwrap_or_default()
                ),
                format!("{}ms", o.duration.as_millis()),
            ),
            None => ("none yet".into(), "-".into()),
        };
        let since = now.duration_since(state.since).map_or(0, |d| d.as_secs());
        let verdict = state.word();
        out.push_str(&format!(
            "{:<16} {:<28} {:<6} {:<32} {:>10} {:>11}s\n",
            state.service,
            state.server,
            verdict,
            last.chars().take(32).collect::<String>(),
            duration,
            since
        ));
    }
    out
}
