//! L4 packet fixtures: DR, TUN and NAT x IPv4/IPv6 x TCP/UDP through the real `lb_ingress`,
//! with maps filled by the agent's sync code from a configuration. Output bytes are compared
//! whole against frames built independently (etherparse computes their checksums), so a wrong
//! incremental checksum update fails the row. Needs root.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use lb::dataplane::{
    model::{L4Model, addr_words},
    neigh::Nexthop,
};
use lb_common::{
    counters::Counter::{self, *},
    hash::flow_hash,
    maps::{FAMILY_V4, FAMILY_V6, FlowKey, ServiceKey},
};
use lb_tests::{
    fixture::{self, Fixture, Output},
    packets::{
        CLIENT_MAC, LB_MAC, icmpv4_frag_needed, icmpv6_packet_too_big, ip6ip6, ipip, tcp_segment,
        udp_datagram, with_macs,
    },
    require_root,
    xdp::{TEST_RUN_IFINDEX, XdpAction, XdpHarness, config},
};

const CONFIG: &str = r#"
[global]
ring_size = 251

[[l4]]
name = "dr4"
vip = "10.0.0.100:80"
mode = "dr"
reals = [{ addr = "10.0.2.11" }]

[[l4]]
name = "dr4u"
vip = "10.0.0.100:53"
protocol = "udp"
reals = [{ addr = "10.0.2.11" }]

[[l4]]
name = "tun4"
vip = "10.0.0.101:80"
mode = "tun"
reals = [{ addr = "10.0.3.11" }]

[[l4]]
name = "tun4u"
vip = "10.0.0.101:53"
protocol = "udp"
mode = "tun"
reals = [{ addr = "10.0.3.11" }]

[[l4]]
name = "nat4"
vip = "10.0.0.102:80"
mode = "nat"
reals = [{ addr = "10.0.2.12", port = 8080 }]

[[l4]]
name = "nat4u"
vip = "10.0.0.102:53"
protocol = "udp"
mode = "nat"
reals = [{ addr = "10.0.2.12", port = 5353 }]

[[l4]]
name = "dr6"
vip = "[fd00::100]:80"
reals = [{ addr = "fd00:2::11" }]

[[l4]]
name = "dr6u"
vip = "[fd00::100]:53"
protocol = "udp"
reals = [{ addr = "fd00:2::11" }]

[[l4]]
name = "tun6"
vip = "[fd00::101]:80"
mode = "tun"
reals = [{ addr = "fd00:3::11" }]

[[l4]]
name = "tun6u"
vip = "[fd00::101]:53"
protocol = "udp"
mode = "tun"
reals = [{ addr = "fd00:3::11" }]

[[l4]]
name = "nat6"
vip = "[fd00::102]:80"
mode = "nat"
reals = [{ addr = "fd00:2::12", port = 8080 }]

[[l4]]
name = "nat6u"
vip = "[fd00::102]:53"
protocol = "udp"
mode = "nat"
reals = [{ addr = "fd00:2::12", port = 5353 }]

[[l4]]
name = "noreal"
vip = "10.0.0.104:80"
reals = [{ addr = "10.0.9.9" }]
"#;

const DR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x11];
const NAT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x12];
const TUN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x03, 0x11];
const OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
/// An interface other than the test-run ingress: packets to it are redirected.
const OTHER_IFINDEX: u32 = 7;
const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\n\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn nexthops() -> HashMap<IpAddr, Nexthop> {
    let hop = |ifindex, dmac| Nexthop {
        ifindex,
        smac: OUT_MAC,
        dmac,
    };
    [
        ("10.0.2.11", hop(OTHER_IFINDEX, DR_MAC)),
        ("fd00:2::11", hop(OTHER_IFINDEX, DR_MAC)),
        ("10.0.2.12", hop(OTHER_IFINDEX, NAT_MAC)),
        ("fd00:2::12", hop(OTHER_IFINDEX, NAT_MAC)),
        ("10.0.3.11", hop(TEST_RUN_IFINDEX, TUN_MAC)),
        ("fd00:3::11", hop(TEST_RUN_IFINDEX, TUN_MAC)),
    ]
    .into_iter()
    .map(|(a, h)| (a.parse().expect("address"), h))
    .collect()
}

