//! Loading the XDP object, pinning it, attaching `lb_ingress`, and undoing all of it.
//!
//! Maps, the program and every interface's XDP link are pinned under the bpffs directory.
//! A link outlives the agent that made it, so if the agent dies (crash, `kill -9`) forwarding
//! goes on; the next agent adopts the pinned maps and links, swapping its own program into
//! each link atomically. A clean stop detaches and removes the pins.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapData,
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::maps::{ALL_MAPS, CONNS_MAP, INGRESS_PROGRAM, NAT_MAP, RINGS_MAP};

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
    /// The object lacks a program or map the agent needs: a build mismatch.
    #[error("the XDP object has no {0}")]
    Missing(String),
    /// Loading or pinning the program failed.
    #[error("XDP program: {0}")]
    Program(#[from] ProgramError),
    /// A map operation failed.
    #[error("map: {0}")]
    Map(#[from] aya::maps::MapError),
    /// A link operation failed.
    #[error("XDP link: {0}")]
    Link(#[from] LinkError),
    /// Pinning failed.
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
    /// An existing pinned link was adopted (it keeps the mode it was made with).
    Adopted,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachedMode::Native => "native",
            AttachedMode::Generic => "generic",
            AttachedMode::Adopted => "adopted",
        })
    }
}

/// Sizes of the maps the configuration decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// Entries of the rings map (services x ring size).
    pub rings: u32,
    /// Entries of the connection table, and of the NAT table.
    pub conns: u32,
}

/// The loaded XDP object with its pins and attachments.
pub struct Dataplane {
    ebpf: Ebpf,
    program: &'static str,
    bpf_dir: PathBuf,
    attached: Vec<(String, AttachedMode)>,
    links: Vec<(String, FdLink)>,
    pub(super) rings: super::rings::RingMemory,
}

/// Path of the pinned link for `interface`.
fn link_pin(bpf_dir: &Path, interface: &str) -> PathBuf {
    bpf_dir.join(format!("link_{interface}"))
}

/// `BPF_F_MMAPABLE`: the rings map is created with it.
const MMAPABLE: u32 = 1024;

/// Removes pinned maps whose size (or flags) differ from what this configuration needs: they cannot be
/// adopted (the kernel fixes a map's size at creation), so they are replaced, and flows in
/// them are forgotten.
fn drop_mismatched_pins(bpf_dir: &Path, sizes: MapSizes) {
    for (name, wanted) in [
        (RINGS_MAP, sizes.rings),
        (CONNS_MAP, sizes.conns),
        (NAT_MAP, sizes.conns),
    ] {
        let pin = bpf_dir.join(name);
        if !pin.exists() {
            continue;
        }
        let current = MapData::from_pin(&pin)
            .and_then(|m| m.info())
            .map(|info| (info.max_entries(), info.map_flags() & MMAPABLE));
        let wanted_flags = if name == RINGS_MAP { MMAPABLE } else { 0 };
        if current.as_ref().ok() != Some(&(wanted, wanted_flags)) {
            tracing::warn!(
                map = name,
                ?current,
                wanted,
                "pinned map has another size; replacing it"
            );
            let _ = std::fs::remove_file(&pin);
        }
    }
}

impl Dataplane {
    /// Loads `object` with maps sized by `sizes`, pinning maps and `lb_ingress` under
    /// `bpf_dir` (created, and bpffs mounted, if needed). Maps already pinned there with the
    /// right size are adopted with their contents (connection table included).
    pub fn load(object: &[u8], bpf_dir: &Path, sizes: MapSizes) -> Result<Self, DataplaneError> {
        Self::load_program(object, INGRESS_PROGRAM, bpf_dir, sizes)
    }

    /// Like [`Dataplane::load`] for another program of the object (`lb_decap`).
    pub fn load_program(
        object: &[u8],
        program_name: &'static str,
        bpf_dir: &Path,
        sizes: MapSizes,
    ) -> Result<Self, DataplaneError> {
        super::ensure_bpffs(bpf_dir).map_err(|source| DataplaneError::PinDir {
            dir: bpf_dir.to_path_buf(),
            source,
        })?;
        drop_mismatched_pins(bpf_dir, sizes);
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(bpf_dir)
            .map_max_entries(RINGS_MAP, sizes.rings)
            .map_max_entries(CONNS_MAP, sizes.conns)
            .map_max_entries(NAT_MAP, sizes.conns)
            .load(object)?;
        let rings = match ebpf.map(RINGS_MAP) {
            Some(aya::maps::Map::Array(data)) => super::rings::RingMemory::map(data, sizes.rings)
                .map_err(|source| DataplaneError::PinDir {
                dir: bpf_dir.join(RINGS_MAP),
                source,
            })?,
            _ => return Err(DataplaneError::Missing(format!("array map `{RINGS_MAP}`"))),
        };
        let program = xdp_program(&mut ebpf, program_name)?;
        program.load()?;
        let pin = bpf_dir.join(program_name);
        // The program pin names the program currently in the links; replace it.
        let _ = std::fs::remove_file(&pin);
        program.pin(&pin).map_err(|e| DataplaneError::Pin {
            path: pin.clone(),
            message: e.to_string(),
        })?;
        Ok(Dataplane {
            ebpf,
            program: program_name,
            bpf_dir: bpf_dir.to_path_buf(),
            attached: Vec::new(),
            links: Vec::new(),
            rings,
        })
    }

