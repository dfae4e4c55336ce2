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
    /// L4 virtual services forwarded in XDP (`[[l4]]` tables, LVS `virtual_server`).
    #[serde(default)]
    pub l4: Vec<L4Service>,
    /// VRRP instances (`[[vrrp]]` tables, keepalived `vrrp_instance`).
    #[serde(default)]
    pub vrrp: Vec<VrrpInstance>,
    /// VRRP sync groups (`[[vrrp_sync_group]]`, keepalived `vrrp_sync_group`): instances
    /// that change state together.
    #[serde(default)]
    pub vrrp_sync_group: Vec<VrrpSyncGroup>,
    /// What L7 sections inherit (`[defaults]`, HAProxy `defaults`).
    #[serde(default)]
    pub defaults: ProxyDefaults,
    /// L7 frontend-and-backend pairs (`[[listen]]`, HAProxy `listen`).
    #[serde(default)]
    pub listen: Vec<Listen>,
    /// L7 frontends (`[[frontend]]`, HAProxy `frontend`).
    #[serde(default)]
    pub frontend: Vec<Frontend>,
    /// L7 backends (`[[backend]]`, HAProxy `backend`).
    #[serde(default)]
    pub backend: Vec<Backend>,
    /// Connection-table sync between the nodes (`[sync]`, the role of LVS's sync daemon).
    pub sync: Option<SyncConfig>,
    /// Where the configuration came from, to locate errors found after loading.
    #[serde(skip)]
    pub origin: Origin,
    /// The values validation parsed (addresses, prefixes).
    #[serde(skip)]
    pub resolved: super::validate::Resolved,
}

/// `[sync]`: every node sends the flows it starts forwarding to its peers, which write them
/// into their own connection tables, so flows whose Maglev slot moved (a real added or
/// removed since they started) and NAT flows keep their real across a failover.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Every node's address (the same list on every node: a node skips its own).
    pub peers: Vec<Spanned<String>>,
    /// UDP port (default 7950).
    #[serde(default = "default_sync_port")]
    pub port: u16,
    /// Shared secret (at least 16 bytes): messages carry an HMAC-SHA256 of it.
    pub key: Spanned<String>,
    /// How long a peer keeps a flow after the node forwarding it saw its FIN (default 2m,
    /// IPVS's `tcpfin` timeout): long enough for the close to finish through a failover.
    pub fin_timeout: Option<Spanned<String>>,
    /// The same after a RST (default 10s, IPVS's CLOSE state).
    pub rst_timeout: Option<Spanned<String>>,
}

fn default_sync_port() -> u16 {
    7950
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
    /// Seed of the flow hash: keep it the same on every node so flows survive failover.
    #[serde(default = "default_hash_seed")]
    pub hash_seed: u32,
    /// Maglev table size per service; must be prime (LVS users know 65537 from Katran).
    #[serde(default = "default_ring_size")]
    pub ring_size: Spanned<u32>,
    /// Most services the maps are sized for (each costs `ring_size` x 4 bytes).
    #[serde(default = "default_max_services")]
    pub max_services: Spanned<u32>,
    /// Connection table entries (and as many NAT entries).
    #[serde(default = "default_conn_table_size")]
    pub conn_table_size: Spanned<u32>,
    /// New flows per second per CPU past which flows are no longer remembered (0: no limit).
    #[serde(default)]
    pub max_new_flows_per_sec: u32,
    /// Largest packet TUN mode sends, outer header included; bigger ones are dropped and counted.
    #[serde(default = "default_tunnel_mtu")]
    pub tunnel_mtu: Spanned<u32>,
    /// TUN mode outer source addresses (IPv4): the host bits come from the flow hash.
    #[serde(default = "default_tunnel_source_v4")]
    pub tunnel_source_v4: Spanned<String>,
    /// TUN mode outer source addresses (IPv6, prefix of at least /96).
    #[serde(default = "default_tunnel_source_v6")]
    pub tunnel_source_v6: Spanned<String>,
    /// Worker threads of the agent (HAProxy `nbthread`; 0, the default: one per CPU).
    #[serde(default)]
    pub threads: usize,
    /// Client connections the L7 proxy holds at most over all frontends; more wait to be
    /// accepted (HAProxy's global `maxconn`; 0, the default: no limit).
    #[serde(default)]
    pub maxconn: u32,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            bpf_dir: default_bpf_dir(),
            xdp_mode: XdpModeSetting::default(),
            hash_seed: default_hash_seed(),
            ring_size: default_ring_size(),
            max_services: default_max_services(),
            conn_table_size: default_conn_table_size(),
            max_new_flows_per_sec: 0,
            tunnel_mtu: default_tunnel_mtu(),
            tunnel_source_v4: default_tunnel_source_v4(),
            tunnel_source_v6: default_tunnel_source_v6(),
            threads: 0,
            maxconn: 0,
        }
    }
}

