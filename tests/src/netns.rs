//! A network lab for tests: hosts are network namespaces, joined by veth pairs and bridges.
//!
//! Declare the lab with [`LabSpec`] (hosts, veths, bridges, MACs, addresses, routes, sysctls)
//! and [`LabSpec::build`] creates it through netlink. Every link is created directly inside its
//! host, so names never meet in the root namespace and tests can run in parallel. Namespace
//! names carry the test name, the process id and a counter. Dropping the [`Lab`] kills the
//! processes it started and deletes the namespaces, which deletes everything inside them, also
//! when the test panics; namespaces left by a test process that was killed are removed by the
//! next lab built.
//!
//! Hosts without an IPv6 address get IPv6 disabled, so the only frames on the wires are the
//! ones the test sends (plus ARP), which keeps packet counts exact.

use std::{
    collections::BTreeMap,
    fs::File,
    future::Future,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    thread,
};

use anyhow::{Context as _, anyhow, bail};
use futures::TryStreamExt as _;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkXdp, XdpAttached,
};
use nix::sched::{CloneFlags, setns, unshare};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

/// Where named network namespaces live (the same place `ip netns` uses, so
/// `ip netns exec <name> ...` works on a lab while debugging).
const NETNS_DIR: &str = "/run/netns";
/// Prefix of every namespace a lab creates.
const NS_PREFIX: &str = "lbt-";

/// An interface inside a host: `("client", "eth0")`.
pub type Endpoint<'a> = (&'a str, &'a str);

#[derive(Debug, Clone)]
struct Veth {
    a: (String, String),
    b: (String, String),
}

#[derive(Debug, Clone)]
struct Address {
    interface: String,
    addr: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone)]
struct Route {
    destination: IpAddr,
    prefix: u8,
    gateway: IpAddr,
}

#[derive(Debug, Clone, Default)]
struct HostSpec {
    bridges: Vec<String>,
    ports: Vec<(String, String)>,
    macs: Vec<(String, [u8; 6])>,
    addresses: Vec<Address>,
    routes: Vec<Route>,
    sysctls: Vec<(String, String)>,
    offload_on: Vec<String>,
}

/// A declared lab, built by [`LabSpec::build`].
#[derive(Debug, Clone)]
pub struct LabSpec {
    test: String,
    hosts: BTreeMap<String, HostSpec>,
    veths: Vec<Veth>,
    /// Namespaces named `<prefix><host>` and kept until removed (`cargo xtask lab`), instead
    /// of per-process names removed with the [`Lab`].
    persistent_prefix: Option<String>,
}

impl LabSpec {
    /// An empty lab for the test called `test` (part of the namespace names, for debugging).
    pub fn new(test: &str) -> Self {
        let test: String = test
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(24)
            .collect();
        LabSpec {
            test,
            hosts: BTreeMap::new(),
            veths: Vec::new(),
            persistent_prefix: None,
        }
    }

    /// A lab whose namespaces are called `<prefix><host>` and outlive this process: dropping
    /// the built [`Lab`] leaves them and the processes it started running; [`Lab::remove`]
    /// takes them down (also from another process, after [`Lab::open`]).
    pub fn persistent(test: &str, prefix: &str) -> Self {
        LabSpec {
            persistent_prefix: Some(prefix.to_string()),
            ..LabSpec::new(test)
        }
    }

    /// Adds a host (a network namespace).
    pub fn host(mut self, name: &str) -> Self {
        self.hosts.entry(name.to_string()).or_default();
        self
    }

    fn host_mut(&mut self, name: &str) -> &mut HostSpec {
        self.hosts.get_mut(name).unwrap_or_else(|| {
            panic!("lab host `{name}` is not declared: call .host(\"{name}\") first")
        })
    }

