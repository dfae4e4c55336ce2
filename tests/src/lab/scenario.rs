//! The HA scenario `cargo xtask lab test` runs against a lab that is up (and the demo narrates):
//! keep-alive flows through the VIP's L4 service, the master's lb killed under them, the
//! backup taking over, the master returning and preempting, and every flow carrying on with
//! its real; the L7 frontend on the same VIP answering through each master.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    namespaces::NetnsLab,
    probe::{self, Flow},
    topology::Role,
};

/// Keep-alive flows through the VIP.
pub const FLOWS: usize = 30;
/// A request on each flow this often.
const INTERVAL: Duration = Duration::from_millis(50);

/// What the scenario saw.
#[derive(Debug)]
pub struct Report {
    /// The master whose lb was killed.
    pub killed: String,
    /// The node that took over.
    pub took_over: String,
    /// From the kill until the other node held the VIP.
    pub failover: Duration,
    /// From the killed node's restart until it held the VIP again.
    pub preempted: Duration,
    /// Flows per real (L4, by Maglev and weight).
    pub spread: BTreeMap<String, usize>,
    /// The flows.
    pub flows: Vec<Flow>,
}

impl Report {
    /// The flows that broke, described.
    pub fn broken(&self) -> Vec<String> {
        crate::ha::broken(&self.flows)
    }
}

impl NetnsLab {
    /// The VIP's L4 service (port 80) and L7 frontend (port 8080).
    pub fn site(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.topology.vip.into(), port)
    }

    /// One GET from the client to the VIP on `port`: status and body.
    pub fn get_from_client(&self, port: u16) -> anyhow::Result<(u16, String)> {
        let addr = self.site(port);
        self.lab
            .host("client")
            .spawn(move || async move { probe::get(addr, Duration::from_secs(1)).await })?
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?
    }

    /// Waits up to `limit` until a GET to the VIP on `port` answers 200.
    pub fn until_site_answers(&self, port: u16, limit: Duration) -> anyhow::Result<String> {
        let started = Instant::now();
        loop {
            match self.get_from_client(port) {
                Ok((200, body)) => return Ok(body),
                other if started.elapsed() > limit => {
                    bail!("the VIP on port {port} did not answer within {limit:?}: {other:?}")
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// SIGKILLs `node`'s lb and waits until it is gone.
    pub fn kill_lb(&self, node: &str) -> anyhow::Result<()> {
        let pid = self
            .lb_pid(node)
            .with_context(|| format!("lb does not run on {node}"))?;
        // Our own child is reaped by the lab; one started by `lab up` belongs to init.
        if self
            .lab
            .stop(pid, nix::sys::signal::Signal::SIGKILL)
            .is_err()
        {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )?;
        }
        for _ in 0..100 {
            if self.lb_pid(node).is_none() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("lb on {node} did not die")
    }

    /// The lb node holding the VIP whose lb runs (a killed lb leaves its address behind).
    pub fn live_master(&self) -> Option<String> {
        self.topology
            .nodes(Role::Lb)
            .filter(|n| self.lb_pid(&n.name).is_some())
            .find(|n| self.holds_vip(&n.name))
            .map(|n| n.name.clone())
    }

    /// Waits up to `limit` until the preferred master holds the VIP (after `up`, a new
    /// node holds preemption until it has its peers' connection tables).
    pub fn until_settled(&self, limit: Duration) -> anyhow::Result<String> {
        let preferred = self.topology.preferred_master()?;
        self.until_live_master(|m| m == preferred, limit)
    }

    fn until_live_master(
        &self,
        wanted: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> anyhow::Result<String> {
        super::wait_for(
            "the wanted master",
            limit,
            Duration::from_millis(20),
            || self.live_master().filter(|m| wanted(m)),
        )
        .with_context(|| format!("the master now: {:?}", self.live_master()))
    }

    /// Runs the scenario; `say` narrates each step.
    pub fn ha_scenario(&self, say: &mut dyn FnMut(&str)) -> anyhow::Result<Report> {
        let master = self.until_settled(Duration::from_secs(10))?;
        say(&format!("{master} is the VRRP master"));
        self.until_site_answers(80, Duration::from_secs(10))?;
        self.until_site_answers(8080, Duration::from_secs(10))?;
        let stop = Arc::new(AtomicBool::new(false));
        let addr = self.site(80);
        let flows = {
            let stop = stop.clone();
            self.lab.host("client").spawn(move || async move {
                let tasks: Vec<_> = (0..FLOWS)
                    .map(|_| tokio::spawn(probe::flow(addr, INTERVAL, stop.clone())))
                    .collect();
                let mut flows = Vec::new();
                for task in tasks {
                    flows.push(task.await.unwrap_or_else(|e| Flow {
                        real: String::new(),
                        exchanges: 0,
                        failure: Some(format!("task: {e}")),
                    }));
                }
                flows
            })?
        };
        say(&format!(
            "{FLOWS} keep-alive connections to {addr}, a request on each every {INTERVAL:?}"
        ));
        std::thread::sleep(Duration::from_secs(1));

        say(&format!("killing lb on {master} (SIGKILL)"));
        let killed_at = Instant::now();
        let killed = master.clone();
        let outcome = (|| -> anyhow::Result<(String, Duration, Duration)> {
            self.kill_lb(&killed)?;
            let took_over = self.until_live_master(|m| m != killed, Duration::from_secs(5))?;
            let failover = killed_at.elapsed();
            say(&format!("{took_over} holds the VIP after {failover:?}"));
            let body = self.until_site_answers(8080, Duration::from_secs(3))?;
            say(&format!(
                "the L7 frontend answers through {took_over} ({body})"
            ));
            std::thread::sleep(Duration::from_secs(1));
            say(&format!("lb on {killed} returns"));
            let restarted = Instant::now();
            self.start_lb(&killed)?;
            self.until_live_master(|m| m == killed, Duration::from_secs(10))?;
            let preempted = restarted.elapsed();
            say(&format!(
                "{killed} preempted {took_over} {preempted:?} after its restart"
            ));
            std::thread::sleep(Duration::from_secs(1));
            Ok((took_over, failover, preempted))
        })();
        stop.store(true, Ordering::Relaxed);
        let flows = flows
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
        let (took_over, failover, preempted) = outcome?;
        let mut spread = BTreeMap::new();
        for flow in &flows {
            *spread.entry(flow.real.clone()).or_insert(0) += 1;
        }
        Ok(Report {
            killed,
            took_over,
            failover,
            preempted,
            spread,
            flows,
        })
    }
}
