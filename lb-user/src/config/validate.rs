//! Checks serde cannot express. Each failure carries the byte span of the offending value;
//! on success the checked values come back parsed ([`Resolved`]), so no later stage parses
//! them again.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::Range,
};

use toml::Spanned;

use super::{
    duration::parse_duration,
    model::{AllDown, CheckConfig, CheckKind, Config, ForwardMode, HashFields, L4Protocol},
};
use crate::health::{
    probe::{HttpProbe, Probe},
    threshold::Timing,
};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
const MAX_IFNAME_LEN: usize = 15;
/// Largest Maglev table the agent accepts per service.
const MAX_RING_SIZE: u32 = 16_777_213;
/// Largest connection table.
const MAX_CONN_TABLE: u32 = 1 << 26;

/// The parts of a configuration that validation parsed.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// L4 services in configuration order (the order gives their ids).
    pub l4: Vec<ServiceSpec>,
    /// VRRP instances.
    pub vrrp: Vec<VrrpSpec>,
    /// L7 frontends (listens included).
    pub frontends: Vec<super::proxy::FrontendSpec>,
    /// L7 backends (listens included).
    pub backends: Vec<super::proxy::BackendSpec>,
    /// Connection-table sync, when configured.
    pub sync: Option<SyncSpec>,
    /// TUN outer source prefix, IPv4.
    pub tunnel_source_v4: (Ipv4Addr, u8),
    /// TUN outer source prefix, IPv6.
    pub tunnel_source_v6: (Ipv6Addr, u8),
}

/// A checked `[sync]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncSpec {
    /// Every node's address.
    pub peers: Vec<IpAddr>,
    /// UDP port.
    pub port: u16,
    /// The shared secret.
    pub key: Vec<u8>,
    /// How long a peer keeps a flow closed by a FIN, and by a RST.
    pub fin_timeout: std::time::Duration,
    pub rst_timeout: std::time::Duration,
}

/// A checked `[[vrrp]]` instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpSpec {
    /// Instance name.
    pub name: String,
    /// Interface.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority.
    pub priority: u8,
    /// Protocol version.
    pub version: crate::vrrp::packet::Version,
    /// Advertisement interval in centiseconds.
    pub advert_cs: u16,
    /// Preempt mode.
    pub preempt: bool,
    /// Preempt delay.
    pub preempt_delay: std::time::Duration,
    /// Virtual addresses and prefix lengths.
    pub vips: Vec<(IpAddr, u8)>,
    /// Address labels (`eth0:vi1`), by address.
    pub labels: std::collections::BTreeMap<IpAddr, String>,
    /// v2 password.
    pub password: Option<[u8; 8]>,
    /// Unicast peers (empty: multicast).
    pub unicast_peers: Vec<IpAddr>,
    /// Gratuitous ARPs on becoming master.
    pub garp_repeat: u32,
    /// Re-announce interval while master.
    pub garp_refresh: Option<std::time::Duration>,
    /// Tracked interfaces.
    pub track_interfaces: Vec<String>,
    /// Tracked scripts.
    pub track_scripts: Vec<TrackScriptSpec>,
    /// Tracked services and backends: (health board index: an `l4` index, or the number of
    /// L4 services plus a backend index), weight.
    pub track_services: Vec<(usize, i32)>,
    /// Notify programs.
    pub notify: NotifySpec,
    /// Second GARP burst delay.
    pub garp_delay: Option<std::time::Duration>,
    /// Multicast group (IPv4).
    pub mcast_group: std::net::Ipv4Addr,
    /// Other members of this instance's sync group.
    pub sync_with: Vec<String>,
}

/// A checked track script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackScriptSpec {
    /// Program.
    pub path: std::path::PathBuf,
    /// Interval between runs.
    pub interval: std::time::Duration,
    /// Timeout of a run.
    pub timeout: std::time::Duration,
    /// Weight (0: FAULT).
    pub weight: i32,
    /// Rise.
    pub rise: u32,
    /// Fall.
    pub fall: u32,
}