fn default_hash_seed() -> u32 {
    0x5eed
}

fn default_ring_size() -> Spanned<u32> {
    Spanned::new(0..0, lb_common::maps::DEFAULT_RING_SIZE)
}

fn default_max_services() -> Spanned<u32> {
    Spanned::new(0..0, 16)
}

fn default_conn_table_size() -> Spanned<u32> {
    Spanned::new(0..0, 262_144)
}

fn default_tunnel_mtu() -> Spanned<u32> {
    Spanned::new(0..0, 1500)
}

fn default_tunnel_source_v4() -> Spanned<String> {
    Spanned::new(0..0, "172.16.0.0/16".to_string())
}

fn default_tunnel_source_v6() -> Spanned<String> {
    Spanned::new(0..0, "fd00:1b::/112".to_string())
}

/// One `[[l4]]` table: a virtual service forwarded in XDP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L4Service {
    /// Name used in logs and `lb stats`.
    pub name: Spanned<String>,
    /// `"ip:port"` (IPv6 as `"[addr]:port"`).
    pub vip: Spanned<String>,
    /// `tcp` or `udp`.
    #[serde(default)]
    pub protocol: L4Protocol,
    /// Forwarding mode.
    #[serde(default)]
    pub mode: ForwardMode,
    /// What the flow hash covers.
    #[serde(default)]
    pub hash: HashFields,
    /// Real servers.
    pub reals: Vec<RealServer>,
    /// Health check of the reals; without one every real is taken as up.
    pub check: Option<CheckConfig>,
    /// When every real is down: `forward` to all of them anyway (fail open, the default) or
    /// `drop` new flows.
    #[serde(default)]
    pub on_all_down: AllDown,
}

/// What an L4 service does when the checks say every real is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllDown {
    /// Fail open: forward as if all were up. A check that fails everywhere at once is more
    /// often a broken check (or the checker's own network) than every server dead, and if
    /// they are all dead, forwarding to them loses nothing.
    #[default]
    Forward,
    /// Drop new flows (established ones keep their real).
    Drop,
}

/// A health check (`check` in `[[l4]]`), in HAProxy's and keepalived's vocabulary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// `tcp`, `http` or `script`.
    pub kind: CheckKind,
    /// Interval between checks while up (HAProxy `inter`, default 2s).
    pub inter: Option<Spanned<String>>,
    /// Interval while a state change is pending (default: `inter`).
    pub fastinter: Option<Spanned<String>>,
    /// Interval while down (default: `inter`).
    pub downinter: Option<Spanned<String>>,
    /// Time a check may take (default: `inter`; must not exceed it).
    pub timeout: Option<Spanned<String>>,
    /// Consecutive successes to come up (default 2).
    #[serde(default = "default_rise")]
    pub rise: Spanned<u32>,
    /// Consecutive failures to go down (default 3).
    #[serde(default = "default_fall")]
    pub fall: Spanned<u32>,
    /// Check this port instead of the real's.
    pub port: Option<u16>,
    /// Check this address instead of the real's.
    pub addr: Option<Spanned<String>>,
    /// TCP: bytes to send after connecting.
    pub send: Option<String>,
    /// TCP: bytes the reply must contain.
    pub expect: Option<String>,
    /// HTTP: method (default GET).
    pub method: Option<String>,
    /// HTTP: path (default /).
    pub path: Option<String>,
    /// HTTP: `1.0` or `1.1` (default 1.1).
    pub version: Option<Spanned<String>>,
    /// HTTP: Host header.
    pub host: Option<String>,
    /// HTTP: extra header lines, `"Name: value"`.
    #[serde(default)]
    pub headers: Vec<Spanned<String>>,
    /// HTTP: accepted statuses, `"200"` or `"200-399"` (default 200-399).
    pub expect_status: Option<Vec<Spanned<String>>>,
    /// HTTP: a string the body must contain.
    pub expect_body: Option<String>,
    /// TCP and HTTP: check over TLS (HAProxy `check-ssl`), with the words of a server's `ssl`:
    /// `"verify required ca-file FILE [sni NAME]"` or `"verify none"`.
    pub ssl: Option<Spanned<String>>,
    /// Script: program to run (exit status 0 is up); gets `LB_REAL_ADDR` and `LB_REAL_PORT`.
    pub script: Option<Spanned<String>>,
    /// Script: its arguments.
    #[serde(default)]
    pub args: Vec<String>,
}