fn flow(src: SocketAddr, dst: SocketAddr, protocol: u8) -> FlowKey {
    FlowKey {
        src: addr_words(src.ip()),
        dst: addr_words(dst.ip()),
        src_port: src.port(),
        dst_port: dst.port(),
        protocol,
        family: if src.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 },
        _pad: [0; 2],
    }
}

/// The packet a client sends, and its bytes after the Ethernet header.
fn client_packet(udp: bool, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    if udp {
        udp_datagram(CLIENT_MAC, LB_MAC, src, dst, payload)
    } else {
        tcp_segment(CLIENT_MAC, LB_MAC, src, dst, payload)
    }
}

/// Rows for one (family, protocol) combination across the three modes.
fn mode_rows(v6: bool, udp: bool, rows: &mut Vec<Fixture>) {
    let (l3, proto_counter, proto) = match (v6, udp) {
        (false, false) => (Ipv4, Tcp, 6),
        (false, true) => (Ipv4, Udp, 17),
        (true, false) => (Ipv6, Tcp, 6),
        (true, true) => (Ipv6, Udp, 17),
    };
    let family = if v6 { "IPv6" } else { "IPv4" };
    let transport = if udp { "UDP" } else { "TCP" };
    let port = if udp { 53 } else { 80 };
    let (client, dr_vip, tun_vip, nat_vip, tun_real, nat_real) = if v6 {
        (
            addr("[fd00:1::2]:40000"),
            addr(&format!("[fd00::100]:{port}")),
            addr(&format!("[fd00::101]:{port}")),
            addr(&format!("[fd00::102]:{port}")),
            IpAddr::V6("fd00:3::11".parse().expect("v6")),
            SocketAddr::new(
                "fd00:2::12".parse().expect("v6"),
                if udp { 5353 } else { 8080 },
            ),
        )
    } else {
        (
            addr("10.0.1.2:40000"),
            addr(&format!("10.0.0.100:{port}")),
            addr(&format!("10.0.0.101:{port}")),
            addr(&format!("10.0.0.102:{port}")),
            IpAddr::V4("10.0.3.11".parse().expect("v4")),
            SocketAddr::new(
                "10.0.2.12".parse().expect("v4"),
                if udp { 5353 } else { 8080 },
            ),
        )
    };
    let name = |mode: &str, what: &str| format!("{mode} {family} {transport}: {what}");

    // DR: only the MAC addresses change.
    let input = client_packet(udp, client, dr_vip, PAYLOAD);
    let output = Output::Bytes(with_macs(&input, DR_MAC, OUT_MAC));
    rows.push(Fixture::new(
        name("DR", "new flow (Maglev)"),
        input.clone(),
        XdpAction::Redirect,
        output,
        &[Rx, l3, proto_counter, LruMiss, Redirect],
    ));
    let output = Output::Bytes(with_macs(&input, DR_MAC, OUT_MAC));
    rows.push(Fixture::new(
        name("DR", "same flow (connection table)"),
        input,
        XdpAction::Redirect,
        output,
        &[Rx, l3, proto_counter, LruHit, Redirect],
    ));

    // TUN: an outer header in front, its source taken from the flow hash.
    let input = client_packet(udp, client, tun_vip, PAYLOAD);
    let hash = flow_hash(&flow(client, tun_vip, proto), 0x5eed, false);
    let expected = match tun_real {
        IpAddr::V4(real) => {
            let src = Ipv4Addr::new(172, 16, 0, 0).to_bits() | (hash.to_be() & 0xffff);
            ipip(
                OUT_MAC,
                TUN_MAC,
                Ipv4Addr::from_bits(src),
                real,
                &input[14..],
            )
        }
        IpAddr::V6(real) => {
            let prefix = "fd00:1b::".parse::<Ipv6Addr>().expect("v6").to_bits();
            let src = prefix | u128::from(hash.to_be() & 0xffff);
            ip6ip6(
                OUT_MAC,
                TUN_MAC,
                Ipv6Addr::from_bits(src),
                real,
                hash,
                &input[14..],
            )
        }
    };
    rows.push(Fixture::new(
        name("TUN", "encapsulated to the real"),
        input,
        XdpAction::Tx,
        Output::Bytes(expected),
        &[Rx, l3, proto_counter, LruMiss, Tx],
    ));

    // NAT: the destination becomes the real; the reply is turned back into the VIP's.
    let input = client_packet(udp, client, nat_vip, PAYLOAD);
    let expected = if udp {
        udp_datagram(OUT_MAC, NAT_MAC, client, nat_real, PAYLOAD)
    } else {
        tcp_segment(OUT_MAC, NAT_MAC, client, nat_real, PAYLOAD)
    };
    let expected = with_macs(&expected, NAT_MAC, OUT_MAC);
    rows.push(Fixture::new(
        name("NAT", "destination rewritten"),
        input,
        XdpAction::Redirect,
        Output::Bytes(expected),
        &[Rx, l3, proto_counter, LruMiss, Redirect],
    ));
    let reply = if udp {
        udp_datagram(NAT_MAC, OUT_MAC, nat_real, client, b"reply")
    } else {
        tcp_segment(NAT_MAC, OUT_MAC, nat_real, client, b"reply")
    };
    let expected = if udp {
        udp_datagram(LB_MAC, CLIENT_MAC, nat_vip, client, b"reply")
    } else {
        tcp_segment(LB_MAC, CLIENT_MAC, nat_vip, client, b"reply")
    };
    rows.push(Fixture::new(
        name("NAT", "reply source turned back to the VIP"),
        reply,
        XdpAction::Tx,
        Output::Bytes(expected),
        &[Rx, l3, proto_counter, NatReply, Tx],
    ));
}

