//! The netns lab harness itself: it builds what was declared and removes it all on drop,
//! also when the test panics. Needs root.

use lb_tests::{
    netns::{LabSpec, namespace_exists},
    require_root,
};

#[test]
fn bridge_lab_connects_hosts_and_is_removed_on_panic() {
    require_root();
    let mut names = Vec::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = LabSpec::new("harness")
            .host("a")
            .host("b")
            .host("switch")
            .bridge("switch", "br0")
            .veth(("a", "eth0"), ("switch", "pa"))
            .veth(("b", "eth0"), ("switch", "pb"))
            .bridge_port("switch", "br0", "pa")
            .bridge_port("switch", "br0", "pb")
            .mac(("a", "eth0"), [0x02, 0, 0, 0, 0xaa, 1])
            .addr(("a", "eth0"), "10.9.0.1/24")
            .addr(("b", "eth0"), "10.9.0.2/24")
            .build()
            .expect("build the lab");
        for host in ["a", "b", "switch"] {
            names.push(lab.host(host).netns_name().to_string());
        }
        assert!(names.iter().all(|n| namespace_exists(n)));
        // Real traffic across the bridge: a TCP connect from a to b.
        let server = lab
            .host("b")
            .spawn(|| async {
                let listener = tokio::net::TcpListener::bind("10.9.0.2:9000").await?;
                let (_stream, peer) = listener.accept().await?;
                anyhow::Ok(peer)
            })
            .expect("server");
        std::thread::sleep(std::time::Duration::from_millis(100));
        lab.host("a")
            .spawn(|| async {
                tokio::net::TcpStream::connect("10.9.0.2:9000")
                    .await
                    .map(drop)
            })
            .expect("client")
            .join()
            .expect("client thread")
            .expect("connect across the bridge");
        let peer = server.join().expect("server thread").expect("accept");
        assert_eq!(peer.ip().to_string(), "10.9.0.1");
        // The declared MAC is in place: the command runs inside host a.
        let output = lab
            .host("a")
            .command("ip")
            .expect("command")
            .args(["-br", "link", "show", "eth0"])
            .output()
            .expect("ip link");
        assert!(String::from_utf8_lossy(&output.stdout).contains("02:00:00:00:aa:01"));
        panic!("deliberate panic with the lab alive");
    }));
    assert!(outcome.is_err(), "the closure should have panicked");
    assert_eq!(names.len(), 3);
    for name in &names {
        assert!(
            !namespace_exists(name),
            "namespace {name} survived the panic"
        );
    }
}