/// Notify programs of an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifySpec {
    /// On MASTER.
    pub master: Option<std::path::PathBuf>,
    /// On BACKUP.
    pub backup: Option<std::path::PathBuf>,
    /// On FAULT.
    pub fault: Option<std::path::PathBuf>,
    /// On stop.
    pub stop: Option<std::path::PathBuf>,
    /// On every change, with keepalived's arguments.
    pub any: Option<std::path::PathBuf>,
}

impl Default for Resolved {
    fn default() -> Self {
        Resolved {
            l4: Vec::new(),
            vrrp: Vec::new(),
            frontends: Vec::new(),
            backends: Vec::new(),
            sync: None,
            tunnel_source_v4: (Ipv4Addr::UNSPECIFIED, 32),
            tunnel_source_v6: (Ipv6Addr::UNSPECIFIED, 128),
        }
    }
}

/// A checked `[[l4]]` service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Its name.
    pub name: String,
    /// VIP and port.
    pub vip: SocketAddr,
    /// Transport protocol.
    pub protocol: L4Protocol,
    /// Forwarding mode.
    pub mode: ForwardMode,
    /// Hash coverage.
    pub hash: HashFields,
    /// Reals in configuration order.
    pub reals: Vec<RealSpec>,
    /// Health check, if any.
    pub check: Option<CheckSpec>,
    /// Policy when every real is down.
    pub on_all_down: AllDown,
}

/// A checked health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    /// What to run.
    pub probe: Probe,
    /// Thresholds and intervals.
    pub timing: Timing,
    /// Time one check may take.
    pub timeout: std::time::Duration,
    /// Port override.
    pub port: Option<u16>,
    /// Address override.
    pub addr: Option<IpAddr>,
}

/// A checked real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RealSpec {
    /// Address.
    pub addr: IpAddr,
    /// Port packets are sent to (the VIP's port except in NAT mode).
    pub port: u16,
    /// Maglev weight (0 drains).
    pub weight: u32,
}

/// A failed check: the span of the offending value and what is wrong.
pub(super) type Failure = (Range<usize>, String);

pub(super) fn fail<T>(span: Range<usize>, message: String) -> Result<T, Failure> {
    Err((span, message))
}