fn set_active(harness: &mut XdpHarness, vip: SocketAddr, active: bool) {
    let key = ServiceKey {
        addr: addr_words(vip.ip()),
        port: vip.port(),
        protocol: 6,
        family: FAMILY_V4,
    };
    assert!(
        harness
            .dataplane()
            .set_service_active(&key, active)
            .expect("services map")
    );
}

#[test]
fn l4_forwarding_fixtures() {
    require_root();
    let mut harness = XdpHarness::with_config(CONFIG, &nexthops()).expect("load and fill the maps");
    let mut rows: Vec<Fixture> = Vec::new();
    for v6 in [false, true] {
        for udp in [false, true] {
            mode_rows(v6, udp, &mut rows);
        }
    }
    let client = addr("10.0.1.2:40000");
    let dr_vip = addr("10.0.0.100:80");
    let established = client_packet(false, client, dr_vip, PAYLOAD);

    // ICMP errors about a VIP flow reach the flow's real; others are passed.
    let reply_from_vip = tcp_segment(LB_MAC, CLIENT_MAC, dr_vip, client, &[0; 64]);
    let router: Ipv4Addr = "10.0.1.254".parse().expect("v4");
    let icmp = icmpv4_frag_needed(
        CLIENT_MAC,
        LB_MAC,
        router,
        "10.0.0.100".parse().expect("v4"),
        &reply_from_vip[14..],
        1400,
    );
    rows.push(Fixture::new(
        "ICMP frag-needed quoting an established DR flow goes to its real",
        icmp.clone(),
        XdpAction::Redirect,
        Output::Bytes(with_macs(&icmp, DR_MAC, OUT_MAC)),
        &[Rx, Ipv4, Other, IcmpToReal, Redirect],
    ));
    // NAT: the error names the VIP's side of the reply; the real gets it about its own.
    let nat_vip = addr("10.0.0.102:80");
    let real_side = addr("10.0.2.12:8080");
    let from_vip = tcp_segment(LB_MAC, CLIENT_MAC, nat_vip, client, &[0; 64]);
    let from_real = tcp_segment(NAT_MAC, OUT_MAC, real_side, client, &[0; 64]);
    let about_real = icmpv4_frag_needed(
        CLIENT_MAC,
        LB_MAC,
        router,
        "10.0.2.12".parse().expect("v4"),
        &from_real[14..],
        1400,
    );
    rows.push(Fixture::new(
        "ICMP frag-needed quoting a NAT flow reaches its real about the real's own reply",
        icmpv4_frag_needed(
            CLIENT_MAC,
            LB_MAC,
            router,
            "10.0.0.102".parse().expect("v4"),
            &from_vip[14..],
            1400,
        ),
        XdpAction::Redirect,
        Output::Bytes(with_macs(&about_real, NAT_MAC, OUT_MAC)),
        &[Rx, Ipv4, Other, IcmpToReal, Redirect],
    ));
    // The same over IPv6 (the ICMPv6 checksum covers a pseudo-header with the destination).
    let router6: Ipv6Addr = "fd00:1::fe".parse().expect("v6");
    let client6 = addr("[fd00:1::2]:40000");
    for (vip, real, mac, what) in [
        ("[fd00::100]:80", "[fd00::100]:80", DR_MAC, "DR"),
        ("[fd00::102]:80", "[fd00:2::12]:8080", NAT_MAC, "NAT"),
    ] {
        let (vip, real) = (addr(vip), addr(real));
        let from_vip = tcp_segment(LB_MAC, CLIENT_MAC, vip, client6, &[0; 64]);
        let from_real = tcp_segment(LB_MAC, CLIENT_MAC, real, client6, &[0; 64]);
        let ip6 = |a: SocketAddr| match a.ip() {
            IpAddr::V6(v6) => v6,
            IpAddr::V4(_) => unreachable!("IPv6 rows"),
        };
        let expected = icmpv6_packet_too_big(
            CLIENT_MAC,
            LB_MAC,
            router6,
            ip6(real),
            &from_real[14..],
            1280,
        );
        rows.push(Fixture::new(
            format!("ICMPv6 packet-too-big quoting a {what} flow reaches its real"),
            icmpv6_packet_too_big(CLIENT_MAC, LB_MAC, router6, ip6(vip), &from_vip[14..], 1280),
            XdpAction::Redirect,
            Output::Bytes(with_macs(&expected, mac, OUT_MAC)),
            &[Rx, Ipv6, Other, IcmpToReal, Redirect],
        ));
    }
    let unknown = tcp_segment(LB_MAC, CLIENT_MAC, dr_vip, addr("10.0.1.99:1234"), &[0; 16]);
    rows.push(Fixture::pass(
        "ICMP frag-needed quoting a flow nobody has is passed",
        icmpv4_frag_needed(
            CLIENT_MAC,
            LB_MAC,
            router,
            "10.0.0.100".parse().expect("v4"),
            &unknown[14..],
            1400,
        ),
        &[Rx, Ipv4, Other, Pass],
    ));

    // VRRP backup: the VIP is not ours; its service's packets are dropped, never handed to
    // a stack that would reset them.
    rows.push(
        Fixture::new(
            "inactive VIP's service packets are dropped",
            established.clone(),
            XdpAction::Drop,
            Output::Unchanged,
            &[Rx, Ipv4, Tcp, VipInactive, Drop],
        )
        .after(move |h| set_active(h, dr_vip, false)),
    );
    rows.push(
        Fixture::new(
            "VIP active again: the established flow resumes",
            established.clone(),
            XdpAction::Redirect,
            Output::Bytes(with_macs(&established, DR_MAC, OUT_MAC)),
            &[Rx, Ipv4, Tcp, LruHit, Redirect],
        )
        .after(move |h| set_active(h, dr_vip, true)),
    );

    // Trouble: no usable real, a packet too big to tunnel, traffic for nobody, bad headers.
    rows.push(Fixture::new(
        "service whose only real has no next hop drops",
        client_packet(false, client, addr("10.0.0.104:80"), PAYLOAD),
        XdpAction::Drop,
        Output::Unchanged,
        &[Rx, Ipv4, Tcp, LruMiss, NoReal, Drop],
    ));
    rows.push(Fixture::new(
        "TUN: 1481-byte packet does not fit the 1500-byte tunnel MTU",
        client_packet(
            true,
            addr("10.0.1.2:40001"),
            addr("10.0.0.101:53"),
            &[7; 1453],
        ),
        XdpAction::Drop,
        Output::Unchanged,
        &[Rx, Ipv4, Udp, LruMiss, EncapTooBig, Drop],
    ));
    rows.push(Fixture::pass(
        "TCP to an address that is no VIP is passed",
        client_packet(false, client, addr("10.0.0.200:80"), PAYLOAD),
        &[Rx, Ipv4, Tcp, Pass],
    ));
    rows.push(Fixture::pass(
        "TCP to a VIP port with no service is passed",
        client_packet(false, client, addr("10.0.0.100:443"), PAYLOAD),
        &[Rx, Ipv4, Tcp, Pass],
    ));
    rows.push(Fixture::pass(
        "truncated TCP header for a VIP is passed as malformed",
        established[..14 + 20 + 10].to_vec(),
        &[Rx, Ipv4, Malformed, Pass],
    ));
    fixture::run_all(&mut harness, &rows);

    // Per-service and per-real statistics saw the DR IPv4 TCP flow: two packets in the rows
    // above, then two more after the VIP came back, one new flow.
    let service = harness.traffic(0, false).expect("service stats");
    assert_eq!((service.packets, service.new_flows), (3, 1), "{service:?}");
    assert_eq!(service.bytes, 3 * established.len() as u64);
    let entry = harness
        .conn(&flow(client, dr_vip, 6))
        .expect("conn table")
        .expect("flow remembered");
    assert_eq!(entry.real_id, 0);
}

