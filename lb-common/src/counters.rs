//! Named per-CPU counters: one slot per parse outcome and per pass/drop reason.
//!
//! The XDP program adds to them; the agent sums the per-CPU values and prints them by name.
//! A packet bumps `Rx` once, then every class and reason it meets (an IPv4 TCP packet bumps
//! `Ipv4` and `Tcp`), then exactly one verdict: `Pass`, `Tx`, `Redirect` or `Drop`.

/// Index of a counter in the `LB_COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every frame the program saw.
    Rx = 0,
    /// Frames that carried one 802.1Q / 802.1ad tag.
    Vlan,
    /// IPv4 packets with a valid header.
    Ipv4,
    /// IPv6 packets with a valid header.
    Ipv6,
    /// TCP segments with a valid header (first fragment or unfragmented).
    Tcp,
    /// UDP datagrams with a valid header (first fragment or unfragmented).
    Udp,
    /// IP packets whose transport is neither TCP nor UDP (ICMP, ESP, SCTP, ...).
    Other,
    /// Frames whose EtherType is not IP (ARP, LLDP, a second VLAN tag, ...).
    NonIp,
    /// IP fragments (any fragment, first or not): never balanced by connection hash.
    Fragment,
    /// IPv6 packets with more extension headers than the program walks.
    Ipv6ExtLimit,
    /// Frames cut short inside a header, or with a header field that cannot be right.
    Malformed,
    /// Packets for a service on a VIP this node does not own right now (dropped: the stack
    /// would reset them; the client retransmits to the owner).
    VipInactive,
    /// Packets whose flow was in the connection table.
    LruHit,
    /// Packets whose flow went through Maglev selection.
    LruMiss,
    /// New flows not added to the connection table: past the new-flow rate limit.
    FloodSkip,
    /// Packets for a service with no usable real (dropped).
    NoReal,
    /// Replies from a real rewritten back to the VIP (NAT mode).
    NatReply,
    /// Packets too big to encapsulate within the tunnel MTU (dropped).
    EncapTooBig,
    /// ICMP errors quoting a VIP flow, sent on to that flow's real.
    IcmpToReal,
    /// Packets the kernel refused to grow for encapsulation (dropped).
    AdjustFailed,
    /// `lb_decap`: tunnelled packets for a configured VIP, stripped of their outer header.
    Decap,
    /// Verdict: handed to the kernel stack (XDP_PASS).
    Pass,
    /// Verdict: sent back out of the interface it came in on (XDP_TX).
    Tx,
    /// Verdict: sent out of another interface (XDP_REDIRECT).
    Redirect,
    /// Verdict: dropped (XDP_DROP).
    Drop,
}

impl Counter {
    /// Number of counters: the size of the `LB_COUNTERS` map.
    pub const COUNT: u32 = 25;

    /// Every counter in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Rx,
        Counter::Vlan,
        Counter::Ipv4,
        Counter::Ipv6,
        Counter::Tcp,
        Counter::Udp,
        Counter::Other,
        Counter::NonIp,
        Counter::Fragment,
        Counter::Ipv6ExtLimit,
        Counter::Malformed,
        Counter::VipInactive,
        Counter::LruHit,
        Counter::LruMiss,
        Counter::FloodSkip,
        Counter::NoReal,
        Counter::NatReply,
        Counter::EncapTooBig,
        Counter::IcmpToReal,
        Counter::AdjustFailed,
        Counter::Decap,
        Counter::Pass,
        Counter::Tx,
        Counter::Redirect,
        Counter::Drop,
    ];

    /// The counter's name as `lb stats` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Rx => "rx",
            Counter::Vlan => "vlan",
            Counter::Ipv4 => "ipv4",
            Counter::Ipv6 => "ipv6",
            Counter::Tcp => "tcp",
            Counter::Udp => "udp",
            Counter::Other => "other",
            Counter::NonIp => "non_ip",
            Counter::Fragment => "fragment",
            Counter::Ipv6ExtLimit => "ipv6_ext_limit",
            Counter::Malformed => "malformed",
            Counter::VipInactive => "vip_inactive",
            Counter::LruHit => "lru_hit",
            Counter::LruMiss => "lru_miss",
            Counter::FloodSkip => "flood_skip",
            Counter::NoReal => "no_real",
            Counter::NatReply => "nat_reply",
            Counter::EncapTooBig => "encap_too_big",
            Counter::IcmpToReal => "icmp_to_real",
            Counter::AdjustFailed => "adjust_failed",
            Counter::Decap => "decap",
            Counter::Pass => "pass",
            Counter::Tx => "tx",
            Counter::Redirect => "redirect",
            Counter::Drop => "drop",
        }
    }

    /// The counter with this name, if any.
    pub fn from_name(name: &str) -> Option<Counter> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }
}

/// The value of the `LB_COUNTERS` per-CPU array's one entry: every counter of one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterBlock {
    /// Indexed by [`Counter`].
    pub values: [u64; Counter::COUNT as usize],
}

impl Default for CounterBlock {
    fn default() -> Self {
        CounterBlock {
            values: [0; Counter::COUNT as usize],
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C) array of u64: every byte pattern is a valid value, no padding.
unsafe impl aya::Pod for CounterBlock {}

const _: () = assert!(Counter::ALL.len() == Counter::COUNT as usize);
const _: () = assert!(Counter::Drop as u32 == Counter::COUNT - 1);