fn default_rise() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}

fn default_fall() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}

/// Kinds of health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// TCP connect (HAProxy `check`, keepalived `TCP_CHECK`).
    Tcp,
    /// HTTP request (`option httpchk`, keepalived `HTTP_GET`).
    Http,
    /// External program (keepalived `MISC_CHECK`).
    Script,
}

/// A real server of an [`L4Service`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Address (same family as the VIP).
    pub addr: Spanned<String>,
    /// Port, NAT mode only (defaults to the VIP's port).
    pub port: Option<Spanned<u16>>,
    /// Maglev weight; 0 drains: established flows stay, new flows go elsewhere.
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
}

fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// Transport protocol of an L4 service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

/// LVS forwarding methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    /// Direct routing: MAC rewrite; reals hold the VIP on a non-ARPing interface.
    #[default]
    Dr,
    /// IPIP / IP6IP6 tunnelling; reals decapsulate (`lb decap`).
    Tun,
    /// Destination NAT; replies must come back through this node.
    Nat,
}

/// What the flow hash covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashFields {
    /// Addresses, ports and protocol: every connection is placed on its own.
    #[default]
    Flow,
    /// Source address only: all connections of a client go to one real (LVS `sh`).
    Source,
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

/// One `[[vrrp]]` table: a keepalived `vrrp_instance`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstance {
    /// Instance name (`VI_1`), used in logs.
    pub name: Spanned<String>,
    /// Interface the instance runs on.
    pub interface: Spanned<String>,
    /// Virtual router id, 1-255; must match the peers'.
    pub vrid: Spanned<u8>,
    /// Priority, 1-255 (255: address owner).
    #[serde(default = "default_priority")]
    pub priority: Spanned<u8>,
    /// 2 (RFC 3768, IPv4, optional password) or 3 (RFC 5798).
    #[serde(default = "default_vrrp_version")]
    pub version: Spanned<u8>,
    /// Advertisement interval (keepalived `advert_int`), default 1s.
    pub advert: Option<Spanned<String>>,
    /// Preempt a lower-priority master (default true; keepalived `nopreempt` = false).
    #[serde(default = "default_true")]
    pub preempt: bool,
    /// Do not preempt until this long after start-up.
    pub preempt_delay: Option<Spanned<String>>,
    /// Virtual addresses with prefix length (`"10.0.0.100/24"`).
    pub vips: Vec<Spanned<String>>,
    /// VRRPv2 simple password (keepalived `auth_type PASS`, `auth_pass`), at most 8 bytes.
    pub auth_pass: Option<Spanned<String>>,
    /// Send to these peers instead of the multicast group (keepalived `unicast_peer`).
    #[serde(default)]
    pub unicast_peers: Vec<Spanned<String>>,
    /// Gratuitous ARPs sent on becoming master (keepalived `garp_master_repeat`, default 5).
    #[serde(default = "default_garp_repeat")]
    pub garp_master_repeat: u32,
    /// Re-announce the addresses this often while master (0: never; `garp_master_refresh`).
    pub garp_master_refresh: Option<Spanned<String>>,
    /// A second burst of gratuitous ARPs this long after becoming master (keepalived
    /// `garp_master_delay`, default 5s; 0: none).
    pub garp_master_delay: Option<Spanned<String>>,
    /// Multicast group to advertise to instead of 224.0.0.18 (keepalived `vrrp_mcast_group4`).
    pub mcast_group: Option<Spanned<String>>,
    /// Interfaces whose link going down puts the instance in FAULT (keepalived
    /// `track_interface`).
    #[serde(default)]
    pub track_interfaces: Vec<Spanned<String>>,
    /// Scripts whose result moves the priority or causes FAULT (keepalived `track_script`).
    #[serde(default)]
    pub track_scripts: Vec<TrackScript>,
    /// L4 services and L7 backends whose health moves the priority or causes FAULT: failing
    /// means no real or server of it is up.
    #[serde(default)]
    pub track_services: Vec<TrackService>,
    /// Run on entering MASTER (keepalived `notify_master`).
    pub notify_master: Option<Spanned<String>>,
    /// Run on entering BACKUP.
    pub notify_backup: Option<Spanned<String>>,
    /// Run on entering FAULT.
    pub notify_fault: Option<Spanned<String>>,
    /// Run when the instance stops.
    pub notify_stop: Option<Spanned<String>>,
    /// Run on every change with keepalived's arguments: `INSTANCE <name> <state> <priority>`.
    pub notify: Option<Spanned<String>>,
}