const DRAIN: &str = r#"
[global]
ring_size = 251

[[l4]]
name = "web"
vip = "10.0.0.103:80"
reals = [{ addr = "10.0.2.21", weight = WA }, { addr = "10.0.2.22", weight = WB }]
"#;

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x21];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x22];

/// Weight 0 drains: flows already in the table keep their real, new flows avoid it.
#[test]
fn weight_zero_drains_without_breaking_established_flows() {
    require_root();
    let hops = drain_hops();
    let both = DRAIN.replace("WA", "1").replace("WB", "1");
    let mut harness = XdpHarness::with_config(&both, &hops).expect("load");
    let model = L4Model::from_config(&config(&both).expect("config"));
    let vip = addr("10.0.0.103:80");
    // Two clients Maglev sends to real B (id 1).
    let to_b: Vec<SocketAddr> = (40000..41000u16)
        .map(|port| SocketAddr::new("10.0.1.2".parse().expect("v4"), port))
        .filter(|c| {
            model
                .simulate(*c, vip, lb::config::L4Protocol::Tcp)
                .expect("real")
                .1
                .id
                == 1
        })
        .take(2)
        .collect();
    let (established, newcomer) = (to_b[0], to_b[1]);
    let send = |h: &XdpHarness, client: SocketAddr| {
        let frame = client_packet(false, client, vip, PAYLOAD);
        let out = h.run(&frame).expect("run").expect("accepted");
        assert_eq!(out.action, XdpAction::Redirect);
        <[u8; 6]>::try_from(&out.output[..6]).expect("mac")
    };
    assert_eq!(
        send(&harness, established),
        MAC_B,
        "Maglev's choice, as simulated"
    );

    let drained = DRAIN.replace("WA", "1").replace("WB", "0");
    let drained_model = L4Model::from_config(&config(&drained).expect("config"));
    let report = harness
        .dataplane()
        .apply(&drained_model, &hops, &|_, _| true)
        .expect("apply");
    assert!(
        report.ring_slots > 0 && report.ring_slots < 251,
        "{report:?}"
    );
    let before = harness.counters().expect("counters");
    assert_eq!(
        send(&harness, established),
        MAC_B,
        "established flow stays on the drained real"
    );
    assert_eq!(
        send(&harness, newcomer),
        MAC_A,
        "new flow avoids the drained real"
    );
    let after = harness.counters().expect("counters");
    let moved = |c: Counter| after[c as usize] - before[c as usize];
    assert_eq!((moved(LruHit), moved(LruMiss)), (1, 1));
}

