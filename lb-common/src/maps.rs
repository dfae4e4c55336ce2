//! Map names, pin locations, and the `#[repr(C)]` keys and values of the L4 maps.
//!
//! Addresses are four network-order words for both families: an IPv4 address sits in word 0
//! with the other three zero. Ports are in host order. Every struct has explicit padding so
//! kernel and agent agree byte for byte; the `const` asserts below pin the sizes.

/// Name of the per-CPU counter array (`u64` per [`crate::counters::Counter`]).
pub const COUNTERS_MAP: &str = "LB_COUNTERS";
/// Virtual services: [`ServiceKey`] -> service id (u32).
pub const SERVICES_MAP: &str = "LB_SERVICES";
/// Services by id: array of [`Service`].
pub const SERVICE_TABLE_MAP: &str = "LB_SERVICE_TABLE";
/// Bit filter over service keys: array of [`SERVICE_FILTER_WORDS`] u64 words, bit
/// [`crate::hash::service_filter_bit`] set for every service key and every NAT real's reply
/// source (address, port, protocol).
pub const SERVICE_FILTER_MAP: &str = "LB_SERVICE_FILTER";
/// Real servers by id: array of [`Real`].
pub const REALS_MAP: &str = "LB_REALS";
/// Maglev lookup tables, one per service, back to back: `service id * ring size + slot` -> real id.
pub const RINGS_MAP: &str = "LB_RINGS";
/// Connection table (LRU, per-CPU LRU lists): [`FlowKey`] -> [`Flow`].
pub const CONNS_MAP: &str = "LB_CONNS";
/// NAT replies: [`FlowKey`] of the real's side of a flow -> [`NatEntry`].
pub const NAT_MAP: &str = "LB_NAT";
/// Per-CPU [`TrafficStats`] per service id.
pub const SERVICE_STATS_MAP: &str = "LB_SERVICE_STATS";
/// Per-CPU [`TrafficStats`] per real id.
pub const REAL_STATS_MAP: &str = "LB_REAL_STATS";
/// One [`Settings`] entry: the knobs the agent sets at run time.
pub const SETTINGS_MAP: &str = "LB_SETTINGS";
/// Per-CPU [`FloodState`]: new flows in the current one-second window.
pub const FLOOD_MAP: &str = "LB_FLOOD";

/// New and closed flows for the peers (a ring buffer of [`FlowEvent`]), written only while
/// [`SETTINGS_SYNC`] is set.
pub const FLOW_EVENTS_MAP: &str = "LB_FLOW_EVENTS";

/// Every map the agent pins (and removes on a clean stop).
pub const ALL_MAPS: [&str; 14] = [
    COUNTERS_MAP,
    SERVICES_MAP,
    SERVICE_TABLE_MAP,
    SERVICE_FILTER_MAP,
    REALS_MAP,
    RINGS_MAP,
    CONNS_MAP,
    NAT_MAP,
    SERVICE_STATS_MAP,
    REAL_STATS_MAP,
    SETTINGS_MAP,
    FLOOD_MAP,
    DECAP_VIPS_MAP,
    FLOW_EVENTS_MAP,
];

/// Name of the L4 balancer XDP program.
pub const INGRESS_PROGRAM: &str = "lb_ingress";
/// Name of the real-server side IPIP / IP6IP6 decapsulation program.
pub const DECAP_PROGRAM: &str = "lb_decap";
/// VIPs `lb_decap` accepts: [`DecapKey`] -> u32 (1).
pub const DECAP_VIPS_MAP: &str = "LB_DECAP_VIPS";

/// Default bpffs directory where the agent pins programs and maps.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lb";

/// Services the kernel side is built for (the services map size).
pub const MAX_SERVICES: u32 = 256;
/// Real servers the kernel side is built for (the reals map size).
pub const MAX_REALS: u32 = 4096;
/// Default Maglev table size per service (prime).
pub const DEFAULT_RING_SIZE: u32 = 65537;
/// Words of the service filter: 65,536 bits, so a few hundred services leave almost every
/// packet for no service to be passed after one array read.
pub const SERVICE_FILTER_WORDS: u32 = 1024;
/// Ring slot value meaning "no real" (a service whose reals are all gone).
pub const NO_REAL: u32 = u32::MAX;

/// `family` values.
pub const FAMILY_V4: u8 = 4;
/// `family` values.
pub const FAMILY_V6: u8 = 6;