/// A `[[vrrp_sync_group]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpSyncGroup {
    /// Group name.
    pub name: Spanned<String>,
    /// Names of the member instances.
    pub group: Vec<Spanned<String>>,
}

/// A `track_script` entry (keepalived `vrrp_script`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackScript {
    /// Program to run; exit status 0 is success.
    pub script: Spanned<String>,
    /// Time between runs (default 2s).
    pub interval: Option<Spanned<String>>,
    /// Time a run may take (default: the interval).
    pub timeout: Option<Spanned<String>>,
    /// Priority change: negative is added while failing, positive while succeeding; 0 (the
    /// default) means failing puts the instance in FAULT.
    #[serde(default)]
    pub weight: i32,
    /// Consecutive successes to count as succeeding (default 1).
    #[serde(default = "default_one")]
    pub rise: u32,
    /// Consecutive failures to count as failing (default 1).
    #[serde(default = "default_one")]
    pub fall: u32,
}

/// A `track_services` entry: an L4 service or an L7 backend, by name (one of the two).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackService {
    /// Name of an `[[l4]]` service with a check: failing when none of its reals is up.
    pub service: Option<Spanned<String>>,
    /// Name of a backend (or listen) with a check: failing when none of its servers is up.
    pub backend: Option<Spanned<String>>,
    /// As for scripts: negative while failing; 0 means FAULT.
    #[serde(default)]
    pub weight: i32,
}

fn default_one() -> u32 {
    1
}

fn default_priority() -> Spanned<u8> {
    Spanned::new(0..0, 100)
}

fn default_vrrp_version() -> Spanned<u8> {
    Spanned::new(0..0, 3)
}

fn default_true() -> bool {
    true
}

fn default_garp_repeat() -> u32 {
    5
}

/// HAProxy's `timeout` lines as a sub-table: `timeout = { connect = "5s", client = "30s" }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Time to establish a connection to a server (backend; default 5s).
    pub connect: Option<Spanned<String>>,
    /// Inactivity allowed on the client side (frontend; default 30s).
    pub client: Option<Spanned<String>>,
    /// Time to wait for a server's response (backend; default 30s).
    pub server: Option<Spanned<String>>,
    /// Time for a client to send a whole request head (frontend; default: `client`); past
    /// it the client gets a 408 (slowloris).
    pub http_request: Option<Spanned<String>>,
    /// Time a kept-alive client connection may wait for its next request (frontend;
    /// default: `http_request`).
    pub http_keep_alive: Option<Spanned<String>>,
    /// Time a request may wait for a server slot (backend; default: `connect`); past it 503.
    pub queue: Option<Spanned<String>>,
    /// Inactivity allowed in a tunnel after an Upgrade (backend; default: `client`).
    pub tunnel: Option<Spanned<String>>,
}