/// Next hops of the two reals the drain and id-reuse tests use.
fn drain_hops() -> HashMap<IpAddr, Nexthop> {
    [("10.0.2.21", MAC_A), ("10.0.2.22", MAC_B)]
        .into_iter()
        .map(|(a, mac)| {
            let hop = Nexthop {
                ifindex: OTHER_IFINDEX,
                smac: OUT_MAC,
                dmac: mac,
            };
            (a.parse().expect("address"), hop)
        })
        .collect()
}

/// Re-applying a configuration writes nothing; removing one of three reals keeps the others'
/// ids and rewrites only Maglev's share of the table (what a restarted agent does with the
/// maps it adopts).
#[test]
fn sync_writes_only_the_diff_and_keeps_ids() {
    require_root();
    let three = "[global]\nring_size = 65537\n\n[[l4]]\nname = \"web\"\nvip = \"10.0.0.103:80\"\n\
                 reals = [{ addr = \"10.0.2.21\" }, { addr = \"10.0.2.22\" }, { addr = \"10.0.2.23\" }]\n";
    let hops: HashMap<IpAddr, Nexthop> = ["10.0.2.21", "10.0.2.22", "10.0.2.23"]
        .into_iter()
        .map(|a| {
            let hop = Nexthop {
                ifindex: OTHER_IFINDEX,
                smac: OUT_MAC,
                dmac: DR_MAC,
            };
            (a.parse().expect("address"), hop)
        })
        .collect();
    let mut harness = XdpHarness::with_config(three, &hops).expect("load");
    let again = L4Model::from_config_keeping(
        &config(three).expect("config"),
        &harness.dataplane().previous_ids().expect("ids"),
    );
    let report = harness
        .dataplane()
        .apply(&again, &hops, &|_, _| true)
        .expect("apply");
    assert_eq!(
        report,
        lb::dataplane::SyncReport::default(),
        "the same config wrote something"
    );

    let two = three.replace(", { addr = \"10.0.2.22\" }", "");
    let previous = harness.dataplane().previous_ids().expect("ids");
    let model = L4Model::from_config_keeping(&config(&two).expect("config"), &previous);
    let id_of = |m: &L4Model, a: &str| {
        m.reals
            .iter()
            .find(|r| r.addr.to_string() == a)
            .map(|r| r.id)
    };
    assert_eq!(
        id_of(&model, "10.0.2.23"),
        Some(2),
        "a remaining real changed id"
    );
    let report = harness
        .dataplane()
        .apply(&model, &hops, &|_, _| true)
        .expect("apply");
    let share = report.ring_slots as f64 / 65537.0;
    assert!(
        share > 0.3 && share <= 1.0 / 3.0 + 0.01,
        "{share:.4} of the table rewritten"
    );
}

