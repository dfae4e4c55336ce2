//! The `lb run` lifecycle: validate the host against the config, load the data plane, fill its
//! maps, attach, keep next hops fresh, and on a shutdown signal detach and clean up.

use std::{collections::HashMap, future::Future, net::IpAddr, path::PathBuf, time::Duration};

use tokio::sync::watch;

use crate::{
    admin,
    config::{Config, ConfigError, XdpModeSetting},
    dataplane::{
        Dataplane, DataplaneError, MapSizes,
        model::L4Model,
        neigh::{NeighError, Nexthop, Resolver},
    },
    health::{self, HealthBoard},
    vrrp::{self, instance::Ownership},
};

/// How long start-up waits for reals' next hops to resolve.
const RESOLVE_PATIENCE: Duration = Duration::from_secs(2);
/// How often next hops are read again (a real's MAC or route may change).
const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// Why the agent could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration does not fit this host.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data plane could not be set up.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// Next hops could not be read.
    #[error("resolving next hops: {0}")]
    Neigh(#[from] NeighError),
    /// A frontend could not listen.
    #[error("L7 frontend: {0}")]
    Proxy(std::io::Error),
    /// The health-check thread could not start.
    #[error("health checks: {0}")]
    Health(std::io::Error),
}

/// Checks what only the host can tell: every configured interface exists.
pub fn check_host(config: &Config) -> Result<(), ConfigError> {
    let named = config
        .interfaces
        .iter()
        .map(|i| &i.name)
        .chain(config.vrrp.iter().map(|v| &v.interface));
    for name in named {
        if !interface_exists(name.get_ref()) {
            return Err(config.error_at(
                name.span(),
                format!(
                    "interface `{}` does not exist on this host (see `ip link`)",
                    name.get_ref()
                ),
            ));
        }
    }
    Ok(())
}

fn interface_exists(name: &str) -> bool {
    std::ffi::CString::new(name)
        // SAFETY: the argument is a valid NUL-terminated string.
        .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0)
        .unwrap_or(false)
}

/// Map sizes a model needs.
pub fn map_sizes(model: &L4Model) -> MapSizes {
    MapSizes {
        rings: model.max_services * model.settings.ring_size,
        conns: model.conn_table_size,
    }
}

fn real_addresses(model: &L4Model) -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = model.reals.iter().map(|r| r.addr).collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

fn log_unresolved(addrs: &[IpAddr], nexthops: &HashMap<IpAddr, Nexthop>) {
    for addr in addrs.iter().filter(|a| !nexthops.contains_key(a)) {
        tracing::warn!(real = %addr, "no route or neighbour entry for real; it gets no traffic until it resolves");
    }
}

/// Loads the data plane, fills its maps, attaches it per `config` (`force_mode` overrides
/// every interface's mode), keeps next hops fresh until `shutdown` resolves, then detaches and
/// removes the pins.
pub async fn run(
    config: Config,
    force_mode: Option<XdpModeSetting>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    check_host(&config)?;
    let sizes = map_sizes(&L4Model::from_config(&config));
    let mut dataplane = Dataplane::load(crate::LB_EBPF_OBJECT, &config.global.bpf_dir, sizes)?;
    // Maps adopted from a previous agent keep their ids, so unchanged services and reals
    // are not rewritten and their connection-table entries stay valid.
    let model = match dataplane.previous_ids() {
        Ok(previous) => {
            tracing::debug!(?previous, "ids found in the maps");
            L4Model::from_config_keeping(&config, &previous)
        }
        Err(error) => {
            dataplane.shutdown();
            return Err(error.into());
        }
    };
    let result = serve(&config, &model, force_mode, &mut dataplane, shutdown).await;
    dataplane.shutdown();
    result
}

/// True when the board has no entry for the backend (no check) or says it is up.
fn is_up(board: &HealthBoard, service: usize, real: u32) -> bool {
    board.get(&(service, real)).is_none_or(|s| s.in_service())
}

/// Where `lb stats -c` finds the health board of the agent pinning to `bpf_dir`.
pub fn health_status_path(bpf_dir: &std::path::Path) -> PathBuf {
    let name = bpf_dir
        .file_name()
        .map_or_else(|| "lb".into(), |n| n.to_string_lossy().into_owned());
    PathBuf::from("/run/lb").join(format!("{name}.health"))
}

fn write_status(path: &std::path::Path, board: &HealthBoard) {
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("health.tmp");
        std::fs::write(&tmp, health::render(board))?;
        std::fs::rename(&tmp, path)
    };
    if let Err(error) = write() {
        tracing::warn!(%error, "cannot write the health status to {}", path.display());
    }
}

/// VIPs covered by VRRP instances, and those owned (instance is master) in `ownership`.
fn vip_ownership(config: &Config, ownership: &Ownership) -> (Vec<IpAddr>, Vec<IpAddr>) {
    let mut covered = Vec::new();
    let mut owned = Vec::new();
    for spec in &config.resolved.vrrp {
        let master = ownership.get(&spec.name).is_some_and(|s| s.owns);
        for (vip, _) in &spec.vips {
            covered.push(*vip);
            if master {
                owned.push(*vip);
            }
        }
    }
    (covered, owned)
}