/// The `[defaults]` table (HAProxy `defaults`): what every frontend, backend and listen
/// takes unless it says otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyDefaults {
    /// `"http"` (default) or `"tcp"`.
    pub mode: Option<Spanned<String>>,
    /// HAProxy `option` lines: `"forwardfor except 10.0.0.0/8"`, `"http-server-close"`,
    /// `"httpclose"`, `"http-keep-alive"`, `"redispatch"`, `"dontlognull"`, `"httplog"`;
    /// `"no redispatch"` cancels an inherited one.
    #[serde(default)]
    pub options: Vec<Spanned<String>>,
    /// Timeouts.
    #[serde(default)]
    pub timeout: Timeouts,
    /// Connection retries (default 3).
    pub retries: Option<u32>,
    /// Balance algorithm.
    pub balance: Option<Spanned<String>>,
    /// Concurrent client connections per frontend (0: no limit).
    pub maxconn: Option<u32>,
    /// HAProxy `errorfile` lines: `"503 /etc/lb/errors/503.http"` (a raw HTTP response).
    #[serde(default)]
    pub errorfile: Vec<Spanned<String>>,
    /// HAProxy `errorloc` lines: `"503 https://status.example.com/"` (a 302 to that URL
    /// instead of the status; `"503 303 URL"` for a 303).
    #[serde(default)]
    pub errorloc: Vec<Spanned<String>>,
    /// Where access log lines go: `"stdout"` (default), `"none"`, a file path, or
    /// `"syslog:/dev/log"` (a local syslog socket).
    pub log: Option<Spanned<String>>,
    /// Largest request head in bytes, request line included (HAProxy's `tune.bufsize`
    /// less its reserve; default 16384, from 8192 to 262144): past it 431.
    pub max_header_size: Option<Spanned<u32>>,
    /// Most header fields in a request, HTTP/2 cookie fields each counted (HAProxy's
    /// `tune.http.maxhdr`; default 100, from 1 to 1000): past it 431.
    pub max_headers: Option<Spanned<u32>>,
}

/// One `[[frontend]]` table: where clients connect and which backend serves them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Frontend {
    /// Name, used in logs.
    pub name: Spanned<String>,
    /// Addresses to listen on (`"0.0.0.0:80"`, `"[::]:80"`); binds even before the address
    /// exists (IP_FREEBIND), so a frontend on a VRRP VIP starts on a backup node.
    pub bind: Vec<Spanned<String>>,
    /// ACLs, HAProxy's `acl` lines without the keyword: `"is_api path_beg -i /api"`.
    #[serde(default)]
    pub acls: Vec<Spanned<String>>,
    /// Routing rules in order, HAProxy's `use_backend` lines: `"api if is_api"`.
    #[serde(default)]
    pub use_backend: Vec<Spanned<String>>,
    /// Backend for requests no rule routes.
    pub default_backend: Option<Spanned<String>>,
    /// `"http"` or `"tcp"` (default: `[defaults]`'s, else http).
    pub mode: Option<Spanned<String>>,
    /// `option` lines (see `[defaults]`).
    #[serde(default)]
    pub options: Vec<Spanned<String>>,
    /// Timeouts (client, http_request, http_keep_alive).
    #[serde(default)]
    pub timeout: Timeouts,
    /// Header rules on requests: `"set-header X-Forwarded-Proto http"`, `"del-header X-Debug"`,
    /// `"add-header X-Client %[src] if is_api"`.
    #[serde(default)]
    pub http_request: Vec<Spanned<String>>,
    /// Header rules on responses.
    #[serde(default)]
    pub http_response: Vec<Spanned<String>>,
    /// Concurrent client connections at most; more wait to be accepted (0: no limit).
    pub maxconn: Option<u32>,
    /// `errorfile` lines.
    #[serde(default)]
    pub errorfile: Vec<Spanned<String>>,
    /// HAProxy `errorloc` lines: `"503 https://status.example.com/"` (a 302 to that URL
    /// instead of the status; `"503 303 URL"` for a 303).
    #[serde(default)]
    pub errorloc: Vec<Spanned<String>>,
    /// Access log target (see `[defaults]`).
    pub log: Option<Spanned<String>>,
    /// A path answered 200 by the proxy itself, for a load balancer in front of it
    /// (HAProxy's `monitor-uri`).
    pub monitor_uri: Option<Spanned<String>>,
    /// Largest request head in bytes, request line included (HAProxy's `tune.bufsize`
    /// less its reserve; default 16384, from 8192 to 262144): past it 431.
    pub max_header_size: Option<Spanned<u32>>,
    /// Most header fields in a request, HTTP/2 cookie fields each counted (HAProxy's
    /// `tune.http.maxhdr`; default 100, from 1 to 1000): past it 431.
    pub max_headers: Option<Spanned<u32>>,
}

