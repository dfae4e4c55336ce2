//! The `lb run` lifecycle: validate the host against the config, load the data plane, fill its
//! maps, attach, keep next hops fresh, and on a shutdown signal detach and clean up.

mod reload;
pub mod upgrade;

use std::{
    collections::HashMap, future::Future, net::IpAddr, path::PathBuf, sync::Arc, time::Duration,
};

use tokio::sync::watch;

use crate::{
    admin,
    config::{Config, ConfigError, XdpModeSetting},
    dataplane::{
        Dataplane, DataplaneError, MapSizes, SyncReport,
        model::L4Model,
        neigh::{NeighError, Nexthop, Resolver},
    },
    health::{self, HealthBoard},
    proxy::listeners::ProxyRuntime,
    vrrp::{
        self,
        instance::{Ownership, Start, Stop},
    },
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
    /// Taking over from the running agent failed.
    #[error("binary upgrade: {0}")]
    Upgrade(std::io::Error),
    /// The VRRP thread could not start.
    #[error("VRRP thread: {0}")]
    Vrrp(std::io::Error),
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

/// How the agent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// On its own (pinned maps and links of a previous agent are adopted).
    Fresh,
    /// Taking over from the agent running with the same bpf_dir (binary upgrade): its
    /// listening sockets and VRRP mastership are inherited.
    Upgrade,
}

/// How [`serve`] ended.
enum Exit {
    /// Shutdown: detach and remove the pins.
    Stopped,
    /// A new agent took over: leave pins, links and files to it.
    HandedOver,
}

