//! The `lb run` lifecycle: validate the host against the config, load and attach the data
//! plane, wait for a shutdown signal, detach and clean up.

use std::future::Future;

use crate::{
    config::{Config, ConfigError, XdpModeSetting},
    dataplane::{Dataplane, DataplaneError},
};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration does not fit this host.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data plane could not be set up.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
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

/// Loads the data plane, attaches it per `config` (`force_mode` overrides every interface's
/// mode), runs until `shutdown` resolves, then detaches and removes the pins.
pub async fn run(
    config: Config,
    force_mode: Option<XdpModeSetting>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    check_host(&config)?;
    let mut dataplane = Dataplane::load(crate::LB_EBPF_OBJECT, &config.global.bpf_dir)?;
    for interface in &config.interfaces {
        let mode = force_mode
            .or(interface.xdp_mode)
            .unwrap_or(config.global.xdp_mode);
        if let Err(error) = dataplane.attach(interface.name.get_ref(), mode) {
            dataplane.shutdown();
            return Err(error.into());
        }
    }
    tracing::info!(
        bpf_dir = %dataplane.bpf_dir().display(),
        interfaces = dataplane.attached().len(),
        "lb running"
    );
    shutdown.await;
    tracing::info!("shutting down");
    dataplane.shutdown();
    Ok(())
}
