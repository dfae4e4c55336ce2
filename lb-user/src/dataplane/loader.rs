//! Loading the XDP object, pinning it, attaching `lb_ingress`, and undoing all of it.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode},
};
use lb_common::maps::{COUNTERS_MAP, INGRESS_PROGRAM};

use crate::config::XdpModeSetting;

/// What can go wrong while loading or attaching the data plane.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    /// The pin directory is not usable.
    #[error("BPF pin directory {dir}: {source}")]
    PinDir { dir: PathBuf, source: io::Error },
    /// The kernel refused the object (verifier log included by aya).
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    /// The object lacks a program the agent needs: a build mismatch.
    #[error("the XDP object has no program `{0}`")]
    MissingProgram(&'static str),
    /// Loading or pinning the program failed.
    #[error("program `{INGRESS_PROGRAM}`: {0}")]
    Program(#[from] ProgramError),
    /// Pinning the program failed.
    #[error("pinning `{path}`: {message}")]
    Pin { path: PathBuf, message: String },
    /// The interface does not exist.
    #[error("interface `{0}` does not exist on this host")]
    NoSuchInterface(String),
    /// Attaching to an interface failed in every allowed mode.
    #[error("attaching XDP to `{interface}` in {mode} mode: {source}")]
    Attach {
        interface: String,
        mode: &'static str,
        source: ProgramError,
    },
}

/// The mode an interface's program actually runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    /// Driver (native) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
        })
    }
}

/// The loaded XDP object with its pins and attachments. Dropping it (or [`Dataplane::shutdown`])
/// detaches the program from every interface; `shutdown` also removes the pins.
pub struct Dataplane {
    ebpf: Ebpf,
    bpf_dir: PathBuf,
    attached: Vec<(String, AttachedMode)>,
}

impl Dataplane {
    /// Loads `object`, pins maps and `lb_ingress` under `bpf_dir` (created, and bpffs mounted,
    /// if needed). Maps already pinned there are reused, so counters survive a restart.
    pub fn load(object: &[u8], bpf_dir: &Path) -> Result<Self, DataplaneError> {
        super::ensure_bpffs(bpf_dir).map_err(|source| DataplaneError::PinDir {
            dir: bpf_dir.to_path_buf(),
            source,
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(bpf_dir)
            .load(object)?;
        let program: &mut Xdp = ebpf
            .program_mut(INGRESS_PROGRAM)
            .ok_or(DataplaneError::MissingProgram(INGRESS_PROGRAM))?
            .try_into()?;
        program.load()?;
        let pin = bpf_dir.join(INGRESS_PROGRAM);
        // A pin left by an agent that was killed would make pinning fail; the new program
        // replaces it.
        if pin.exists() {
            std::fs::remove_file(&pin).map_err(|e| DataplaneError::Pin {
                path: pin.clone(),
                message: e.to_string(),
            })?;
        }
        program.pin(&pin).map_err(|e| DataplaneError::Pin {
            path: pin.clone(),
            message: e.to_string(),
        })?;
        Ok(Dataplane {
            ebpf,
            bpf_dir: bpf_dir.to_path_buf(),
            attached: Vec::new(),
        })
    }

    /// Attaches `lb_ingress` to `interface`. `Auto` tries native mode and falls back to generic
    /// with a warning (veth and many virtual NICs run native, some drivers do not).
    pub fn attach(
        &mut self,
        interface: &str,
        setting: XdpModeSetting,
    ) -> Result<AttachedMode, DataplaneError> {
        let c_name = std::ffi::CString::new(interface)
            .map_err(|_| DataplaneError::NoSuchInterface(interface.to_string()))?;
        // SAFETY: `c_name` is a valid NUL-terminated string.
        let if_index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
        if if_index == 0 {
            return Err(DataplaneError::NoSuchInterface(interface.to_string()));
        }
        let program: &mut Xdp = self
            .ebpf
            .program_mut(INGRESS_PROGRAM)
            .ok_or(DataplaneError::MissingProgram(INGRESS_PROGRAM))?
            .try_into()?;
        let attach = |program: &mut Xdp, mode: XdpMode, name: &'static str| {
            program
                .attach_to_if_index(if_index, mode)
                .map_err(|source| DataplaneError::Attach {
                    interface: interface.to_string(),
                    mode: name,
                    source,
                })
        };
        let mode = match setting {
            XdpModeSetting::Native => {
                attach(program, XdpMode::Driver, "native")?;
                AttachedMode::Native
            }
            XdpModeSetting::Generic => {
                attach(program, XdpMode::Skb, "generic")?;
                AttachedMode::Generic
            }
            XdpModeSetting::Auto => match attach(program, XdpMode::Driver, "native") {
                Ok(_) => AttachedMode::Native,
                Err(error) => {
                    tracing::warn!(%error, "native XDP refused on {interface}; falling back to generic mode");
                    attach(program, XdpMode::Skb, "generic")?;
                    AttachedMode::Generic
                }
            },
        };
        tracing::info!(interface, %mode, "attached {INGRESS_PROGRAM}");
        self.attached.push((interface.to_string(), mode));
        Ok(mode)
    }

    /// Interfaces the program is attached to, with the mode each runs in.
    pub fn attached(&self) -> &[(String, AttachedMode)] {
        &self.attached
    }

    /// Directory holding the pins.
    pub fn bpf_dir(&self) -> &Path {
        &self.bpf_dir
    }

    /// Detaches from every interface and removes the program and map pins.
    pub fn shutdown(self) {
        let Dataplane {
            ebpf,
            bpf_dir,
            attached,
        } = self;
        // Dropping the object releases the XDP links, which detaches the program.
        drop(ebpf);
        for (interface, _) in &attached {
            tracing::info!(interface, "detached {INGRESS_PROGRAM}");
        }
        for name in [INGRESS_PROGRAM, COUNTERS_MAP] {
            let pin = bpf_dir.join(name);
            if let Err(error) = std::fs::remove_file(&pin)
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(%error, "cannot remove pin {}", pin.display());
            }
        }
        // Only removes the directory when nothing else is pinned there.
        let _ = std::fs::remove_dir(&bpf_dir);
    }
}