/// Past `max_new_flows_per_sec` new flows on a CPU, flows are still forwarded but no longer
/// remembered, so a SYN flood cannot push established flows out of the connection table.
#[test]
fn new_flow_flood_stops_filling_the_connection_table() {
    require_root();
    let config_text = "[global]\nring_size = 251\nmax_new_flows_per_sec = 3\n\n[[l4]]\nname = \"web\"\n\
                       vip = \"10.0.0.100:80\"\nreals = [{ addr = \"10.0.2.11\" }]\n";
    let hops: HashMap<IpAddr, Nexthop> = [(
        "10.0.2.11".parse().expect("address"),
        Nexthop {
            ifindex: OTHER_IFINDEX,
            smac: OUT_MAC,
            dmac: DR_MAC,
        },
    )]
    .into_iter()
    .collect();
    let harness = XdpHarness::with_config(config_text, &hops).expect("load");
    // The window is per CPU and BPF_PROG_TEST_RUN runs on the caller's: stay on one.
    let mut one_cpu = nix::sched::CpuSet::new();
    one_cpu.set(0).expect("cpu 0");
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one_cpu).expect("pin to cpu 0");
    let vip = addr("10.0.0.100:80");
    let before = harness.counters().expect("counters");
    let clients: Vec<SocketAddr> = (0..5u16)
        .map(|i| addr(&format!("10.0.1.2:{}", 50000 + i)))
        .collect();
    for client in &clients {
        let out = harness
            .run(&client_packet(false, *client, vip, PAYLOAD))
            .expect("run")
            .expect("accepted");
        assert_eq!(
            out.action,
            XdpAction::Redirect,
            "flows past the limit are still forwarded"
        );
    }
    let after = harness.counters().expect("counters");
    let moved = |c: Counter| after[c as usize] - before[c as usize];
    // The one-second window holds the first three; all five runs happen well within it.
    assert_eq!((moved(LruMiss), moved(FloodSkip)), (5, 2));
    let remembered = clients
        .iter()
        .filter(|c| {
            harness
                .conn(&flow(**c, vip, 6))
                .expect("conn table")
                .is_some()
        })
        .count();
    assert_eq!(remembered, 3);
}