    /// Adds a veth pair from `a` to `b`. Its transmit checksum offload is turned off on both
    /// ends (veth leaves partial checksums that an XDP rewrite would corrupt) unless
    /// [`LabSpec::keep_offload`] says otherwise.
    pub fn veth(mut self, a: Endpoint<'_>, b: Endpoint<'_>) -> Self {
        self.host_mut(a.0);
        self.host_mut(b.0);
        self.veths.push(Veth {
            a: (a.0.to_string(), a.1.to_string()),
            b: (b.0.to_string(), b.1.to_string()),
        });
        self
    }

    /// Leaves transmit checksum offload on for `endpoint`.
    pub fn keep_offload(mut self, endpoint: Endpoint<'_>) -> Self {
        self.host_mut(endpoint.0)
            .offload_on
            .push(endpoint.1.to_string());
        self
    }

    /// Adds a bridge called `name` in `host`.
    pub fn bridge(mut self, host: &str, name: &str) -> Self {
        self.host_mut(host).bridges.push(name.to_string());
        self
    }

    /// Makes `interface` of `host` a port of `bridge` in the same host.
    pub fn bridge_port(mut self, host: &str, bridge: &str, interface: &str) -> Self {
        self.host_mut(host)
            .ports
            .push((bridge.to_string(), interface.to_string()));
        self
    }

    /// Sets the MAC address of an interface.
    pub fn mac(mut self, endpoint: Endpoint<'_>, mac: [u8; 6]) -> Self {
        self.host_mut(endpoint.0)
            .macs
            .push((endpoint.1.to_string(), mac));
        self
    }

    /// Adds an address (`"10.0.1.2/24"`, `"fd00::2/64"`) to an interface.
    pub fn addr(mut self, endpoint: Endpoint<'_>, cidr: &str) -> Self {
        let (addr, prefix) = parse_cidr(cidr);
        self.host_mut(endpoint.0).addresses.push(Address {
            interface: endpoint.1.to_string(),
            addr,
            prefix,
        });
        self
    }

    /// Adds a route to `destination` (`"0.0.0.0/0"`, `"10.0.2.0/24"`) via `gateway`.
    pub fn route(mut self, host: &str, destination: &str, gateway: &str) -> Self {
        let (destination, prefix) = parse_cidr(destination);
        let gateway: IpAddr = gateway
            .parse()
            .unwrap_or_else(|e| panic!("gateway `{gateway}` is not an IP address: {e}"));
        assert_eq!(
            destination.is_ipv4(),
            gateway.is_ipv4(),
            "route and gateway families differ"
        );
        self.host_mut(host).routes.push(Route {
            destination,
            prefix,
            gateway,
        });
        self
    }