/// Service flag: the VIP is owned by this node (VRRP master, or no VRRP); otherwise its
/// packets are passed to the stack untouched.
pub const SERVICE_ACTIVE: u32 = 1;
/// Service flag: hash on the source address only (LVS `sh`-style persistence).
pub const SERVICE_SOURCE_HASH: u32 = 2;

/// Forwarding mode: rewrite MAC addresses only (LVS direct routing).
pub const MODE_DR: u32 = 0;
/// Forwarding mode: IPIP / IP6IP6 encapsulation (LVS tunnelling).
pub const MODE_TUN: u32 = 1;
/// Forwarding mode: destination NAT, replies rewritten back (LVS masquerading).
pub const MODE_NAT: u32 = 2;

/// Real flag: the slot holds a real that may receive packets.
pub const REAL_ACTIVE: u32 = 1;
/// Real flag: the real's address is IPv6.
pub const REAL_IPV6: u32 = 2;

/// Key of [`SERVICES_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// VIP, network-order words.
    pub addr: [u32; 4],
    /// Port, host order.
    pub port: u16,
    /// IP protocol (6 TCP, 17 UDP).
    pub protocol: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
}

/// Value of [`SERVICE_TABLE_MAP`]: a service by id. A connection-table entry names its
/// service by id; the key tells whether that id still belongs to the packet's service.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// The service's key (all zero in an unused slot).
    pub key: ServiceKey,
    /// Index of the service's slot here, its Maglev table and its stats slot.
    pub id: u32,
    /// `SERVICE_*` flags.
    pub flags: u32,
    /// `MODE_*`.
    pub mode: u32,
}

/// Value of [`REALS_MAP`]: where a real is and how to reach it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Real {
    /// Address, network-order words.
    pub addr: [u32; 4],
    /// Identity check: [`crate::hash::real_key`] of address and port; a connection-table entry
    /// whose key differs belongs to an earlier occupant of this id and is treated as a miss.
    pub key: u32,
    /// `REAL_*` flags.
    pub flags: u32,
    /// Interface to send on (ifindex).
    pub ifindex: u32,
    /// Destination port in NAT mode (host order); unused in DR and TUN.
    pub port: u16,
    /// Next-hop MAC (the real's, or its gateway's).
    pub dmac: [u8; 6],
    /// MAC of the sending interface.
    pub smac: [u8; 6],
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// Key of [`CONNS_MAP`] and [`NAT_MAP`]: one direction of a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Source address, network-order words.
    pub src: [u32; 4],
    /// Destination address, network-order words.
    pub dst: [u32; 4],
    /// Source port, host order.
    pub src_port: u16,
    /// Destination port, host order.
    pub dst_port: u16,
    /// IP protocol.
    pub protocol: u8,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Explicit padding (always zero: it is part of the hashed key).
    pub _pad: [u8; 2],
}

/// Value of [`CONNS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// Real the flow goes to.
    pub real_id: u32,
    /// The real's [`Real::key`] when the entry was made.
    pub real_key: u32,
    /// Service the flow belongs to, so an established flow needs no service lookup.
    pub service_id: u32,
    /// `FLOW_FIN` / `FLOW_RST`: the closes already published to the peers (with sync on),
    /// so retransmitted FINs are not sent again.
    pub closing: u32,
}

/// [`Flow::closing`]: a FIN from the client was seen.
pub const FLOW_FIN: u32 = 1;
/// [`Flow::closing`]: a RST from the client was seen.
pub const FLOW_RST: u32 = 2;

/// Value of [`NAT_MAP`]: how to turn a real's reply back into the VIP's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntry {
    /// VIP, network-order words.
    pub vip: [u32; 4],
    /// VIP port, host order.
    pub vip_port: u16,
    /// Explicit padding.
    pub _pad: u16,
    /// Interface the client's packets came in on.
    pub ifindex: u32,
    /// MAC the client's packets came from (client or router).
    pub client_mac: [u8; 6],
    /// MAC the client's packets were sent to (this node).
    pub lb_mac: [u8; 6],
}