/// `stick_cookie`: learn an application's session cookie from responses and send later
/// requests carrying it to the same server (HAProxy `stick on req.cook(NAME)` with
/// `stick store-response res.cook(NAME)`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickCookie {
    /// Cookie name, e.g. `JSESSIONID`.
    pub name: Spanned<String>,
    /// Sessions remembered at most (default 100000); the oldest go first.
    pub size: Option<u32>,
    /// A session unused this long is forgotten (default 30m).
    pub expire: Option<Spanned<String>>,
}

/// One `[[backend]]` table: servers and how to choose among them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// Name, used by `use_backend` and in logs.
    pub name: Spanned<String>,
    /// Algorithm: roundrobin (default), static-rr, leastconn, first, source, uri,
    /// url_param(name), hdr(name), random.
    pub balance: Option<Spanned<String>>,
    /// Hashing algorithms: `map-based` (default) or `consistent`.
    pub hash_type: Option<Spanned<String>>,
    /// The servers.
    pub servers: Vec<Server>,
    /// Health check of the servers (same vocabulary as `[[l4]]`).
    pub check: Option<CheckConfig>,
    /// Persistence cookie, HAProxy's `cookie` line: `"SERVERID insert indirect nocache"`.
    pub cookie: Option<Spanned<String>>,
    /// Application session stickiness.
    pub stick_cookie: Option<StickCookie>,
    /// `"http"` or `"tcp"` (default: `[defaults]`'s, else http).
    pub mode: Option<Spanned<String>>,
    /// `option` lines (see `[defaults]`).
    #[serde(default)]
    pub options: Vec<Spanned<String>>,
    /// Timeouts (connect, server, queue, tunnel).
    #[serde(default)]
    pub timeout: Timeouts,
    /// Further connection attempts when connecting fails (HAProxy `retries`, default 3).
    pub retries: Option<u32>,
    /// ACLs usable in this backend's header rules.
    #[serde(default)]
    pub acls: Vec<Spanned<String>>,
    /// Header rules on requests.
    #[serde(default)]
    pub http_request: Vec<Spanned<String>>,
    /// Header rules on responses.
    #[serde(default)]
    pub http_response: Vec<Spanned<String>>,
    /// `errorfile` lines (used before the frontend's).
    #[serde(default)]
    pub errorfile: Vec<Spanned<String>>,
    /// HAProxy `errorloc` lines: `"503 https://status.example.com/"` (a 302 to that URL
    /// instead of the status; `"503 303 URL"` for a 303).
    #[serde(default)]
    pub errorloc: Vec<Spanned<String>>,
}

/// One `[[listen]]` table (HAProxy `listen`): a frontend and its one backend in one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// Name of both halves.
    pub name: Spanned<String>,
    /// Addresses to listen on.
    pub bind: Vec<Spanned<String>>,
    /// ACLs (for header rules).
    #[serde(default)]
    pub acls: Vec<Spanned<String>>,
    /// Algorithm.
    pub balance: Option<Spanned<String>>,
    /// Hashing algorithms.
    pub hash_type: Option<Spanned<String>>,
    /// The servers.
    pub servers: Vec<Server>,
    /// Health check.
    pub check: Option<CheckConfig>,
    /// Persistence cookie.
    pub cookie: Option<Spanned<String>>,
    /// Application session stickiness.
    pub stick_cookie: Option<StickCookie>,
    /// `"http"` or `"tcp"`.
    pub mode: Option<Spanned<String>>,
    /// `option` lines.
    #[serde(default)]
    pub options: Vec<Spanned<String>>,
    /// Timeouts.
    #[serde(default)]
    pub timeout: Timeouts,
    /// Connection retries.
    pub retries: Option<u32>,
    /// Header rules on requests.
    #[serde(default)]
    pub http_request: Vec<Spanned<String>>,
    /// Header rules on responses.
    #[serde(default)]
    pub http_response: Vec<Spanned<String>>,
    /// Concurrent client connections at most.
    pub maxconn: Option<u32>,
    /// `errorfile` lines.
    #[serde(default)]
    pub errorfile: Vec<Spanned<String>>,
    /// HAProxy `errorloc` lines: `"503 https://status.example.com/"` (a 302 to that URL
    /// instead of the status; `"503 303 URL"` for a 303).
    #[serde(default)]
    pub errorloc: Vec<Spanned<String>>,
    /// Access log target.
    pub log: Option<Spanned<String>>,
    /// A path answered 200 by the proxy itself (HAProxy's `monitor-uri`).
    pub monitor_uri: Option<Spanned<String>>,
    /// Largest request head in bytes, request line included (HAProxy's `tune.bufsize`
    /// less its reserve; default 16384, from 8192 to 262144): past it 431.
    pub max_header_size: Option<Spanned<u32>>,
    /// Most header fields in a request, HTTP/2 cookie fields each counted (HAProxy's
    /// `tune.http.maxhdr`; default 100, from 1 to 1000): past it 431.
    pub max_headers: Option<Spanned<u32>>,
}

