//! Named per-CPU counters: one slot per parse outcome and per pass/drop reason.
//!
//! The XDP program adds to them; the agent sums the per-CPU values and prints them by name.
//! A packet bumps `Rx` once, then every class it belongs to (an IPv4 TCP packet bumps `Ipv4`
//! and `Tcp`), then exactly one verdict (`Pass` today; the L4 data plane adds more).

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
    /// Frames handed to the kernel stack (XDP_PASS).
    Pass,
}

impl Counter {
    /// Number of counters: the size of the `LB_COUNTERS` map.
    pub const COUNT: u32 = 12;

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
        Counter::Pass,
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
            Counter::Pass => "pass",
        }
    }

    /// The counter with this name, if any.
    pub fn from_name(name: &str) -> Option<Counter> {
        Self::ALL.iter().copied().find(|c| c.name() == name)
    }
}

const _: () = assert!(Counter::ALL.len() == Counter::COUNT as usize);
const _: () = assert!(Counter::Pass as u32 == Counter::COUNT - 1);