/// Loads the data plane, fills its maps, attaches it per `config` (`force_mode` overrides
/// every interface's mode), keeps next hops fresh until `shutdown` resolves, then detaches and
/// removes the pins (unless a new agent took over).
pub async fn run(
    config: Config,
    config_path: PathBuf,
    force_mode: Option<XdpModeSetting>,
    launch: Launch,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    check_host(&config)?;
    let inherited = match launch {
        Launch::Fresh => None,
        Launch::Upgrade => {
            let api = admin::socket_path(&config.global.bpf_dir);
            let inherited = tokio::task::spawn_blocking(move || upgrade::fetch(&api))
                .await
                .map_err(|e| AgentError::Upgrade(std::io::Error::other(e)))?
                .map_err(AgentError::Upgrade)?;
            tracing::info!(?inherited, "taking over from the running agent");
            Some(inherited)
        }
    };
    let sizes = map_sizes(&L4Model::from_config(&config));
    let mut dataplane = Dataplane::load(crate::LB_EBPF_OBJECT, &config.global.bpf_dir, sizes)?;
    // Maps adopted from a previous agent keep their ids, so unchanged services and reals
    // are not rewritten and their connection-table entries stay valid.
    let result = match dataplane.previous_ids() {
        Ok(previous) => {
            tracing::debug!(?previous, "ids found in the maps");
            let model = L4Model::from_config_keeping(&config, &previous);
            serve(
                config,
                config_path,
                &model,
                force_mode,
                &mut dataplane,
                inherited,
                shutdown,
            )
            .await
        }
        Err(error) => Err(error.into()),
    };
    match (&result, launch) {
        (Ok(Exit::HandedOver), _) => {
            // The new agent holds the pins and links: dropping ours leaves them in place.
            drop(dataplane);
            Ok(())
        }
        // A failed upgrade leaves the running agent its pins and links.
        (Err(_), Launch::Upgrade) => {
            drop(dataplane);
            result.map(|_| ())
        }
        _ => {
            dataplane.shutdown();
            result.map(|_| ())
        }
    }
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

/// A running VRRP instance.
struct Instance {
    spec: crate::config::VrrpSpec,
    stop: tokio::sync::oneshot::Sender<Stop>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts the VRRP instance `spec`; it stops as told by [`Instance::stop`] (or leaves
/// cleanly if the handle is dropped).
fn start_instance(
    spec: crate::config::VrrpSpec,
    start: vrrp::instance::Start,
    ownership: &watch::Sender<Ownership>,
    applied: &watch::Receiver<Ownership>,
    copied: &watch::Receiver<bool>,
    board: &watch::Receiver<HealthBoard>,
    runtime: &tokio::runtime::Handle,
) -> Instance {
    let (stop, stopped) = tokio::sync::oneshot::channel::<Stop>();
    let ownership = ownership.clone();
    let applied = Some(applied.clone());
    let copied = Some(copied.clone());
    let board = Some(board.clone());
    let run_spec = spec.clone();
    let task = runtime.spawn(async move {
        let name = run_spec.name.clone();
        let stopped = async move { stopped.await.unwrap_or(Stop::Leave) };
        if let Err(error) =
            vrrp::instance::run(run_spec, start, ownership, applied, copied, board, stopped).await
        {
            tracing::error!(%error, instance = %name, "VRRP instance stopped");
        }
    });
    Instance { spec, stop, task }
}

impl Instance {
    /// Stops the instance as `how` says and waits until it has.
    async fn stop(self, how: Stop) {
        let _ = self.stop.send(how);
        let _ = self.task.await;
    }
}

/// Everything the agent runs, kept together so a reload can change it piece by piece.
struct Running<'a> {
    config: Config,
    config_path: PathBuf,
    model: L4Model,
    sizes: MapSizes,
    force_mode: Option<XdpModeSetting>,
    dataplane: &'a mut Dataplane,
    resolver: Resolver,
    addrs: Vec<IpAddr>,
    nexthops: HashMap<IpAddr, Nexthop>,
    targets: Vec<health::Target>,
    /// The board as last seen by the main loop.
    board: HealthBoard,
    board_tx: watch::Sender<HealthBoard>,
    board_rx: watch::Receiver<HealthBoard>,
    checks: Option<health::Checks>,
    proxy: Arc<ProxyRuntime>,
    ownership_tx: watch::Sender<Ownership>,
    /// What the maps reflect of `ownership_tx`: new masters wait for it before announcing.
    applied_tx: watch::Sender<Ownership>,
    applied_rx: watch::Receiver<Ownership>,
    /// Whether the connection-table copy from the peers is complete (always, without sync).
    copied_rx: watch::Receiver<bool>,
    copied_tx: watch::Sender<bool>,
    /// The connection-table sync, when configured.
    sync: Option<SyncTask>,
    sync_counters: Arc<crate::sync::SyncCounters>,
    instances: Vec<Instance>,
    /// VRRP instances run on this thread: the proxy cannot delay their advertisements.
    vrrp_thread: crate::runtime_thread::RuntimeThread,
}

/// The running connection-table sync and what it was started with.
struct SyncTask {
    spec: crate::config::SyncSpec,
    hash_seed: u32,
    task: AbortOnDrop,
}

impl SyncTask {
    /// Stops the task and waits until it has let go of its socket.
    async fn stop(mut self) {
        self.task.0.abort();
        let _ = (&mut self.task.0).await;
    }
}

impl Running<'_> {
    /// Starts, restarts or stops the connection-table sync to match the configuration (its
    /// `[sync]` table and the hash seed); what it did, for the reload summary.
    async fn follow_sync_config(&mut self) -> &'static str {
        let wanted = self.config.resolved.sync.clone();
        let hash_seed = self.config.global.hash_seed;
        let same = match (&self.sync, &wanted) {
            (Some(running), Some(spec)) => running.spec == *spec && running.hash_seed == hash_seed,
            (None, None) => true,
            _ => false,
        };
        if same {
            return if wanted.is_some() { "kept" } else { "off" };
        }
        let was_running = self.sync.is_some();
        if let Some(running) = self.sync.take() {
            running.stop().await;
        }
        let Some(spec) = wanted else {
            // Nothing to wait for any more.
            self.copied_tx.send_replace(true);
            return "stopped";
        };
        let (counters, copied) = (self.sync_counters.clone(), self.copied_tx.clone());
        let bpf_dir = self.dataplane.bpf_dir().to_path_buf();
        let task_spec = spec.clone();
        let task = AbortOnDrop(tokio::spawn(async move {
            if let Err(error) =
                crate::sync::run(task_spec, bpf_dir, hash_seed, counters, copied).await
            {
                tracing::error!(%error, "connection-table sync stopped");
            }
        }));
        self.sync = Some(SyncTask {
            spec,
            hash_seed,
            task,
        });
        if was_running { "restarted" } else { "started" }
    }

    /// Writes the whole model to the maps (after a VIP ownership or next-hop change).
    fn sync_maps(&mut self) -> Result<SyncReport, DataplaneError> {
        let board = &self.board;
        self.dataplane
            .apply(&self.model, &self.nexthops, &|i, r| is_up(board, i, r))
    }

    /// Marks services active where their VIP is owned by a VRRP master here.
    fn set_ownership(&mut self, ownership: &Ownership) -> Vec<IpAddr> {
        let (covered, owned) = vip_ownership(&self.config, ownership);
        self.model.set_vip_ownership(&covered, &owned);
        owned
    }

    /// Attaches the program to the configured interfaces not attached yet.
    fn attach_all(&mut self) -> Result<(), DataplaneError> {
        for interface in &self.config.interfaces {
            let name = interface.name.get_ref();
            if self.dataplane.attached().iter().any(|(n, _)| n == name) {
                continue;
            }
            let mode = self
                .force_mode
                .or(interface.xdp_mode)
                .unwrap_or(self.config.global.xdp_mode);
            self.dataplane.attach(name, mode)?;
        }
        Ok(())
    }
}