impl Listen {
    /// The frontend half: routes everything to the backend half.
    pub fn frontend(&self) -> Frontend {
        Frontend {
            name: self.name.clone(),
            bind: self.bind.clone(),
            acls: self.acls.clone(),
            use_backend: Vec::new(),
            default_backend: Some(self.name.clone()),
            mode: self.mode.clone(),
            options: self.options.clone(),
            timeout: Timeouts {
                client: self.timeout.client.clone(),
                http_request: self.timeout.http_request.clone(),
                http_keep_alive: self.timeout.http_keep_alive.clone(),
                ..Timeouts::default()
            },
            http_request: self.http_request.clone(),
            http_response: self.http_response.clone(),
            maxconn: self.maxconn,
            errorfile: self.errorfile.clone(),
            errorloc: self.errorloc.clone(),
            log: self.log.clone(),
            monitor_uri: self.monitor_uri.clone(),
            max_header_size: self.max_header_size.clone(),
            max_headers: self.max_headers.clone(),
        }
    }

    /// The backend half. Header rules and options live on the frontend half only, so
    /// they apply once.
    pub fn backend(&self) -> Backend {
        Backend {
            name: self.name.clone(),
            balance: self.balance.clone(),
            hash_type: self.hash_type.clone(),
            servers: self.servers.clone(),
            check: self.check.clone(),
            cookie: self.cookie.clone(),
            stick_cookie: self.stick_cookie.clone(),
            mode: self.mode.clone(),
            options: self.options.clone(),
            timeout: Timeouts {
                connect: self.timeout.connect.clone(),
                server: self.timeout.server.clone(),
                queue: self.timeout.queue.clone(),
                // A listen's tunnels default to its own client timeout, as in HAProxy.
                tunnel: self.timeout.tunnel.clone().or(self.timeout.client.clone()),
                ..Timeouts::default()
            },
            retries: self.retries,
            acls: Vec::new(),
            http_request: Vec::new(),
            http_response: Vec::new(),
            errorfile: Vec::new(),
            errorloc: Vec::new(),
        }
    }
}

/// A `server` line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Name, used in logs and the runtime API.
    pub name: Spanned<String>,
    /// `"address:port"`.
    pub addr: Spanned<String>,
    /// Weight (default 1).
    #[serde(default = "default_server_weight")]
    pub weight: u32,
    /// Only used when no other server is up.
    #[serde(default)]
    pub backup: bool,
    /// Concurrent requests at most; more wait in the backend's queue (0: no limit).
    #[serde(default)]
    pub maxconn: u32,
    /// Value of the persistence cookie that designates this server (default: its name).
    pub cookie: Option<Spanned<String>>,
    /// Health-checked when the backend has a check (default true; HAProxy's `check`).
    #[serde(default = "default_true")]
    pub check: bool,
    /// TLS to the server: `"verify required ca-file /etc/lb/ca.pem sni api.example"` or
    /// `"verify none"` (HAProxy's `ssl verify ...`).
    pub ssl: Option<Spanned<String>>,
    /// `"h2"`: speak HTTP/2 to the server (over TLS with ALPN h2, else with prior knowledge),
    /// as HAProxy's `proto h2`. Default HTTP/1.1.
    pub proto: Option<Spanned<String>>,
    /// After its checks bring it back up, the server's weight ramps from little to full over
    /// this time (HAProxy's `slowstart`; dynamic algorithms only).
    pub slowstart: Option<Spanned<String>>,
}

fn default_server_weight() -> u32 {
    1
}
