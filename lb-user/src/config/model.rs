//! The configuration's shape, as it appears in `lb.toml`.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings for the whole node.
    #[serde(default)]
    pub global: Global,
    /// Interfaces where `lb_ingress` is attached (`[[interface]]` tables).
    #[serde(default, rename = "interface")]
    pub interfaces: Vec<Interface>,
    /// Where the configuration came from, to locate errors found after loading.
    #[serde(skip)]
    pub origin: Origin,
}

/// The file a [`Config`] was read from and its text.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// Path of the file.
    pub path: PathBuf,
    /// Its contents, as parsed.
    pub source: String,
}

impl Config {
    /// An error about the value at byte range `span` of the file (from a `Spanned` field).
    pub fn error_at(&self, span: std::ops::Range<usize>, message: String) -> super::ConfigError {
        super::ConfigError::at(&self.origin.path, &self.origin.source, Some(span), message)
    }
}

/// The `[global]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// bpffs directory where programs and maps are pinned.
    #[serde(default = "default_bpf_dir")]
    pub bpf_dir: PathBuf,
    /// How XDP is attached unless an interface says otherwise.
    #[serde(default)]
    pub xdp_mode: XdpModeSetting,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            bpf_dir: default_bpf_dir(),
            xdp_mode: XdpModeSetting::default(),
        }
    }
}

fn default_bpf_dir() -> PathBuf {
    PathBuf::from(lb_common::maps::DEFAULT_PIN_DIR)
}

/// One `[[interface]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    /// Kernel interface name (`eth0`).
    pub name: Spanned<String>,
    /// Overrides `global.xdp_mode` for this interface.
    pub xdp_mode: Option<XdpModeSetting>,
}

/// How the XDP program is attached to an interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeSetting {
    /// Native (driver) mode, falling back to generic with a warning when the driver refuses.
    #[default]
    Auto,
    /// Native (driver) mode only: fail if the driver cannot.
    Native,
    /// Generic (skb) mode: works on every interface, slower.
    Generic,
}

impl std::str::FromStr for XdpModeSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "native" => Ok(Self::Native),
            "generic" => Ok(Self::Generic),
            other => Err(format!(
                "expected `auto`, `native` or `generic`, found `{other}`"
            )),
        }
    }
}