    /// Sets a sysctl inside `host`, by its path under /proc/sys (`"net/ipv4/ip_forward"`).
    pub fn sysctl(mut self, host: &str, key: &str, value: &str) -> Self {
        self.host_mut(host)
            .sysctls
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Creates the namespaces, links, addresses and routes. On failure, whatever was created
    /// is removed again.
    pub fn build(self) -> anyhow::Result<Lab> {
        remove_stale_namespaces();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let lab_id = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut lab = Lab {
            hosts: BTreeMap::new(),
            children: Mutex::new(Vec::new()),
            owned: self.persistent_prefix.is_none(),
        };
        for name in self.hosts.keys() {
            let ns = match &self.persistent_prefix {
                Some(prefix) => format!("{prefix}{name}"),
                None => format!(
                    "{NS_PREFIX}{}-{lab_id}-{}-{name}",
                    std::process::id(),
                    self.test
                ),
            };
            if self.persistent_prefix.is_some() && namespace_exists(&ns) {
                bail!("namespace {ns} exists already: is a lab up? (take it down first)");
            }
            let path = create_namespace(&ns).with_context(|| format!("creating namespace {ns}"))?;
            lab.hosts.insert(name.clone(), Host { ns, path });
        }
        for (name, spec) in &self.hosts {
            let host = &lab.hosts[name];
            let has_ipv6 = spec.addresses.iter().any(|a| a.addr.is_ipv6());
            let bridges = spec.bridges.clone();
            host.in_netns(move |handle| async move {
                if !has_ipv6 {
                    for key in [
                        "net/ipv6/conf/all/disable_ipv6",
                        "net/ipv6/conf/default/disable_ipv6",
                    ] {
                        write_sysctl(key, "1")?;
                    }
                }
                for bridge in bridges {
                    handle
                        .link()
                        .add(LinkBridge::new(&bridge).build())
                        .execute()
                        .await
                        .with_context(|| format!("creating bridge {bridge}"))?;
                }
                Ok(())
            })
            .with_context(|| format!("preparing host {name}"))?;
        }
        for veth in &self.veths {
            let peer_ns = File::open(&lab.hosts[&veth.b.0].path)?;
            let (a_name, b_name) = (veth.a.1.clone(), veth.b.1.clone());
            lab.hosts[&veth.a.0]
                .in_netns(move |handle| async move {
                    let peer = LinkMessageBuilder::<LinkUnspec>::new()
                        .name(b_name.clone())
                        .setns_by_fd(peer_ns.as_raw_fd())
                        .build();
                    let message =
                        LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
                            .name(a_name.clone())
                            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                            .build();
                    handle.link().add(message).execute().await?;
                    Ok(())
                })
                .with_context(|| {
                    format!(
                        "creating veth {}:{} <-> {}:{}",
                        veth.a.0, veth.a.1, veth.b.0, veth.b.1
                    )
                })?;
        }
        for (name, spec) in &self.hosts {
            let mut interfaces: Vec<String> = spec.bridges.clone();
            for veth in &self.veths {
                for end in [&veth.a, &veth.b] {
                    if &end.0 == name {
                        interfaces.push(end.1.clone());
                    }
                }
            }
            let spec = spec.clone();
            lab.hosts[name]
                .in_netns(move |handle| configure_host(handle, spec, interfaces))
                .with_context(|| format!("configuring host {name}"))?;
        }
        Ok(lab)
    }
}

fn parse_cidr(cidr: &str) -> (IpAddr, u8) {
    let (addr, prefix) = cidr
        .split_once('/')
        .unwrap_or_else(|| panic!("`{cidr}` is not in address/prefix form"));
    let addr: IpAddr = addr
        .parse()
        .unwrap_or_else(|e| panic!("`{addr}` is not an IP address: {e}"));
    let prefix: u8 = prefix
        .parse()
        .unwrap_or_else(|e| panic!("`{prefix}` is not a prefix length: {e}"));
    (addr, prefix)
}

async fn link_index(handle: &Handle, name: &str) -> anyhow::Result<u32> {
    let link = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .with_context(|| format!("looking up interface {name}"))?
        .ok_or_else(|| anyhow!("no interface {name}"))?;
    Ok(link.header.index)
}

async fn configure_host(
    handle: Handle,
    spec: HostSpec,
    interfaces: Vec<String>,
) -> anyhow::Result<()> {
    for (key, value) in &spec.sysctls {
        write_sysctl(key, value)?;
    }
    for (interface, mac) in &spec.macs {
        let index = link_index(&handle, interface).await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("setting the MAC of {interface}"))?;
    }
    for (bridge, port) in &spec.ports {
        let bridge_index = link_index(&handle, bridge).await?;
        let index = link_index(&handle, port).await?;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(bridge_index)
                    .build(),
            )
            .execute()
            .await
            .with_context(|| format!("adding {port} to bridge {bridge}"))?;
    }
    for interface in interfaces.iter().chain(std::iter::once(&"lo".to_string())) {
        let index = link_index(&handle, interface).await?;
        if interface != "lo"
            && !spec.bridges.contains(interface)
            && !spec.offload_on.contains(interface)
        {
            set_tx_checksum_offload(interface, false)?;
        }
        handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .with_context(|| format!("bringing {interface} up"))?;
    }
    for address in &spec.addresses {
        let index = link_index(&handle, &address.interface).await?;
        handle
            .address()
            .add(index, address.addr, address.prefix)
            .execute()
            .await
            .with_context(|| {
                format!(
                    "adding {}/{} to {}",
                    address.addr, address.prefix, address.interface
                )
            })?;
    }
    for route in &spec.routes {
        let message = match (route.destination, route.gateway) {
            (IpAddr::V4(destination), IpAddr::V4(gateway)) => {
                RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(destination, route.prefix)
                    .gateway(gateway)
                    .build()
            }
            (IpAddr::V6(destination), IpAddr::V6(gateway)) => {
                RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(destination, route.prefix)
                    .gateway(gateway)
                    .build()
            }
            _ => bail!("route families differ"),
        };
        handle
            .route()
            .add(message)
            .execute()
            .await
            .with_context(|| {
                format!(
                    "adding route {}/{} via {}",
                    route.destination, route.prefix, route.gateway
                )
            })?;
    }
    Ok(())
}