async fn serve(
    config: Config,
    config_path: PathBuf,
    model: &L4Model,
    force_mode: Option<XdpModeSetting>,
    dataplane: &mut Dataplane,
    mut inherited: Option<upgrade::Inherited>,
    shutdown: impl Future<Output = ()>,
) -> Result<Exit, AgentError> {
    // Instances the previous agent was master of are master here from the start, so the
    // first map sync already forwards for their VIPs.
    let masters: Vec<String> = inherited
        .as_ref()
        .map(|i| i.masters.clone())
        .unwrap_or_default();
    let seeded: Ownership = Arc::new(
        masters
            .iter()
            .map(|name| {
                let status = vrrp::instance::InstanceStatus {
                    state: vrrp::fsm::State::Master,
                    owns: true,
                    tracking_fault: false,
                };
                (name.clone(), status)
            })
            .collect(),
    );
    let (applied_tx, applied_rx) = watch::channel(seeded.clone());
    let (copied_tx, copied_rx) = watch::channel(config.resolved.sync.is_none());
    let (ownership_tx, mut ownership_rx) = watch::channel(seeded);
    let resolver = Resolver::new()?;
    let addrs = real_addresses(model);
    let nexthops = resolver.resolve_all(&addrs, RESOLVE_PATIENCE).await?;
    log_unresolved(&addrs, &nexthops);
    let targets = health::targets(model, &config);
    let (board_tx, mut board_rx) = watch::channel(health::initial_board(&targets));
    let board = board_rx.borrow_and_update().clone();
    let proxy = ProxyRuntime::start(
        config.resolved.frontends.clone(),
        config.resolved.backends.clone(),
        model.services.len(),
        config.global.maxconn,
        board_rx.clone(),
        inherited
            .as_mut()
            .map(|i| std::mem::take(&mut i.listeners))
            .unwrap_or_default(),
    )
    .map_err(AgentError::Proxy)?;
    let mut running = Running {
        sizes: map_sizes(model),
        model: model.clone(),
        config,
        config_path,
        force_mode,
        dataplane,
        resolver,
        addrs,
        nexthops,
        targets,
        board,
        board_tx,
        board_rx: board_rx.clone(),
        checks: None,
        proxy,
        ownership_tx,
        applied_tx,
        applied_rx,
        copied_rx,
        copied_tx,
        sync: None,
        sync_counters: Arc::new(crate::sync::SyncCounters::default()),
        instances: Vec::new(),
        vrrp_thread: crate::runtime_thread::RuntimeThread::start("lb-vrrp")
            .map_err(AgentError::Vrrp)?,
    };
    running.set_ownership(&ownership_rx.borrow_and_update());
    // Maps first, then the program: the first packet already finds every service.
    let report = running.sync_maps()?;
    tracing::info!(
        services = running.model.services.len(),
        reals = running.model.reals.len(),
        ring_slots_written = report.ring_slots,
        "L4 maps in place"
    );
    running.attach_all()?;
    let status_path = health_status_path(running.dataplane.bpf_dir());
    write_status(&status_path, &running.board);
    running.checks = Some(
        health::spawn(running.targets.clone(), running.board_tx.clone())
            .map_err(AgentError::Health)?,
    );
    // Connection-table sync with the peers, when configured (after a binary upgrade, once
    // the previous agent has let go of the sync port).
    if inherited.is_none() {
        running.follow_sync_config().await;
    }
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel(4);
    let api_path = admin::socket_path(running.dataplane.bpf_dir());
    let _api = match admin::listen(&api_path) {
        Ok(listener) => Some(AbortOnDrop(tokio::spawn(admin::serve(
            listener,
            running.board_tx.clone(),
            running.proxy.clone(),
            control_tx,
            running.sync_counters.clone(),
            std::fs::canonicalize(&running.config_path)
                .unwrap_or_else(|_| running.config_path.clone()),
        )))),
        Err(error) => {
            tracing::warn!(%error, "runtime API unavailable at {}", api_path.display());
            None
        }
    };
    for spec in running.config.resolved.vrrp.clone() {
        let start = if masters.contains(&spec.name) {
            Start::Resume
        } else {
            Start::Elect
        };
        let instance = start_instance(
            spec,
            start,
            &running.ownership_tx,
            &running.applied_rx,
            &running.copied_rx,
            &running.board_rx,
            running.vrrp_thread.handle(),
        );
        running.instances.push(instance);
    }
    if let Some(inherited) = inherited {
        // Everything runs here: the old agent may stop accepting and leave.
        let answer = tokio::task::spawn_blocking(move || inherited.finish())
            .await
            .map_err(|e| AgentError::Upgrade(std::io::Error::other(e)))?
            .map_err(AgentError::Upgrade)?;
        tracing::info!(%answer, "the previous agent is handing over");
        running.follow_sync_config().await;
    }
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(AgentError::Health)?;
    tracing::info!(
        bpf_dir = %running.dataplane.bpf_dir().display(),
        interfaces = running.dataplane.attached().len(),
        health_checks = running.board.len(),
        "lb running"
    );
    tokio::pin!(shutdown);
    // One schedule for the next-hop refresh, kept across passes of the loop: the health
    // board publishes on every probe result, and a sleep made anew on each pass would never
    // run out while checks run.
    let mut refresh = tokio::time::interval(REFRESH_INTERVAL);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.reset();
    let exit = loop {
        tokio::select! {
            () = &mut shutdown => break Exit::Stopped,
            _ = hangup.recv() => {
                match running.reload().await {
                    Ok(summary) => tracing::info!("reload (SIGHUP): {summary}"),
                    Err(error) => tracing::error!("reload (SIGHUP) refused, the running configuration stays: {error}"),
                }
            }
            Some(request) = control_rx.recv() => match request {
                admin::Control::Reload(answer) => {
                    let reply = match running.reload().await {
                        Ok(summary) => {
                            tracing::info!("reload: {summary}");
                            format!("ok: {summary}\n")
                        }
                        Err(error) => {
                            tracing::error!("reload refused, the running configuration stays: {error}");
                            format!("error: {error}\n")
                        }
                    };
                    let _ = answer.send(reply);
                }
                admin::Control::UpgradeState(answer) => {
                    let masters = ownership_rx
                        .borrow()
                        .iter()
                        .filter(|(_, status)| status.owns)
                        .map(|(name, _)| name.clone())
                        .collect();
                    let _ = answer.send(upgrade::State {
                        listeners: running.proxy.listener_fds(),
                        masters,
                    });
                }
                admin::Control::HandOver(answer) => {
                    let _ = answer.send("ok: handing over\n".to_string());
                    break Exit::HandedOver;
                }
            },
            changed = ownership_rx.changed() => {
                if changed.is_err() {
                    continue;
                }
                let ownership = ownership_rx.borrow_and_update().clone();
                let owned = running.set_ownership(&ownership);
                let report = running.sync_maps()?;
                running.applied_tx.send_replace(ownership);
                tracing::info!(owned = ?owned, services_written = report.services, "VIP ownership changed");
            }
            changed = board_rx.changed() => {
                if changed.is_err() {
                    continue;
                }
                let fresh = board_rx.borrow_and_update().clone();
                let flipped = fresh.iter().any(|(k, s)| running.board.get(k).is_none_or(|old| old.in_service() != s.in_service()));
                running.board = fresh;
                running.proxy.current().note_health(&running.board);
                if flipped {
                    let started = std::time::Instant::now();
                    let board = &running.board;
                    let slots = running.dataplane.update_rings(&running.model, &running.nexthops, &|i, r| is_up(board, i, r));
                    tracing::info!(ring_slots = slots, took_us = started.elapsed().as_micros() as u64, "health changed; Maglev tables updated");
                }
                write_status(&status_path, &running.board);
            }
            _ = refresh.tick() => {
                // A failed look-up keeps the next hops known so far; the next tick tries again.
                match running.resolver.resolve_all(&running.addrs, Duration::from_millis(200)).await {
                    Ok(fresh) if fresh != running.nexthops => {
                        running.nexthops = fresh;
                        log_unresolved(&running.addrs, &running.nexthops);
                        match running.sync_maps() {
                            Ok(report) => tracing::info!(?report, "next hops changed; maps updated"),
                            Err(error) => tracing::error!(%error, "next hops changed; writing the maps failed"),
                        }
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "next-hop refresh failed; keeping the known next hops"),
                }
            }
        }
    };
    if let Exit::HandedOver = exit {
        hand_over(&mut running).await;
        return Ok(exit);
    }
    let _ = std::fs::remove_file(&status_path);
    let _ = std::fs::remove_file(&api_path);
    tracing::info!("shutting down");
    // VRRP masters leave first (priority 0, addresses removed), so backups take over at once.
    for instance in std::mem::take(&mut running.instances) {
        instance.stop(Stop::Leave).await;
    }
    Ok(exit)
}

/// How long a replaced agent waits for its connections to finish.
const HANDOVER_GRACE: Duration = Duration::from_secs(60);

/// The old agent's part of a binary upgrade, after the new one runs: stop accepting, stop
/// VRRP without leaving, stop checking, let connections finish. Pins, links, the runtime
/// API socket and the status file now belong to the new agent and stay.
async fn hand_over(running: &mut Running<'_>) {
    if let Err(error) = running.proxy.hand_over() {
        tracing::error!(%error, "handing the proxy over");
    }
    for instance in std::mem::take(&mut running.instances) {
        instance.stop(Stop::HandOver).await;
    }
    drop(running.checks.take());
    // The new agent takes the sync port.
    if let Some(sync) = running.sync.take() {
        sync.stop().await;
    }
    let started = std::time::Instant::now();
    loop {
        let live = running.proxy.live_connections();
        if live == 0 {
            break;
        }
        if started.elapsed() > HANDOVER_GRACE {
            tracing::warn!(
                live,
                "closing connections still open after the grace period"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!("handed over to the new agent; exiting");
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
