//! Parser fixtures for `lb_ingress` with no service configured: each row is a frame, the
//! verdict and output expected, and the counters it must move (every other must stay still).
//!
//! Runs the real object through BPF_PROG_TEST_RUN: needs root.

use lb_common::counters::Counter::{self, *};
use lb_tests::{
    fixture::{self, Fixture},
    packets, require_root,
    xdp::XdpHarness,
};

fn row(description: &'static str, input: Vec<u8>, counters: &[Counter]) -> Fixture {
    Fixture::pass(description, input, counters)
}

/// A frame shorter than an Ethernet header: this kernel does not hand it to XDP at all
/// (BPF_PROG_TEST_RUN answers EINVAL, veth and packet sockets refuse to carry it), so the row
/// checks that refusal and that no counter moved. The program's own bounds check for it is
/// the first `ptr_at` in `parse_frame`, which the verifier makes mandatory.
fn refused(description: &'static str, input: Vec<u8>) -> Fixture {
    Fixture::refused(description, input)
}

fn fixtures() -> Vec<Fixture> {
    use packets::*;
    let v4_tcp = ipv4_tcp(40000, 80);
    let v4_udp = ipv4_udp(40000, 53);
    let v6_tcp = ipv6_tcp(40000, 80);
    let v6_udp = ipv6_udp(40000, 53);
    let vlan = vlan_ipv4_tcp(10, 40000, 80);
    let v6_hdr_end = L3 + IPV6_HEADER_LEN;
    vec![
        // Well-formed traffic.
        row("IPv4 TCP", v4_tcp.clone(), &[Rx, Ipv4, Tcp, Pass]),
        row("IPv4 UDP", v4_udp.clone(), &[Rx, Ipv4, Udp, Pass]),
        row("IPv6 TCP", v6_tcp.clone(), &[Rx, Ipv6, Tcp, Pass]),
        row("IPv6 UDP", v6_udp.clone(), &[Rx, Ipv6, Udp, Pass]),
        row(
            "802.1Q tagged IPv4 TCP",
            vlan.clone(),
            &[Rx, Vlan, Ipv4, Tcp, Pass],
        ),
        row(
            "802.1ad tagged IPv6 UDP",
            qinq_outer_ipv6_udp(30),
            &[Rx, Vlan, Ipv6, Udp, Pass],
        ),
        row(
            "two VLAN tags: only one is walked",
            double_vlan_ipv4_tcp(),
            &[Rx, Vlan, NonIp, Pass],
        ),
        row(
            "IPv4 with 12 bytes of options, TCP",
            with_ipv4_options(&v4_tcp, 3),
            &[Rx, Ipv4, Tcp, Pass],
        ),
        row(
            "IPv4 with 40 bytes of options (IHL 15), UDP",
            with_ipv4_options(&v4_udp, 10),
            &[Rx, Ipv4, Udp, Pass],
        ),
        row(
            "IPv6 hop-by-hop + destination options, TCP",
            with_ipv6_ext_headers(&v6_tcp, &[ext::HOP_BY_HOP, ext::DEST_OPTS]),
            &[Rx, Ipv6, Tcp, Pass],
        ),
        row(
            "IPv6 routing + AH, UDP",
            with_ipv6_ext_headers(&v6_udp, &[ext::ROUTING, ext::AH]),
            &[Rx, Ipv6, Udp, Pass],
        ),
        row(
            "IPv6 four extension headers (the bound), TCP",
            with_ipv6_ext_headers(
                &v6_tcp,
                &[ext::HOP_BY_HOP, ext::ROUTING, ext::AH, ext::DEST_OPTS],
            ),
            &[Rx, Ipv6, Tcp, Pass],
        ),
        row(
            "IPv6 five extension headers: past the bound",
            with_ipv6_ext_headers(
                &v6_tcp,
                &[
                    ext::HOP_BY_HOP,
                    ext::ROUTING,
                    ext::AH,
                    ext::DEST_OPTS,
                    ext::DEST_OPTS,
                ],
            ),
            &[Rx, Ipv6, Ipv6ExtLimit, Pass],
        ),
        // Not balanced: fragments, other protocols, non-IP.
        row(
            "IPv4 first fragment (MF set)",
            as_ipv4_fragment(&v4_tcp, true, 0),
            &[Rx, Ipv4, Fragment, Pass],
        ),
        row(
            "IPv4 last fragment (offset 185)",
            as_ipv4_fragment(&v4_udp, false, 185),
            &[Rx, Ipv4, Fragment, Pass],
        ),
        row(
            "IPv6 fragment header after hop-by-hop",
            with_ipv6_ext_headers(&v6_udp, &[ext::HOP_BY_HOP, ext::FRAGMENT]),
            &[Rx, Ipv6, Fragment, Pass],
        ),
        row("IPv4 ICMP echo", ipv4_icmp_echo(), &[Rx, Ipv4, Other, Pass]),
        row("ICMPv6 echo", ipv6_icmp_echo(), &[Rx, Ipv6, Other, Pass]),
        row("ARP request", arp_request(), &[Rx, NonIp, Pass]),
        // Malformed: cut short at every header, and impossible header fields.
        refused("zero-length frame", Vec::new()),
        refused("Ethernet header cut at 13 bytes", truncated(&v4_tcp, 13)),
        row(
            "Ethernet header only, IPv4 EtherType",
            truncated(&v4_tcp, L3),
            &[Rx, Malformed, Pass],
        ),
        row(
            "VLAN tag cut short",
            truncated(&vlan, 16),
            &[Rx, Malformed, Pass],
        ),
        row(
            "IPv4 header cut at 19 bytes",
            truncated(&v4_tcp, L3 + 19),
            &[Rx, Malformed, Pass],
        ),
        row(
            "IPv4 options cut short (IHL 8, 4 option bytes present)",
            truncated(&with_ipv4_options(&v4_tcp, 3), L3 + 24),
            &[Rx, Malformed, Pass],
        ),
        row(
            "IPv4 IHL 4 (below the minimum 5)",
            with_ipv4_ihl(&v4_tcp, 4),
            &[Rx, Malformed, Pass],
        ),
        row(
            "IPv4 IHL 15 with no options present",
            with_ipv4_ihl(&truncated(&v4_tcp, L3 + 40), 15),
            &[Rx, Malformed, Pass],
        ),
        row(
            "IPv4 EtherType carrying version 6",
            with_ip_version(&v4_tcp, 6),
            &[Rx, Malformed, Pass],
        ),
        row(
            "IPv4 total length shorter than its header",
            with_ipv4_total_len(&v4_tcp, 16),
            &[Rx, Malformed, Pass],
        ),
        row(
            "TCP header cut at 19 bytes",
            truncated(&v4_tcp, L3 + 20 + 19),
            &[Rx, Ipv4, Malformed, Pass],
        ),
        row(
            "TCP data offset 4 (below the minimum 5)",
            with_tcp_data_offset(&v4_tcp, 4),
            &[Rx, Ipv4, Malformed, Pass],
        ),
        row(
            "TCP data offset 15 with the options cut off",
            with_tcp_data_offset(&truncated(&v4_tcp, L3 + 20 + 20), 15),
            &[Rx, Ipv4, Malformed, Pass],
        ),
        row(
            "UDP header cut at 7 bytes",
            truncated(&v4_udp, L3 + 20 + 7),
            &[Rx, Ipv4, Malformed, Pass],
        ),
        row(
            "IPv6 header cut at 39 bytes",
            truncated(&v6_tcp, L3 + 39),
            &[Rx, Malformed, Pass],
        ),
        row(
            "IPv6 extension header cut short",
            truncated(
                &with_ipv6_ext_headers(&v6_tcp, &[ext::HOP_BY_HOP]),
                v6_hdr_end + 1,
            ),
            &[Rx, Ipv6, Malformed, Pass],
        ),
        row(
            "IPv6 TCP header cut short",
            truncated(&v6_tcp, v6_hdr_end + 10),
            &[Rx, Ipv6, Malformed, Pass],
        ),
        row(
            "IPv6 EtherType carrying version 4",
            with_ip_version(&v6_udp, 4),
            &[Rx, Malformed, Pass],
        ),
    ]
}

#[test]
fn lb_ingress_fixtures() {
    require_root();
    let mut harness = XdpHarness::load().expect("load lb_ingress");
    let rows = fixtures();
    assert!(rows.len() >= 15);
    fixture::run_all(&mut harness, &rows);
}