/// Writes `/proc/sys/<key>` for the calling thread's network namespace.
fn write_sysctl(key: &str, value: &str) -> anyhow::Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

/// Turns transmit checksum offload on or off with the ethtool ioctl (what `ethtool -K dev tx
/// off` does), for an interface in the calling thread's namespace.
fn set_tx_checksum_offload(interface: &str, on: bool) -> anyhow::Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_STXCSUM: u32 = 0x17;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: u32::from(on),
    };
    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    for (dst, src) in request
        .name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket for SIOCETHTOOL");
    }
    // SAFETY: `request` is a valid ifreq whose data points at a live ethtool_value.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &mut request) };
    let error = std::io::Error::last_os_error();
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(error).with_context(|| format!("ETHTOOL_STXCSUM on {interface}"));
    }
    Ok(())
}

/// Creates a named network namespace the way `ip netns add` does: an empty file under
/// /run/netns with the new namespace bind-mounted on it, so it lives without any process.
fn create_namespace(name: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(NETNS_DIR)?;
    let path = Path::new(NETNS_DIR).join(name);
    File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let target = path.clone();
    // unshare(CLONE_NEWNET) moves only the calling thread, so do it in a throwaway thread.
    let result = thread::spawn(move || -> anyhow::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .context("bind-mounting the namespace")?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow!("namespace thread panicked"))?;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

fn delete_namespace(path: &Path) {
    let _ = nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Deletes namespaces left by lab processes that no longer run (killed before they could drop
/// their lab).
fn remove_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            delete_namespace(&entry.path());
        }
    }
}

/// One host of a lab: a named network namespace.
#[derive(Debug)]
pub struct Host {
    ns: String,
    path: PathBuf,
}

impl Host {
    /// The namespace's name (usable with `ip netns exec`).
    pub fn netns_name(&self) -> &str {
        &self.ns
    }

    /// Runs `f` on a new thread that has entered this host's namespace and has its own
    /// single-threaded tokio runtime; `f` gets a netlink handle bound to the namespace.
    pub fn in_netns<F, Fut, T>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<T>>,
        T: Send + 'static,
    {
        self.spawn(|| async move {
            let (connection, handle, _) = rtnetlink::new_connection().context("netlink socket")?;
            tokio::spawn(connection);
            f(handle).await
        })?
        .join()
        .map_err(|_| anyhow!("thread in {} panicked", self.ns))?
    }