async fn serve(
    config: &Config,
    model: &L4Model,
    force_mode: Option<XdpModeSetting>,
    dataplane: &mut Dataplane,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut model = model.clone();
    let (ownership_tx, mut ownership_rx) = watch::channel(Ownership::default());
    let (covered, owned) = vip_ownership(config, &ownership_rx.borrow_and_update());
    model.set_vip_ownership(&covered, &owned);
    let model = &mut model;
    let resolver = Resolver::new()?;
    let addrs = real_addresses(model);
    let mut nexthops = resolver.resolve_all(&addrs, RESOLVE_PATIENCE).await?;
    log_unresolved(&addrs, &nexthops);
    let targets = health::targets(model, config);
    let (board_tx, mut board_rx) = watch::channel(health::initial_board(&targets));
    let mut board = board_rx.borrow_and_update().clone();
    // Maps first, then the program: the first packet already finds every service.
    let report = dataplane.apply(model, &nexthops, &|i, r| is_up(&board, i, r))?;
    tracing::info!(
        services = model.services.len(),
        reals = model.reals.len(),
        ring_slots_written = report.ring_slots,
        "L4 maps in place"
    );
    for interface in &config.interfaces {
        let mode = force_mode
            .or(interface.xdp_mode)
            .unwrap_or(config.global.xdp_mode);
        dataplane.attach(interface.name.get_ref(), mode)?;
    }
    let status_path = health_status_path(dataplane.bpf_dir());
    write_status(&status_path, &board);
    let _checks = health::spawn(targets, board_tx.clone()).map_err(AgentError::Health)?;
    let (_proxy_tasks, proxy) = if config.resolved.frontends.is_empty() {
        (None, None)
    } else {
        let (tasks, proxy) = crate::proxy::server::spawn(
            config.resolved.frontends.clone(),
            config.resolved.backends.clone(),
            model.services.len(),
            config.global.maxconn,
            board_rx.clone(),
        )
        .map_err(AgentError::Proxy)?;
        (Some(tasks), Some(proxy))
    };
    let api_path = admin::socket_path(dataplane.bpf_dir());
    let _api = match admin::listen(&api_path) {
        Ok(listener) => Some(tokio::spawn(admin::serve(listener, board_tx, proxy))),
        Err(error) => {
            tracing::warn!(%error, "runtime API unavailable at {}", api_path.display());
            None
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut instances = tokio::task::JoinSet::new();
    for spec in config.resolved.vrrp.clone() {
        let ownership = ownership_tx.clone();
        let mut stop = stop_rx.clone();
        let board = Some(board_rx.clone());
        instances.spawn(async move {
            let name = spec.name.clone();
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(error) = vrrp::instance::run(spec, ownership, board, stopped).await {
                tracing::error!(%error, instance = %name, "VRRP instance stopped");
            }
        });
    }
    tracing::info!(
        bpf_dir = %dataplane.bpf_dir().display(),
        interfaces = dataplane.attached().len(),
        health_checks = board.len(),
        "lb running"
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            changed = ownership_rx.changed() => {
                if changed.is_err() {
                    continue;
                }
                let (covered, owned) = vip_ownership(config, &ownership_rx.borrow_and_update());
                model.set_vip_ownership(&covered, &owned);
                let report = dataplane.apply(model, &nexthops, &|i, r| is_up(&board, i, r))?;
                tracing::info!(owned = ?owned, services_written = report.services, "VIP ownership changed");
            }
            changed = board_rx.changed() => {
                if changed.is_err() {
                    continue;
                }
                let fresh = board_rx.borrow_and_update().clone();
                let flipped = fresh.iter().any(|(k, s)| board.get(k).is_none_or(|old| old.in_service() != s.in_service()));
                board = fresh;
                if flipped {
                    let started = std::time::Instant::now();
                    let slots = dataplane.update_rings(model, &nexthops, &|i, r| is_up(&board, i, r));
                    tracing::info!(ring_slots = slots, took_us = started.elapsed().as_micros() as u64, "health changed; Maglev tables updated");
                }
                write_status(&status_path, &board);
            }
            () = tokio::time::sleep(REFRESH_INTERVAL) => {
                let fresh = resolver.resolve_all(&addrs, Duration::from_millis(200)).await?;
                if fresh != nexthops {
                    nexthops = fresh;
                    log_unresolved(&addrs, &nexthops);
                    let report = dataplane.apply(model, &nexthops, &|i, r| is_up(&board, i, r))?;
                    tracing::info!(?report, "next hops changed; maps updated");
                }
            }
        }
    }
    let _ = std::fs::remove_file(&status_path);
    let _ = std::fs::remove_file(&api_path);
    tracing::info!("shutting down");
    // VRRP masters leave first (priority 0, addresses removed), so backups take over at once.
    let _ = stop_tx.send(true);
    while instances.join_next().await.is_some() {}
    Ok(())
}