/// Validates `config`; on failure returns the span of the bad value and what is wrong.
pub(super) fn validate(config: &Config) -> Result<Resolved, Failure> {
    validate_interfaces(config)?;
    let global = &config.global;
    let ring_size = *global.ring_size.get_ref();
    if !(7..=MAX_RING_SIZE).contains(&ring_size) || !is_prime(ring_size) {
        return fail(
            global.ring_size.span(),
            format!(
                "expected a prime ring size between 7 and {MAX_RING_SIZE} (65537 is usual), found {ring_size}"
            ),
        );
    }
    let max_services = *global.max_services.get_ref();
    if !(1..=lb_common::maps::MAX_SERVICES).contains(&max_services) {
        return fail(
            global.max_services.span(),
            format!(
                "expected 1 to {} services, found {max_services}",
                lb_common::maps::MAX_SERVICES
            ),
        );
    }
    let conn = *global.conn_table_size.get_ref();
    if !(1024..=MAX_CONN_TABLE).contains(&conn) {
        return fail(
            global.conn_table_size.span(),
            format!(
                "expected a connection table of 1024 to {MAX_CONN_TABLE} entries, found {conn}"
            ),
        );
    }
    let mtu = *global.tunnel_mtu.get_ref();
    if !(1280..=65535).contains(&mtu) {
        return fail(
            global.tunnel_mtu.span(),
            format!("expected an MTU of 1280 to 65535, found {mtu}"),
        );
    }
    let tunnel_source_v4 = match parse_prefix(&global.tunnel_source_v4)? {
        (IpAddr::V4(addr), len) => (addr, len),
        _ => {
            return fail(
                global.tunnel_source_v4.span(),
                "expected an IPv4 prefix".into(),
            );
        }
    };
    let tunnel_source_v6 = match parse_prefix(&global.tunnel_source_v6)? {
        (IpAddr::V6(addr), len) if len >= 96 => (addr, len),
        _ => {
            return fail(
                global.tunnel_source_v6.span(),
                "expected an IPv6 prefix of /96 or longer (the hash fills the last word)".into(),
            );
        }
    };
    if config.l4.len() > max_services as usize {
        return fail(
            global.max_services.span(),
            format!(
                "{} [[l4]] services are configured but max_services is {max_services}",
                config.l4.len()
            ),
        );
    }
    let mut names = HashSet::new();
    let mut vips = HashSet::new();
    let mut all_reals = HashSet::new();
    let mut l4 = Vec::with_capacity(config.l4.len());
    for service in &config.l4 {
        let name = service.name.get_ref();
        if name.is_empty() || !names.insert(name.as_str()) {
            return fail(
                service.name.span(),
                format!("service names must be unique and non-empty, found `{name}` again"),
            );
        }
        let vip: SocketAddr = service.vip.get_ref().parse().map_err(|_| {
            (
                service.vip.span(),
                format!(
                    "expected \"address:port\" (IPv6 as \"[address]:port\"), found `{}`",
                    service.vip.get_ref()
                ),
            )
        })?;
        if vip.port() == 0 {
            return fail(service.vip.span(), "the VIP port must not be 0".into());
        }
        if !vips.insert((vip, service.protocol)) {
            return fail(
                service.vip.span(),
                format!("{vip} ({:?}) is configured twice", service.protocol),
            );
        }
        if service.reals.is_empty() {
            return fail(
                service.name.span(),
                format!("service `{name}` has no reals"),
            );
        }
        let mut reals = Vec::with_capacity(service.reals.len());
        let mut seen = HashSet::new();
        for real in &service.reals {
            let addr: IpAddr = real.addr.get_ref().parse().map_err(|_| {
                (
                    real.addr.span(),
                    format!("expected an IP address, found `{}`", real.addr.get_ref()),
                )
            })?;
            if addr.is_ipv4() != vip.is_ipv4() {
                return fail(
                    real.addr.span(),
                    format!("real {addr} and VIP {vip} are of different IP families"),
                );
            }
            let port = match (&real.port, service.mode) {
                (Some(port), ForwardMode::Nat) if *port.get_ref() != 0 => *port.get_ref(),
                (Some(port), ForwardMode::Nat) => {
                    return fail(port.span(), "the port must not be 0".into());
                }
                (Some(port), _) => {
                    return fail(
                        port.span(),
                        "a real's port can only differ from the VIP's in NAT mode (DR and TUN keep the packet's port)"
                            .into(),
                    );
                }
                (None, _) => vip.port(),
            };
            let weight = *real.weight.get_ref();
            if weight > 65535 {
                return fail(
                    real.weight.span(),
                    format!("expected a weight of 0 to 65535, found {weight}"),
                );
            }
            if !seen.insert((addr, port)) {
                return fail(
                    real.addr.span(),
                    format!("real {addr} port {port} is listed twice in `{name}`"),
                );
            }
            all_reals.insert((addr, port));
            reals.push(RealSpec { addr, port, weight });
        }
        let check = service
            .check
            .as_ref()
            .map(|c| validate_check(c, vip))
            .transpose()?;
        l4.push(ServiceSpec {
            name: name.clone(),
            vip,
            protocol: service.protocol,
            mode: service.mode,
            hash: service.hash,
            reals,
            check,
            on_all_down: service.on_all_down,
        });
    }
    if all_reals.len() > lb_common::maps::MAX_REALS as usize {
        return fail(
            0..0,
            format!(
                "{} reals configured; at most {} are supported",
                all_reals.len(),
                lb_common::maps::MAX_REALS
            ),
        );
    }
    let (frontends, backends) = super::proxy::validate(config)?;
    let vrrp = validate_vrrp(config, &backends)?;
    let sync = match &config.sync {
        None => None,
        Some(sync) => Some(validate_sync(sync)?),
    };
    Ok(Resolved {
        sync,
        l4,
        vrrp,
        frontends,
        backends,
        tunnel_source_v4,
        tunnel_source_v6,
    })
}