    /// Attaches `lb_ingress` to `interface`, or adopts the link a previous agent pinned for it
    /// (replacing its program atomically, so no packet goes unhandled). `Auto` tries native
    /// mode and falls back to generic with a warning.
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
        let pin = link_pin(&self.bpf_dir, interface);
        let program_name = self.program;
        let program = xdp_program(&mut self.ebpf, program_name)?;
        if pin.exists() {
            match PinnedLink::from_pin(&pin) {
                Ok(pinned) => {
                    let link = XdpLink::try_from(FdLink::from(pinned))?;
                    let id = program.attach_to_link(link)?;
                    let fd_link = FdLink::try_from(program.take_link(id)?)?;
                    tracing::info!(
                        interface,
                        "adopted the pinned XDP link; new program swapped in"
                    );
                    self.links.push((interface.to_string(), fd_link));
                    self.attached
                        .push((interface.to_string(), AttachedMode::Adopted));
                    return Ok(AttachedMode::Adopted);
                }
                Err(error) => {
                    tracing::warn!(%error, "stale link pin {}; attaching anew", pin.display());
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        let attach = |program: &mut Xdp, mode: XdpMode, name: &'static str| {
            program
                .attach_to_if_index(if_index, mode)
                .map_err(|source| DataplaneError::Attach {
                    interface: interface.to_string(),
                    mode: name,
                    source,
                })
        };
        let (id, mode) = match setting {
            XdpModeSetting::Native => (
                attach(program, XdpMode::Driver, "native")?,
                AttachedMode::Native,
            ),
            XdpModeSetting::Generic => (
                attach(program, XdpMode::Skb, "generic")?,
                AttachedMode::Generic,
            ),
            XdpModeSetting::Auto => match attach(program, XdpMode::Driver, "native") {
                Ok(id) => (id, AttachedMode::Native),
                Err(error) => {
                    tracing::warn!(%error, "native XDP refused on {interface}; falling back to generic mode");
                    (
                        attach(program, XdpMode::Skb, "generic")?,
                        AttachedMode::Generic,
                    )
                }
            },
        };
        // Pin the link so forwarding survives the agent; kernels without bpf_link (netlink
        // attach) cannot pin, and then the program stays only while the agent runs.
        match FdLink::try_from(program.take_link(id)?) {
            Ok(fd_link) => {
                let pinned = fd_link.pin(&pin).map_err(|e| DataplaneError::Pin {
                    path: pin.clone(),
                    message: e.to_string(),
                })?;
                self.links
                    .push((interface.to_string(), FdLink::from(pinned)));
            }
            Err(error) => {
                tracing::warn!(%error, interface, "XDP link cannot be pinned; restarts will interrupt forwarding")
            }
        }
        tracing::info!(interface, %mode, "attached {program_name}");
        self.attached.push((interface.to_string(), mode));
        Ok(mode)
    }

    /// Detaches from `interface` (a reload removed it) and removes its link pin.
    pub fn detach(&mut self, interface: &str) {
        if let Some(index) = self.links.iter().position(|(name, _)| name == interface) {
            let (_, link) = self.links.remove(index);
            let _ = std::fs::remove_file(link_pin(&self.bpf_dir, interface));
            // Dropping the last reference to the link detaches the program.
            drop(link);
            tracing::info!(interface, "detached {}", self.program);
        }
        self.attached.retain(|(name, _)| name != interface);
    }

    /// Interfaces the program is attached to, with the mode each runs in.
    pub fn attached(&self) -> &[(String, AttachedMode)] {
        &self.attached
    }

    /// Directory holding the pins.
    pub fn bpf_dir(&self) -> &Path {
        &self.bpf_dir
    }

    /// The loaded object (maps and programs), for the sync code and tests.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The loaded object.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// Detaches from every interface and removes the program, link and map pins.
    pub fn shutdown(self) {
        let Dataplane {
            ebpf,
            bpf_dir,
            links,
            program,
            ..
        } = self;
        for (interface, link) in links {
            let _ = std::fs::remove_file(link_pin(&bpf_dir, &interface));
            // Dropping the last reference to the link detaches the program.
            drop(link);
            tracing::info!(interface, "detached {program}");
        }
        drop(ebpf);
        for name in std::iter::once(program).chain(ALL_MAPS) {
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

fn xdp_program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp, DataplaneError> {
    Ok(ebpf
        .program_mut(name)
        .ok_or_else(|| DataplaneError::Missing(format!("program `{name}`")))?
        .try_into()?)
}
