//! Configuration: one TOML file, parsed strictly (unknown keys are errors) and validated.
//!
//! Layout: `model` holds the typed sections as they appear in the file; `load` reads and parses
//! a file and turns every failure into a [`ConfigError`] that names file, line, column and key;
//! `validate` checks what serde cannot (names, duplicates), with `proxy` for the L7 sections. Later issues add sections (`l4`,
//! `vrrp`, `frontend`, ...) to the model.

mod duration;
mod load;
mod model;
mod proxy;
mod validate;

pub use duration::parse_duration;
pub use proxy::{
    BackendSpec, Bind, ConnectionMode, ErrorPage, Forwardfor, FrontendSpec, HeadLimits, LogTarget,
    Mode, ProxyOptions, ServerSpec, parse_error_page,
};
pub use validate::{
    CheckSpec, NotifySpec, RealSpec, Resolved, ServiceSpec, SyncSpec, TrackScriptSpec, VrrpSpec,
};

pub use load::{ConfigError, load_file, load_str};
pub use model::{
    AllDown, CheckConfig, CheckKind, Config, ForwardMode, Global, HashFields, Interface,
    L4Protocol, L4Service, Origin, RealServer, XdpModeSetting,
};
