//! Tracking (keepalived `track_interface`, `track_script`, plus the node's own service
//! health): turns what it watches into one [`Tracking`] value, fault or a priority change,
//! that the instance feeds to its state machine.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::TryStreamExt as _;
use netlink_packet_route::link::LinkFlags;
use tokio::{sync::watch, task::JoinSet};

use crate::{
    config::{TrackScriptSpec, VrrpSpec},
    health::{
        HealthBoard,
        probe::Probe,
        threshold::{Timing, Tracker, Verdict},
    },
};

/// What tracking says now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tracking {
    /// Something with weight 0 (or an interface) is failing: FAULT.
    pub fault: bool,
    /// Sum of the weights in effect.
    pub delta: i32,
}

/// The state of every tracked thing; recomputed into a [`Tracking`] on each change.
#[derive(Debug, Default)]
struct Parts {
    interfaces_down: Vec<bool>,
    scripts_failing: Vec<bool>,
    services_failing: Vec<bool>,
}

fn combine(parts: &Parts, spec: &VrrpSpec) -> Tracking {
    let mut tracking = Tracking {
        fault: parts.interfaces_down.iter().any(|d| *d),
        delta: 0,
    };
    let weighted = spec
        .track_scripts
        .iter()
        .map(|s| s.weight)
        .zip(parts.scripts_failing.iter())
        .chain(
            spec.track_services
                .iter()
                .map(|(_, w)| *w)
                .zip(parts.services_failing.iter()),
        );
    for (weight, failing) in weighted {
        match (weight, *failing) {
            (0, true) => tracking.fault = true,
            (w, true) if w < 0 => tracking.delta += w,
            (w, false) if w > 0 => tracking.delta += w,
            _ => {}
        }
    }
    tracking
}

/// Starts the tracking tasks of `spec`; `board` feeds `track_services`. The tasks stop when
/// the returned set is dropped.
pub fn spawn(
    spec: &VrrpSpec,
    board: Option<watch::Receiver<HealthBoard>>,
) -> (watch::Receiver<Tracking>, JoinSet<()>) {
    let parts = Arc::new(Mutex::new(Parts {
        interfaces_down: vec![false; spec.track_interfaces.len()],
        scripts_failing: vec![false; spec.track_scripts.len()],
        services_failing: vec![false; spec.track_services.len()],
    }));
    let (tx, rx) = watch::channel(Tracking::default());
    let tx = Arc::new(tx);
    let mut tasks = JoinSet::new();
    let update = {
        let parts = parts.clone();
        let spec = spec.clone();
        let tx = tx.clone();
        move |change: &dyn Fn(&mut Parts)| {
            if let Ok(mut parts) = parts.lock() {
                change(&mut parts);
                let tracking = combine(&parts, &spec);
                tx.send_if_modified(|t| {
                    let changed = *t != tracking;
                    *t = tracking;
                    changed
                });
            }
        }
    };
    let update = Arc::new(update);
    if !spec.track_interfaces.is_empty() {
        let names = spec.track_interfaces.clone();
        let update = update.clone();
        tasks.spawn(async move {
            let Ok((connection, handle, _)) = rtnetlink::new_connection() else {
                tracing::error!("track_interface: no netlink socket");
                return;
            };
            tokio::spawn(connection);
            loop {
                for (i, name) in names.iter().enumerate() {
                    let up = handle
                        .link()
                        .get()
                        .match_name(name.clone())
                        .execute()
                        .try_next()
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|l| {
                            l.header.flags.contains(LinkFlags::Up)
                                && l.header.flags.contains(LinkFlags::LowerUp)
                        });
                    update(&|p: &mut Parts| p.interfaces_down[i] = !up);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    for (i, script) in spec.track_scripts.iter().cloned().enumerate() {
        let update = update.clone();
        tasks.spawn(async move { run_script(i, script, update).await });
    }
    if let Some(mut board) = board.filter(|_| !spec.track_services.is_empty()) {
        let services: Vec<usize> = spec
            .track_services
            .iter()
            .map(|(index, _)| *index)
            .collect();
        let update = update.clone();
        tasks.spawn(async move {
            loop {
                let snapshot = board.borrow_and_update().clone();
                for (i, service) in services.iter().enumerate() {
                    let any_up = snapshot
                        .iter()
                        .any(|((s, _), state)| s == service && state.verdict == Verdict::Up);
                    update(&|p: &mut Parts| p.services_failing[i] = !any_up);
                }
                if board.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    (rx, tasks)
}

async fn run_script(
    index: usize,
    script: TrackScriptSpec,
    update: Arc<impl Fn(&dyn Fn(&mut Parts)) + Send + Sync>,
) {
    let probe = Probe::Script {
        path: script.path.clone(),
        args: Vec::new(),
    };
    let timing = Timing {
        rise: script.rise,
        fall: script.fall,
        inter: script.interval,
        fastinter: script.interval,
        downinter: script.interval,
    };
    let mut tracker = Tracker::new();
    let unused: std::net::SocketAddr = ([0, 0, 0, 0], 0).into();
    loop {
        let outcome = probe.run(unused, script.timeout).await;
        if let Some(verdict) = tracker.record(outcome.passed, &timing) {
            tracing::info!(script = %script.path.display(), ?verdict, "track script changed");
        }
        let failing = tracker.verdict() == Verdict::Down;
        update(&|p: &mut Parts| p.scripts_failing[index] = failing);
        tokio::time::sleep(script.interval).await;
    }
}