/// An established flow names its service by id. When a config change gives that id to
/// another service, the flow must not follow the id: it stays with its own service (now under
/// another id), and each service's packets go to that service's reals.
#[test]
fn a_reused_service_id_does_not_capture_old_flows() {
    require_root();
    let service = |vip: &str, real: &str| {
        format!("[[l4]]\nname = \"{vip}\"\nvip = \"{vip}\"\nreals = [{{ addr = \"{real}\" }}]\n\n")
    };
    let hops = drain_hops();
    let old_service = service("10.0.0.103:80", "10.0.2.21");
    let old = format!("[global]\nring_size = 251\n\n{old_service}");
    let mut harness = XdpHarness::with_config(&old, &hops).expect("load");
    let client = addr("10.0.1.2:40000");
    let old_vip = addr("10.0.0.103:80");
    let send = |h: &XdpHarness, vip: SocketAddr| {
        let out = h
            .run(&client_packet(false, client, vip, PAYLOAD))
            .expect("run")
            .expect("accepted");
        assert_eq!(out.action, XdpAction::Redirect);
        <[u8; 6]>::try_from(&out.output[..6]).expect("mac")
    };
    assert_eq!(send(&harness, old_vip), MAC_A);
    let remembered = harness.conn(&flow(client, old_vip, 6)).expect("read");
    assert_eq!(remembered.map(|f| f.service_id), Some(0));

    // A fresh model (as after a config change) puts a new service first: it gets id 0.
    let new = format!(
        "[global]\nring_size = 251\n\n{}{old_service}",
        service("10.0.0.104:80", "10.0.2.22")
    );
    let model = L4Model::from_config(&config(&new).expect("config"));
    assert_eq!(model.services[0].value.id, 0);
    harness
        .dataplane()
        .apply(&model, &hops, &|_, _| true)
        .expect("apply");
    assert_eq!(
        send(&harness, old_vip),
        MAC_A,
        "the old flow followed the id"
    );
    assert_eq!(send(&harness, addr("10.0.0.104:80")), MAC_B);
}
