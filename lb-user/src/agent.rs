//! The `lb run` lifecycle: validate the host against the config, load the data plane, fill its
//! maps, attach, keep next hops fresh, and on a shutdown signal detach and clean up.

use std::{collections::HashMap, future::Future, net::IpAddr, time::Duration};

use crate::{
    config::{Config, ConfigError, XdpModeSetting},
    dataplane::{
        Dataplane, DataplaneError, MapSizes,
        model::L4Model,
        neigh::{NeighError, Nexthop, Resolver},
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
}

/// Checks what only the host can tell: every configured interface exists.
pub fn check_host(config: &Config) -> Result<(), ConfigError> {
    for interface in &config.interfaces {
        let name = interface.name.get_ref();
        if !interface_exists(name) {
            return Err(config.error_at(
                interface.name.span(),
                format!("interface `{name}` does not exist on this host (see `ip link`)"),
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

async fn serve(
    config: &Config,
    model: &L4Model,
    force_mode: Option<XdpModeSetting>,
    dataplane: &mut Dataplane,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let resolver = Resolver::new()?;
    let addrs = real_addresses(model);
    let mut nexthops = resolver.resolve_all(&addrs, RESOLVE_PATIENCE).await?;
    log_unresolved(&addrs, &nexthops);
    // Maps first, then the program: the first packet already finds every service.
    let report = dataplane.apply(model, &nexthops, &|_, _| true)?;
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
    tracing::info!(
        bpf_dir = %dataplane.bpf_dir().display(),
        interfaces = dataplane.attached().len(),
        "lb running"
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(REFRESH_INTERVAL) => {
                let fresh = resolver.resolve_all(&addrs, Duration::from_millis(200)).await?;
                if fresh != nexthops {
                    nexthops = fresh;
                    log_unresolved(&addrs, &nexthops);
                    let report = dataplane.apply(model, &nexthops, &|_, _| true)?;
                    tracing::info!(?report, "next hops changed; maps updated");
                }
            }
        }
    }
    tracing::info!("shutting down");
    Ok(())
}
