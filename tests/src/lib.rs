//! Test support for lb's integration tests.
//!
//! Layout: `packets` builds frames (with etherparse) and edits them for edge cases;
//! `xdp` runs the real XDP object through BPF_PROG_TEST_RUN and reads its counters; `fixture`
//! runs tables of (frame, expected verdict, output, counters) rows through it;
//! `netns` builds a lab of network namespaces, veths and bridges and tears it down on drop;
//! `agent` starts the real `lb` binary inside a lab host; `traffic` makes real TCP/UDP traffic; `app` is a recording HTTP application server; `conformance` is the request-path table (raw requests, expected statuses, exact forwarded bytes) and `h2raw` the raw HTTP/2 client it needs; `ha` the two-node HA lab and its streaming flows; `daemons` starts Debian daemons (nginx) as peers;
//! `topology` holds lab layouts shared by tests, `lab` the multi-node lab of `cargo xtask lab` and the demo (`src/bin/lb-lab.rs`). The tests are in `tests/`.

pub mod agent;
pub mod app;
pub mod conformance;
pub mod cpu;
pub mod daemons;
pub mod fixture;
pub mod h2raw;
pub mod ha;
pub mod lab;
pub mod netns;
pub mod packets;
pub mod topology;
pub mod traffic;
pub mod xdp;

/// Fails the calling test with a clear message unless it runs as root: the XDP and netns tests
/// need CAP_BPF and CAP_NET_ADMIN, and a skipped test must never count as passed.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (CAP_BPF, CAP_NET_ADMIN): run `sudo cargo xtask test`"
    );
}