    /// Starts a thread inside this host's namespace running the future `f` makes on a
    /// single-threaded tokio runtime. Sockets the future opens belong to the host.
    pub fn spawn<F, Fut, T>(&self, f: F) -> anyhow::Result<thread::JoinHandle<T>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let ns =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = thread::Builder::new()
            .name(format!("netns-{}", self.ns))
            .spawn(move || {
                let entered = setns(&ns, CloneFlags::CLONE_NEWNET);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match (entered, runtime) {
                    (Ok(()), Ok(runtime)) => {
                        let _ = ready_tx.send(Ok(()));
                        runtime.block_on(f())
                    }
                    (Err(e), _) => {
                        let _ = ready_tx.send(Err(anyhow!("setns: {e}")));
                        panic!("setns failed: {e}");
                    }
                    (_, Err(e)) => {
                        let _ = ready_tx.send(Err(anyhow!("tokio runtime: {e}")));
                        panic!("tokio runtime failed: {e}");
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("thread in {} died before starting", self.ns))??;
        Ok(handle)
    }

    /// A command that will run inside this host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> anyhow::Result<Command> {
        let ns =
            File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        let mut command = Command::new(program);
        // SAFETY: the closure only calls setns(2), which is async-signal-safe; the file stays
        // open because the closure owns it.
        unsafe {
            command.pre_exec(move || {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        Ok(command)
    }

    /// Counters and XDP attachment of an interface of this host, read through netlink.
    pub fn link_info(&self, interface: &str) -> anyhow::Result<LinkInfo> {
        let interface = interface.to_string();
        self.in_netns(move |handle| async move {
            let link = handle
                .link()
                .get()
                .match_name(interface.clone())
                .execute()
                .try_next()
                .await?
                .ok_or_else(|| anyhow!("no interface {interface}"))?;
            let mut info = LinkInfo::default();
            for attribute in &link.attributes {
                match attribute {
                    LinkAttribute::Stats64(s) => {
                        info.stats = LinkStats {
                            rx_packets: s.rx_packets,
                            tx_packets: s.tx_packets,
                            rx_bytes: s.rx_bytes,
                            tx_bytes: s.tx_bytes,
                        }
                    }
                    LinkAttribute::Xdp(xdp) => {
                        for item in xdp {
                            if let LinkXdp::Attached(mode) = item {
                                info.xdp = match mode {
                                    XdpAttached::None => XdpAttachment::None,
                                    XdpAttached::Driver => XdpAttachment::Native,
                                    XdpAttached::SocketBuffer => XdpAttachment::Generic,
                                    other => XdpAttachment::Other(format!("{other:?}")),
                                };
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(info)
        })
    }

    /// Reads a file under `/proc/thread-self/net/` (`"snmp"`, `"dev"`) as this host sees it.
    pub fn proc_net(&self, file: &str) -> anyhow::Result<String> {
        let path = format!("/proc/thread-self/net/{file}");
        self.spawn(move || async move {
            std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
        })?
        .join()
        .map_err(|_| anyhow!("thread in {} panicked", self.ns))?
    }

    /// One counter of the `Tcp:` or `Udp:` (etc.) block of this host's /proc/net/snmp,
    /// e.g. `snmp_counter("Tcp", "OutSegs")`.
    pub fn snmp_counter(&self, block: &str, name: &str) -> anyhow::Result<u64> {
        let snmp = self.proc_net("snmp")?;
        let prefix = format!("{block}:");
        let mut lines = snmp.lines().filter(|l| l.starts_with(&prefix));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            bail!("no {block} block in /proc/net/snmp");
        };
        let column = names
            .split_whitespace()
            .position(|n| n == name)
            .ok_or_else(|| anyhow!("no {block} counter {name}"))?;
        values
            .split_whitespace()
            .nth(column)
            .ok_or_else(|| anyhow!("short {block} value line"))?
            .parse()
            .with_context(|| format!("{block} {name} is not a number"))
    }
}

/// What netlink says about an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// Packet and byte counters.
    pub stats: LinkStats,
    /// The XDP attachment.
    pub xdp: XdpAttachment,
}

/// How an XDP program is attached to an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum XdpAttachment {
    /// No program.
    #[default]
    None,
    /// Driver (native) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
    /// Something else (hardware, several programs).
    Other(String),
}

/// Counters of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// A built lab. Dropping it kills the processes it started and deletes every namespace
/// (unless it is persistent: see [`LabSpec::persistent`]).
pub struct Lab {
    hosts: BTreeMap<String, Host>,
    children: Mutex<Vec<Child>>,
    /// Whether dropping the lab takes it down.
    owned: bool,
}

impl Lab {
    /// A persistent lab built earlier (by this or another process): hosts `hosts`, namespaces
    /// `<prefix><host>`. Errors if one of them does not exist.
    pub fn open(prefix: &str, hosts: &[&str]) -> anyhow::Result<Lab> {
        let mut opened = BTreeMap::new();
        for name in hosts {
            let ns = format!("{prefix}{name}");
            let path = Path::new(NETNS_DIR).join(&ns);
            if !path.exists() {
                bail!("no namespace {ns}: the lab is not up");
            }
            opened.insert(name.to_string(), Host { ns, path });
        }
        Ok(Lab {
            hosts: opened,
            children: Mutex::new(Vec::new()),
            owned: false,
        })
    }

    /// Takes the lab down: every process running in its namespaces is killed (SIGTERM, then
    /// SIGKILL after `grace`), and the namespaces are deleted.
    pub fn remove(self, grace: std::time::Duration) {
        let pids = |lab: &Lab| -> Vec<i32> {
            lab.hosts
                .values()
                .flat_map(|host| processes_in(&host.path))
                .collect()
        };
        for pid in pids(&self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let started = std::time::Instant::now();
        while !pids(&self).is_empty() && started.elapsed() < grace {
            thread::sleep(std::time::Duration::from_millis(50));
        }
        for pid in pids(&self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Ok(mut children) = self.children.lock() {
            for child in children.iter_mut() {
                let _ = child.wait();
            }
        }
        for host in self.hosts.values() {
            delete_namespace(&host.path);
        }
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .get(name)
            .unwrap_or_else(|| panic!("lab has no host `{name}`"))
    }

    /// Starts `command` (made by [`Host::command`]) and keeps it, so the lab kills it on drop.
    /// It leads a process group of its own, so what it forks (nginx's workers) goes with it.
    /// Returns its process id.
    pub fn start(&self, mut command: Command) -> anyhow::Result<u32> {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let pid = child.id();
        self.children
            .lock()
            .map_err(|_| anyhow!("lab lock poisoned"))?
            .push(child);
        Ok(pid)
    }

    /// Takes ownership of a process already started, so the lab kills it on drop.
    pub fn adopt(&self, child: Child) -> anyhow::Result<()> {
        self.children
            .lock()
            .map_err(|_| anyhow!("lab lock poisoned"))?
            .push(child);
        Ok(())
    }

    /// Sends `signal` to a process started by [`Lab::start`] and waits for it to exit.
    /// Returns its exit status.
    pub fn stop(
        &self,
        pid: u32,
        signal: nix::sys::signal::Signal,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let mut children = self
            .children
            .lock()
            .map_err(|_| anyhow!("lab lock poisoned"))?;
        let position = children
            .iter()
            .position(|c| c.id() == pid)
            .ok_or_else(|| anyhow!("process {pid} was not started by this lab"))?;
        let mut child = children.remove(position);
        if let Err(error) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal) {
            let _ = child.kill();
            let _ = child.wait();
            kill_group(pid);
            return Err(error.into());
        }
        let status = child.wait()?;
        // Whatever it forked and left behind (a SIGKILLed nginx master's workers) goes too.
        kill_group(pid);
        Ok(status)
    }
}

/// SIGKILLs the process group `pid` leads, if it leads one (processes from [`Lab::start`]).
fn kill_group(pid: u32) {
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The processes whose network namespace is the one bound at `path`.
fn processes_in(path: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(target) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let ns = std::fs::metadata(entry.path().join("ns/net")).ok()?;
            (ns.ino() == target.ino()
                && ns.dev() == target.dev()
                && pid != std::process::id() as i32)
                .then_some(pid)
        })
        .collect()
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Ok(mut children) = self.children.lock() {
            for child in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
                kill_group(child.id());
            }
        }
        for host in self.hosts.values() {
            delete_namespace(&host.path);
        }
    }
}

/// True if a namespace called `name` exists (used by tests of the harness itself).
pub fn namespace_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}