fn validate_sync(sync: &super::model::SyncConfig) -> Result<SyncSpec, Failure> {
    let mut peers = Vec::new();
    for peer in &sync.peers {
        match peer.get_ref().parse::<IpAddr>() {
            Ok(addr) => peers.push(addr),
            Err(_) => {
                return fail(
                    peer.span(),
                    format!("expected an IP address, found `{}`", peer.get_ref()),
                );
            }
        }
    }
    if peers.is_empty() {
        return fail(0..0, "[sync] needs at least one peer".into());
    }
    if sync.key.get_ref().len() < 16 {
        return fail(
            sync.key.span(),
            "the sync key must be at least 16 bytes (every node has the same)".into(),
        );
    }
    Ok(SyncSpec {
        peers,
        port: sync.port,
        key: sync.key.get_ref().as_bytes().to_vec(),
        fin_timeout: duration_of(&sync.fin_timeout, std::time::Duration::from_secs(120))?,
        rst_timeout: duration_of(&sync.rst_timeout, std::time::Duration::from_secs(10))?,
    })
}

fn validate_interfaces(config: &Config) -> Result<(), Failure> {
    let mut seen = HashSet::new();
    for interface in &config.interfaces {
        let name = interface.name.get_ref();
        let span = interface.name.span();
        if name.is_empty() || name.len() > MAX_IFNAME_LEN {
            return fail(
                span,
                format!(
                    "expected an interface name of 1 to {MAX_IFNAME_LEN} bytes, found `{name}`"
                ),
            );
        }
        if name.contains(['/', ':'])
            || name.chars().any(char::is_whitespace)
            || name == "."
            || name == ".."
        {
            return fail(
                span,
                format!("`{name}` is not a valid interface name (no `/`, `:` or spaces)"),
            );
        }
        if !seen.insert(name.as_str()) {
            return fail(span, format!("interface `{name}` is listed more than once"));
        }
    }
    Ok(())
}

fn parse_prefix(value: &Spanned<String>) -> Result<(IpAddr, u8), Failure> {
    let text = value.get_ref();
    let parsed = text.split_once('/').and_then(|(addr, len)| {
        let addr: IpAddr = addr.parse().ok()?;
        let len: u8 = len.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some((addr, len))
    });
    parsed.ok_or_else(|| {
        (
            value.span(),
            format!("expected \"address/prefix-length\", found `{text}`"),
        )
    })
}

fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

pub(super) fn duration_of(
    value: &Option<Spanned<String>>,
    default: std::time::Duration,
) -> Result<std::time::Duration, Failure> {
    match value {
        None => Ok(default),
        Some(v) => {
            let d = parse_duration(v.get_ref()).map_err(|m| (v.span(), m))?;
            if d.is_zero() {
                return fail(v.span(), "expected a duration above zero".into());
            }
            Ok(d)
        }
    }
}