/// Value of [`SETTINGS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Seed of the flow hash: the same on every node, so nodes agree on reals.
    pub hash_seed: u32,
    /// Maglev table size per service (prime).
    pub ring_size: u32,
    /// New flows per second per CPU above which flows are no longer added to the connection
    /// table (0: no limit).
    pub max_new_flows_per_sec: u32,
    /// Largest IP packet (outer header included) the tunnel path may send.
    pub tunnel_mtu: u32,
    /// TUN mode outer source, IPv4: network-order prefix ...
    pub tunnel_src_v4: u32,
    /// ... and the network-order mask of the bits taken from the flow hash.
    pub tunnel_src_v4_hash_mask: u32,
    /// TUN mode outer source, IPv6: prefix, network-order words ...
    pub tunnel_src_v6: [u32; 4],
    /// ... and the mask (last word only) of the bits taken from the flow hash.
    pub tunnel_src_v6_hash_mask: u32,
    /// `SETTINGS_*` flags.
    pub flags: u32,
}

/// Settings flag: some service uses NAT, so packets that match no VIP are looked up as
/// possible replies from a real (skipped otherwise, to keep non-VIP traffic cheap).
pub const SETTINGS_NAT: u32 = 1;
/// Settings flag: connection-table sync is on: new and closed flows are published in
/// [`FLOW_EVENTS_MAP`] for the agent to send to its peers.
pub const SETTINGS_SYNC: u32 = 2;

/// [`FlowEvent::kind`]: a connection-table entry (client side of a flow -> real).
pub const EVENT_CONN: u32 = 1;
/// [`FlowEvent::kind`]: a NAT reverse entry (real side of a flow -> VIP side).
pub const EVENT_NAT: u32 = 2;
/// [`FlowEvent::kind`]: the client closed a flow with a FIN (fields as [`EVENT_CONN`]).
pub const EVENT_FIN: u32 = 3;
/// [`FlowEvent::kind`]: the client reset a flow (fields as [`EVENT_CONN`]).
pub const EVENT_RST: u32 = 4;

/// One entry of [`FLOW_EVENTS_MAP`]: a flow this node just started forwarding, named by
/// identities a peer with the same configuration can resolve (service key, real key), not by
/// this node's ids.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// `EVENT_*`.
    pub kind: u32,
    /// CONN, FIN, RST: the real's [`Real::key`]; NAT: zero.
    pub real_key: u32,
    /// CONN: the client's side of the flow; NAT: the real's side.
    pub flow: FlowKey,
    /// CONN: the service's key; NAT: zero.
    pub service: ServiceKey,
    /// NAT: the reverse entry (its interface and MAC are this node's); CONN: zero.
    pub nat: NatEntry,
}

/// Per-service and per-real traffic counters (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (frame length as received).
    pub bytes: u64,
    /// Flows that went through Maglev selection.
    pub new_flows: u64,
}

/// Value of [`FLOOD_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodState {
    /// Start of the current window (bpf_ktime_get_ns).
    pub window_start_ns: u64,
    /// New flows counted in it.
    pub new_flows: u64,
}

/// Key of [`DECAP_VIPS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DecapKey {
    /// VIP, network-order words.
    pub addr: [u32; 4],
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u32,
}

const _: () = assert!(core::mem::size_of::<ServiceKey>() == 20);
const _: () = assert!(core::mem::size_of::<Service>() == 32);
const _: () = assert!(core::mem::size_of::<Real>() == 44);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<Flow>() == 16);
const _: () = assert!(core::mem::size_of::<NatEntry>() == 36);
const _: () = assert!(core::mem::size_of::<Settings>() == 48);
const _: () = assert!(core::mem::size_of::<TrafficStats>() == 24);
const _: () = assert!(core::mem::size_of::<FloodState>() == 16);
const _: () = assert!(core::mem::size_of::<DecapKey>() == 20);
const _: () = assert!(core::mem::size_of::<FlowEvent>() == 104);

#[cfg(feature = "user")]
mod pod {
    //! `aya::Pod` for every map type: all are `repr(C)` with explicit padding, so any byte
    //! pattern is a valid value.
    use super::*;

    macro_rules! pod {
        ($($t:ty),*) => {$(
            // SAFETY: repr(C), no implicit padding, integer and byte-array fields only.
            unsafe impl aya::Pod for $t {}
        )*};
    }
    pod!(
        ServiceKey,
        Service,
        Real,
        FlowKey,
        Flow,
        NatEntry,
        Settings,
        TrafficStats,
        FloodState,
        DecapKey,
        FlowEvent
    );
}