pub(super) fn validate_check(check: &CheckConfig, vip: SocketAddr) -> Result<CheckSpec, Failure> {
    let inter = duration_of(&check.inter, std::time::Duration::from_secs(2))?;
    let timing = Timing {
        rise: *check.rise.get_ref(),
        fall: *check.fall.get_ref(),
        inter,
        fastinter: duration_of(&check.fastinter, inter)?,
        downinter: duration_of(&check.downinter, inter)?,
    };
    for (value, what) in [(&check.rise, "rise"), (&check.fall, "fall")] {
        if *value.get_ref() == 0 {
            return fail(
                value.span(),
                format!("`{what}` must be at least 1 (consecutive checks needed)"),
            );
        }
    }
    let timeout = duration_of(&check.timeout, inter)?;
    if timeout > inter {
        let span = check.timeout.as_ref().map(Spanned::span).unwrap_or(0..0);
        return fail(
            span,
            format!(
                "a check timeout of {timeout:?} is larger than its interval of {inter:?}: checks would overlap"
            ),
        );
    }
    let addr = match &check.addr {
        None => None,
        Some(a) => {
            let ip: IpAddr = a.get_ref().parse().map_err(|_| {
                (
                    a.span(),
                    format!("expected an IP address, found `{}`", a.get_ref()),
                )
            })?;
            if ip.is_ipv4() != vip.is_ipv4() {
                return fail(
                    a.span(),
                    "the check address must be of the VIP's family".into(),
                );
            }
            Some(ip)
        }
    };
    let tls = match &check.ssl {
        None => None,
        Some(line) => {
            if check.kind == CheckKind::Script {
                return fail(line.span(), "`ssl` goes with tcp and http checks".into());
            }
            // The name checked is each server's address unless the line says `sni`.
            let unspecified = IpAddr::from([0, 0, 0, 0]);
            let tls = crate::proxy::tls::UpstreamTls::parse(line.get_ref(), unspecified, false)
                .map_err(|message| (line.span(), message))?;
            Some(std::sync::Arc::new(tls))
        }
    };
    let probe = match check.kind {
        CheckKind::Tcp => Probe::Tcp {
            send: check.send.as_ref().map(|s| s.as_bytes().to_vec()),
            expect: check.expect.as_ref().map(|s| s.as_bytes().to_vec()),
            tls,
        },
        CheckKind::Http => {
            let version = match &check.version {
                None => "HTTP/1.1".to_string(),
                Some(v) if v.get_ref() == "1.1" || v.get_ref() == "1.0" => {
                    format!("HTTP/{}", v.get_ref())
                }
                Some(v) => {
                    return fail(
                        v.span(),
                        format!(
                            "expected HTTP version \"1.0\" or \"1.1\", found `{}`",
                            v.get_ref()
                        ),
                    );
                }
            };
            let mut expect_status = Vec::new();
            for range in check.expect_status.iter().flatten() {
                let text = range.get_ref();
                let parsed = match text.split_once('-') {
                    Some((lo, hi)) => lo.parse::<u16>().ok().zip(hi.parse::<u16>().ok()),
                    None => text.parse::<u16>().ok().map(|c| (c, c)),
                };
                match parsed {
                    Some((lo, hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                        expect_status.push((lo, hi))
                    }
                    _ => {
                        return fail(
                            range.span(),
                            format!(
                                "expected a status like \"200\" or \"200-399\", found `{text}`"
                            ),
                        );
                    }
                }
            }
            if expect_status.is_empty() {
                expect_status.push((200, 399));
            }
            for header in &check.headers {
                let text = header.get_ref();
                let valid = text.split_once(':').is_some_and(|(name, _)| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                }) && !text.contains(['\r', '\n']);
                if !valid {
                    return fail(
                        header.span(),
                        format!("expected a header line \"Name: value\", found `{text}`"),
                    );
                }
            }
            let path = check.path.clone().unwrap_or_else(|| "/".into());
            let method = check.method.clone().unwrap_or_else(|| "GET".into());
            if !path.starts_with('/')
                || path.contains([' ', '\r', '\n'])
                || !method.bytes().all(|b| b.is_ascii_uppercase())
            {
                return fail(
                    0..0,
                    format!(
                        "HTTP check: expected a method in capitals and a path starting with `/`, found `{method} {path}`"
                    ),
                );
            }
            Probe::Http(HttpProbe {
                method,
                path,
                version,
                host: check.host.clone(),
                headers: check.headers.iter().map(|h| h.get_ref().clone()).collect(),
                expect_status,
                expect_body: check.expect_body.clone(),
                tls,
            })
        }
        CheckKind::Script => {
            let Some(script) = &check.script else {
                return fail(
                    0..0,
                    "a script check needs `script = \"/path/to/program\"`".into(),
                );
            };
            let path = std::path::PathBuf::from(script.get_ref());
            if !is_executable(&path) {
                return fail(
                    script.span(),
                    format!("`{}` is not an executable file", path.display()),
                );
            }
            Probe::Script {
                path,
                args: check.args.clone(),
            }
        }
    };
    Ok(CheckSpec {
        probe,
        timing,
        timeout,
        port: check.port,
        addr,
    })
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Checks the `[[vrrp]]` instances; `backends` are the checked L7 backends (for
/// `track_services` entries naming one).
fn validate_vrrp(
    config: &Config,
    backends: &[super::proxy::BackendSpec],
) -> Result<Vec<VrrpSpec>, Failure> {
    let mut specs: Vec<VrrpSpec> = Vec::new();
    for instance in &config.vrrp {
        let name = instance.name.get_ref().clone();
        if name.is_empty() || specs.iter().any(|s| s.name == name) {
            return fail(
                instance.name.span(),
                format!("VRRP instance names must be unique and non-empty, found `{name}`"),
            );
        }
        let interface = instance.interface.get_ref().clone();
        if interface.is_empty() || interface.len() > MAX_IFNAME_LEN {
            return fail(
                instance.interface.span(),
                format!("`{interface}` is not an interface name"),
            );
        }
        let vrid = *instance.vrid.get_ref();
        if vrid == 0 {
            return fail(instance.vrid.span(), "expected a VRID of 1 to 255".into());
        }
        if specs
            .iter()
            .any(|s| s.interface == interface && s.vrid == vrid)
        {
            return fail(
                instance.vrid.span(),
                format!("VRID {vrid} is used twice on `{interface}`"),
            );
        }
        let priority = *instance.priority.get_ref();
        if priority == 0 {
            return fail(
                instance.priority.span(),
                "expected a priority of 1 to 255 (0 is reserved for a leaving master)".into(),
            );
        }
        let version = match instance.version.get_ref() {
            2 => crate::vrrp::packet::Version::V2,
            3 => crate::vrrp::packet::Version::V3,
            other => {
                return fail(
                    instance.version.span(),
                    format!("expected VRRP version 2 or 3, found {other}"),
                );
            }
        };
        let advert = duration_of(&instance.advert, std::time::Duration::from_secs(1))?;
        let advert_cs = advert.as_millis() / 10;
        let span = instance.advert.as_ref().map(Spanned::span).unwrap_or(0..0);
        match version {
            crate::vrrp::packet::Version::V3
                if !(1..=4095).contains(&advert_cs) || advert.as_millis() % 10 != 0 =>
            {
                return fail(
                    span,
                    format!(
                        "VRRPv3 advertises in centiseconds from 10ms to 40.95s, found {advert:?}"
                    ),
                );
            }
            crate::vrrp::packet::Version::V2
                if advert.as_millis() % 1000 != 0
                    || !(1..=255).contains(&(advert.as_millis() / 1000)) =>
            {
                return fail(
                    span,
                    format!("VRRPv2 advertises in whole seconds from 1s to 255s, found {advert:?}"),
                );
            }
            _ => {}
        }
        let mut vips = Vec::new();
        let mut labels = std::collections::BTreeMap::new();
        for vip in &instance.vips {
            // keepalived's `10.0.0.100/24 label eth0:vi1` form: an address, then optionally
            // `label NAME` (IPv4 only, at most 15 bytes as the kernel allows).
            let mut words = vip.get_ref().split_whitespace();
            let text = words.next().unwrap_or("");
            let label = match (words.next(), words.next(), words.next()) {
                (None, _, _) => None,
                (Some("label"), Some(label), None)
                    if !label.is_empty() && label.len() <= MAX_IFNAME_LEN =>
                {
                    Some(label.to_string())
                }
                _ => {
                    return fail(
                        vip.span(),
                        format!(
                            "expected \"address/prefix\" or \"address/prefix label NAME\", found `{}`",
                            vip.get_ref()
                        ),
                    );
                }
            };
            let (addr, len) = match text.split_once('/') {
                Some((a, l)) => (a.parse::<IpAddr>().ok(), l.parse::<u8>().ok()),
                None => (text.parse::<IpAddr>().ok(), None),
            };
            let Some(addr) = addr else {
                return fail(
                    vip.span(),
                    format!("expected an address with prefix length, found `{text}`"),
                );
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = len.unwrap_or(max);
            if len > max {
                return fail(
                    vip.span(),
                    format!("prefix length {len} is too long for {addr}"),
                );
            }
            if version == crate::vrrp::packet::Version::V2 && addr.is_ipv6() {
                return fail(
                    vip.span(),
                    "VRRPv2 carries IPv4 addresses only; use version = 3".into(),
                );
            }
            if let Some(label) = label {
                if addr.is_ipv6() {
                    return fail(vip.span(), "address labels exist for IPv4 only".into());
                }
                labels.insert(addr, label);
            }
            vips.push((addr, len));
        }
        if vips.is_empty() {
            return fail(
                instance.name.span(),
                format!("VRRP instance `{name}` has no vips"),
            );
        }
        if vips.iter().any(|(a, _)| a.is_ipv4() != vips[0].0.is_ipv4()) {
            return fail(
                instance.name.span(),
                "one VRRP instance carries one address family".into(),
            );
        }
        let password = match &instance.auth_pass {
            None => None,
            Some(p) if version == crate::vrrp::packet::Version::V3 => {
                return fail(
                    p.span(),
                    "RFC 5798 removed authentication: auth_pass needs version = 2".into(),
                );
            }
            Some(p) if p.get_ref().is_empty() || p.get_ref().len() > 8 => {
                return fail(
                    p.span(),
                    "expected a password of 1 to 8 bytes (as keepalived sends)".into(),
                );
            }
            Some(p) => Some(crate::vrrp::packet::password_bytes(p.get_ref())),
        };
        if vips[0].0.is_ipv6() && !instance.unicast_peers.is_empty() {
            return fail(
                instance.unicast_peers[0].span(),
                "unicast peers are supported for IPv4 instances only; IPv6 uses ff02::12".into(),
            );
        }
        let mut unicast_peers = Vec::new();
        for peer in &instance.unicast_peers {
            let addr: IpAddr = peer.get_ref().parse().map_err(|_| {
                (
                    peer.span(),
                    format!("expected an IP address, found `{}`", peer.get_ref()),
                )
            })?;
            unicast_peers.push(addr);
        }
        let preempt_delay = match &instance.preempt_delay {
            None => std::time::Duration::ZERO,
            Some(d) => parse_duration(d.get_ref()).map_err(|m| (d.span(), m))?,
        };
        let garp_refresh = match &instance.garp_master_refresh {
            None => None,
            Some(d) => Some(parse_duration(d.get_ref()).map_err(|m| (d.span(), m))?)
                .filter(|d| !d.is_zero()),
        };
        let executable =
            |value: &Option<Spanned<String>>| -> Result<Option<std::path::PathBuf>, Failure> {
                match value {
                    None => Ok(None),
                    Some(v) => {
                        let path = std::path::PathBuf::from(v.get_ref());
                        if !is_executable(&path) {
                            return fail(
                                v.span(),
                                format!("`{}` is not an executable file", path.display()),
                            );
                        }
                        Ok(Some(path))
                    }
                }
            };
        let notify = NotifySpec {
            master: executable(&instance.notify_master)?,
            backup: executable(&instance.notify_backup)?,
            fault: executable(&instance.notify_fault)?,
            stop: executable(&instance.notify_stop)?,
            any: executable(&instance.notify)?,
        };
        let mut track_scripts = Vec::new();
        for track in &instance.track_scripts {
            let path = executable(&Some(track.script.clone()))?.expect("given");
            let interval = duration_of(&track.interval, std::time::Duration::from_secs(2))?;
            let timeout = duration_of(&track.timeout, interval)?;
            if track.rise == 0 || track.fall == 0 {
                return fail(
                    track.script.span(),
                    "track script rise and fall must be at least 1".into(),
                );
            }
            if !(-254..=254).contains(&track.weight) {
                return fail(
                    track.script.span(),
                    format!("expected a weight of -254 to 254, found {}", track.weight),
                );
            }
            track_scripts.push(TrackScriptSpec {
                path,
                interval,
                timeout,
                weight: track.weight,
                rise: track.rise,
                fall: track.fall,
            });
        }
        let mut track_services = Vec::new();
        for track in &instance.track_services {
            // The health board holds the L4 services first, then the L7 backends.
            let index = match (&track.service, &track.backend) {
                (Some(service), None) => {
                    let wanted = service.get_ref();
                    let Some(index) = config.l4.iter().position(|s| s.name.get_ref() == wanted)
                    else {
                        return fail(
                            service.span(),
                            format!("no [[l4]] service is called `{wanted}`"),
                        );
                    };
                    if config.l4[index].check.is_none() {
                        return fail(
                            service.span(),
                            format!("service `{wanted}` has no check to track"),
                        );
                    }
                    index
                }
                (None, Some(backend)) => {
                    let wanted = backend.get_ref();
                    let Some(index) = backends.iter().position(|b| &b.name == wanted) else {
                        return fail(
                            backend.span(),
                            format!("no backend or listen is called `{wanted}`"),
                        );
                    };
                    if backends[index].check.is_none() {
                        return fail(
                            backend.span(),
                            format!("backend `{wanted}` has no check to track"),
                        );
                    }
                    config.l4.len() + index
                }
                (Some(service), Some(_)) => {
                    return fail(
                        service.span(),
                        "a track_services entry names a service or a backend, not both".into(),
                    );
                }
                (None, None) => {
                    return fail(
                        instance.name.span(),
                        "a track_services entry needs `service = \"NAME\"` or `backend = \"NAME\"`"
                            .into(),
                    );
                }
            };
            track_services.push((index, track.weight));
        }
        let track_interfaces = instance
            .track_interfaces
            .iter()
            .map(|i| i.get_ref().clone())
            .collect();
        let garp_delay = match &instance.garp_master_delay {
            None => Some(std::time::Duration::from_secs(5)),
            Some(d) => Some(parse_duration(d.get_ref()).map_err(|m| (d.span(), m))?)
                .filter(|d| !d.is_zero()),
        };
        let mcast_group = match &instance.mcast_group {
            None => std::net::Ipv4Addr::new(224, 0, 0, 18),
            Some(g) => match g.get_ref().parse::<std::net::Ipv4Addr>() {
                Ok(addr) if addr.is_multicast() => addr,
                _ => {
                    return fail(
                        g.span(),
                        format!(
                            "expected an IPv4 multicast address, found `{}`",
                            g.get_ref()
                        ),
                    );
                }
            },
        };
        specs.push(VrrpSpec {
            name,
            interface,
            vrid,
            priority,
            version,
            advert_cs: advert_cs as u16,
            preempt: instance.preempt,
            preempt_delay,
            vips,
            labels,
            password,
            unicast_peers,
            garp_repeat: instance.garp_master_repeat,
            garp_refresh,
            track_interfaces,
            track_scripts,
            track_services,
            notify,
            garp_delay,
            mcast_group,
            sync_with: Vec::new(),
        });
    }
    for group in &config.vrrp_sync_group {
        let members: Vec<String> = group.group.iter().map(|m| m.get_ref().clone()).collect();
        for member in &group.group {
            if !specs.iter().any(|s| &s.name == member.get_ref()) {
                return fail(
                    member.span(),
                    format!(
                        "sync group `{}`: no VRRP instance is called `{}`",
                        group.name.get_ref(),
                        member.get_ref()
                    ),
                );
            }
        }
        for spec in specs.iter_mut().filter(|s| members.contains(&s.name)) {
            if !spec.sync_with.is_empty() {
                return fail(
                    group.name.span(),
                    format!("instance `{}` is in two sync groups", spec.name),
                );
            }
            spec.sync_with = members
                .iter()
                .filter(|m| **m != spec.name)
                .cloned()
                .collect();
        }
    }
    Ok(specs)
}
