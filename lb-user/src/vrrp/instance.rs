//! One running VRRP instance: the state machine wired to the socket, the timer, the
//! interface's addresses, gratuitous ARP, and the ownership snapshot the data plane reads.

use std::{
    collections::BTreeMap,
    future::Future,
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use super::{
    addr::{self, AddrError},
    fsm::{Action, Event, Fsm, Params, State},
    garp,
    net::VrrpSocket,
    packet::{Advert, PacketError},
    track,
};
use crate::config::VrrpSpec;

/// A little over Linux's default neighbour `locktime` (1 s): the earliest a host accepts a
/// new link-layer address for an IP address it learnt just before.
const NEIGHBOUR_LOCKTIME: std::time::Duration = std::time::Duration::from_millis(1100);

/// What each instance is doing, by name: the snapshot the data plane reads to decide which
/// VIPs it forwards, and sync-group members read to follow each other.
pub type Ownership = Arc<BTreeMap<String, InstanceStatus>>;

/// One instance's published status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceStatus {
    /// Protocol state.
    pub state: State,
    /// Its addresses are on the interface (forward for them).
    pub owns: bool,
    /// Its own tracking says FAULT (not a fault it follows from its sync group).
    pub tracking_fault: bool,
}

/// Why an instance could not run.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Netlink failed.
    #[error(transparent)]
    Addr(#[from] AddrError),
    /// The socket failed.
    #[error("VRRP socket: {0}")]
    Io(#[from] std::io::Error),
    /// The interface has no IPv4 address to send from.
    #[error("interface `{0}` has no IPv4 address of its own to send advertisements from")]
    NoSource(String),
    /// The interface has no IPv6 link-local address.
    #[error("interface `{0}` has no IPv6 link-local address to send advertisements from")]
    NoLinkLocal(String),
}

/// How a new master tells the segment: gratuitous ARP (IPv4) or unsolicited NA (IPv6).
enum Announcer {
    Arp(garp::GarpSender),
    Na(garp::NaSender),
}

struct Runtime<'a> {
    spec: &'a VrrpSpec,
    handle: rtnetlink::Handle,
    socket: VrrpSocket,
    local: IpAddr,
    interface: addr::Interface,
    announcer: Announcer,
    ownership: &'a watch::Sender<Ownership>,
    /// What the data plane has applied of `ownership` (when a data plane listens).
    applied: Option<watch::Receiver<Ownership>>,
    timer: Option<Instant>,
    /// When the next bursts of gratuitous ARP / NA are due, earliest first.
    bursts: Vec<Instant>,
    dropped: BTreeMap<String, u64>,
    priority: u8,
}

impl Runtime<'_> {
    fn advert(&self, priority: u8) -> Advert {
        Advert {
            version: self.spec.version,
            vrid: self.spec.vrid,
            priority,
            interval_cs: self.spec.advert_cs,
            addrs: self.spec.vips.iter().map(|(a, _)| *a).collect(),
            password: self.spec.password,
        }
    }

    fn publish(&self, change: impl FnOnce(&mut InstanceStatus)) {
        let name = self.spec.name.clone();
        self.ownership.send_modify(|o| {
            let status = Arc::make_mut(o).entry(name).or_insert(InstanceStatus {
                state: State::Initialize,
                owns: false,
                tracking_fault: false,
            });
            change(status);
        });
    }

    fn announce(&self) {
        for (vip, _) in &self.spec.vips {
            let sent = match (vip, &self.announcer) {
                (IpAddr::V4(ip), Announcer::Arp(garp)) => garp.send(*ip),
                (IpAddr::V6(ip), Announcer::Na(na)) => na.send(*ip),
                _ => Ok(()),
            };
            if let Err(error) = sent {
                tracing::warn!(%error, instance = %self.spec.name, "announcing {vip} failed");
            }
        }
    }

    /// Waits (briefly) until the data plane forwards for our addresses, so the announcement
    /// that follows never sends clients to a node that would still drop their packets.
    async fn until_applied(&mut self) {
        let Some(applied) = &mut self.applied else {
            return;
        };
        let name = &self.spec.name;
        let forwarding = applied.wait_for(|o| o.get(name).is_some_and(|s| s.owns));
        if tokio::time::timeout(APPLY_PATIENCE, forwarding)
            .await
            .is_err()
        {
            tracing::warn!(instance = %name, "the data plane did not confirm forwarding in time; announcing anyway");
        }
    }

    async fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::SendAdvert(priority) => {
                    let advert = self.advert(priority);
                    for dst in self.socket.destinations().to_vec() {
                        let message = advert.encode(self.local, dst);
                        if let Err(error) = self.socket.send_to(&message, dst) {
                            tracing::warn!(%error, instance = %self.spec.name, "sending an advertisement failed");
                        }
                    }
                }
                Action::AddAddresses => {
                    for (vip, prefix) in &self.spec.vips {
                        if let Err(error) = addr::add(
                            &self.handle,
                            self.interface.index,
                            *vip,
                            *prefix,
                            self.spec.labels.get(vip).map(String::as_str),
                        )
                        .await
                        {
                            tracing::error!(%error, instance = %self.spec.name, %vip, "adding the address failed");
                        }
                    }
                    self.publish(|s| s.owns = true);
                    self.until_applied().await;
                }
                Action::RemoveAddresses => {
                    // Stop forwarding first, then let the addresses go.
                    self.publish(|s| s.owns = false);
                    for (vip, _) in &self.spec.vips {
                        if let Err(error) =
                            addr::remove(&self.handle, self.interface.index, *vip).await
                        {
                            tracing::error!(%error, instance = %self.spec.name, %vip, "removing the address failed");
                        }
                    }
                }
                Action::Announce => {
                    // A burst now; another just past Linux's neighbour lock time (`locktime`,
                    // 1 s: a host ignores a new MAC for an address within a second of the
                    // last update, so a takeover right after the old master's announcement
                    // would otherwise go unheard until its cache entry is probed, ~5 s later);
                    // and one after garp_master_delay for caches that missed both.
                    for _ in 0..self.spec.garp_repeat.max(1) {
                        self.announce();
                    }
                    let now = Instant::now();
                    self.bursts = std::iter::once(now + NEIGHBOUR_LOCKTIME)
                        .chain(self.spec.garp_delay.map(|d| now + d))
                        .collect();
                    self.bursts.sort();
                }
                Action::SetTimer(after) => self.timer = Some(Instant::now() + after),
                Action::StopTimer => self.timer = None,
                Action::Entered(state) => {
                    let word = match state {
                        State::Initialize => "INIT",
                        State::Backup => "BACKUP",
                        State::Master => "MASTER",
                        State::Fault => "FAULT",
                    };
                    tracing::info!("({}) Entering {word} STATE", self.spec.name);
                    self.publish(|s| s.state = state);
                    self.notify(state);
                }
            }
        }
    }

    /// Runs the notify programs for `state` (keepalived's `notify_*`; the generic one gets
    /// `INSTANCE <name> <MASTER|BACKUP|FAULT|STOP> <priority>`). They run detached: a slow
    /// script never holds up the protocol.
    fn notify(&self, state: State) {
        let notify = &self.spec.notify;
        let (specific, word) = match state {
            State::Master => (&notify.master, "MASTER"),
            State::Backup => (&notify.backup, "BACKUP"),
            State::Fault => (&notify.fault, "FAULT"),
            State::Initialize => (&notify.stop, "STOP"),
        };
        let priority = self.priority.to_string();
        let runs = specific
            .iter()
            .map(|p| (p.clone(), Vec::new()))
            .chain(notify.any.iter().map(|p| {
                let args = vec![
                    "INSTANCE".to_string(),
                    self.spec.name.clone(),
                    word.to_string(),
                    priority.clone(),
                ];
                (p.clone(), args)
            }));
        for (path, args) in runs {
            match tokio::process::Command::new(&path)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .spawn()
            {
                Ok(mut child) => {
                    tokio::spawn(async move {
                        let _ = child.wait().await;
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, script = %path.display(), "notify script failed to start")
                }
            }
        }
    }
}

/// Checks a received packet against the instance `spec` (RFC 5798 7.1, RFC 3768 7.1); `Err`
/// names why it was dropped.
pub fn accept(spec: &VrrpSpec, received: &super::net::Received) -> Result<Advert, PacketError> {
    if received.ttl != 255 {
        return Err(PacketError::WrongTtl(received.ttl));
    }
    let advert = Advert::decode(&received.payload, received.src, received.dst)?;
    if advert.vrid != spec.vrid {
        return Err(PacketError::WrongVrid(advert.vrid));
    }
    if advert.version != spec.version {
        return Err(PacketError::BadVersion(received.payload[0] >> 4));
    }
    if advert.password != spec.password {
        return Err(PacketError::AuthMismatch);
    }
    Ok(advert)
}

/// How an instance starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// As a backup, electing (or master at once as the address owner, priority 255).
    Elect,
    /// As master, taking over from this node's previous agent that was master (binary
    /// upgrade): the addresses are already here.
    Resume,
}

/// How an instance stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Leave cleanly: a master sends priority 0 and removes its addresses.
    Leave,
    /// A new agent on this node takes over (binary upgrade): addresses stay, no priority 0.
    HandOver,
}

/// How long a new master waits for the data plane to forward for its addresses before it
/// announces them.
const APPLY_PATIENCE: Duration = Duration::from_millis(250);

/// Runs the instance until `shutdown` resolves, then stops as it says. `applied` is what the
/// data plane has applied of `ownership`, when one listens; `copied`, when connection-table
/// sync runs, whether this node's copy of its peers' tables is complete (preemption waits).
pub async fn run(
    spec: VrrpSpec,
    start: Start,
    ownership: watch::Sender<Ownership>,
    applied: Option<watch::Receiver<Ownership>>,
    mut copied: Option<watch::Receiver<bool>>,
    board: Option<watch::Receiver<crate::health::HealthBoard>>,
    shutdown: impl Future<Output = Stop>,
) -> Result<(), InstanceError> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    let vips: Vec<IpAddr> = spec.vips.iter().map(|(a, _)| *a).collect();
    let interface = addr::interface(&handle, &spec.interface, &vips).await?;
    let ipv6 = spec.vips.first().is_some_and(|(a, _)| a.is_ipv6());
    let peers: Vec<Ipv4Addr> = spec
        .unicast_peers
        .iter()
        .filter_map(|p| match p {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
        .collect();
    let (socket, local, announcer) = if ipv6 {
        let local = interface
            .link_local_v6
            .ok_or_else(|| InstanceError::NoLinkLocal(spec.interface.clone()))?;
        let socket = VrrpSocket::open_v6(&spec.interface, interface.index)?;
        let na = garp::NaSender::open(&spec.interface, interface.index, interface.mac)?;
        (socket, IpAddr::V6(local), Announcer::Na(na))
    } else {
        let local = interface
            .primary_v4
            .ok_or_else(|| InstanceError::NoSource(spec.interface.clone()))?;
        let socket = VrrpSocket::open(&spec.interface, local, spec.mcast_group, &peers)?;
        let garp = garp::GarpSender::open(interface.index, interface.mac)?;
        (socket, IpAddr::V4(local), Announcer::Arp(garp))
    };
    // Addresses a previous run left behind are not ours until we win the election (unless
    // that run hands mastership over to this one).
    if start == Start::Elect {
        for vip in &vips {
            addr::remove(&handle, interface.index, *vip).await?;
        }
    }
    let mut fsm = Fsm::new(Params {
        version: spec.version,
        priority: spec.priority,
        advert_cs: spec.advert_cs,
        preempt: spec.preempt,
        preempt_delay: spec.preempt_delay,
        local_addr: local,
    });
    let mut runtime = Runtime {
        spec: &spec,
        handle,
        socket,
        local,
        interface,
        announcer,
        ownership: &ownership,
        applied,
        timer: None,
        bursts: Vec::new(),
        dropped: BTreeMap::new(),
        priority: spec.priority,
    };
    let (mut tracking, _tracking_tasks) = track::spawn(&spec, board);
    let mut own_fault = false;
    let mut in_fault = false;
    let mut group = ownership.subscribe();
    let mut group_seen = group.borrow_and_update().clone();
    let started = Instant::now();
    let first = match start {
        Start::Elect => Event::Startup,
        Start::Resume => Event::Resume,
    };
    if copied.as_mut().is_some_and(|c| !*c.borrow_and_update()) {
        fsm.handle(Event::HoldPreempt(true), Duration::ZERO);
    }
    let actions = fsm.handle(first, Duration::ZERO);
    runtime.perform(actions).await;
    let mut refresh = spec.garp_refresh.map(tokio::time::interval);
    tokio::pin!(shutdown);
    let stop = loop {
        let timer = runtime.timer;
        let next_burst = runtime.bursts.first().copied();
        tokio::select! {
            stop = &mut shutdown => break stop,
            changed = async { copied.as_mut().expect("guarded").changed().await }, if copied.is_some() => {
                match changed {
                    Ok(()) if *copied.as_mut().expect("guarded").borrow_and_update() => {
                        fsm.handle(Event::HoldPreempt(false), started.elapsed());
                        copied = None;
                    }
                    Ok(()) => {}
                    Err(_) => copied = None,
                }
            }
            () = async { tokio::time::sleep_until(next_burst.unwrap_or_else(Instant::now)).await }, if next_burst.is_some() => {
                runtime.bursts.remove(0);
                if fsm.state() == State::Master {
                    for _ in 0..spec.garp_repeat.max(1) {
                        runtime.announce();
                    }
                }
            }
            changed = group.changed(), if !spec.sync_with.is_empty() => {
                if changed.is_err() {
                    continue;
                }
                let now = group.borrow_and_update().clone();
                let peers = |o: &Ownership| -> Vec<(String, InstanceStatus)> {
                    spec.sync_with.iter().filter_map(|n| o.get(n).map(|s| (n.clone(), *s))).collect()
                };
                let (before, after) = (peers(&group_seen), peers(&now));
                group_seen = now;
                // A fault anywhere in the group holds every member in FAULT.
                let group_fault = after.iter().any(|(_, s)| s.tracking_fault);
                let fault = own_fault || group_fault;
                if fault != in_fault {
                    in_fault = fault;
                    let event = if fault { Event::Fault } else { Event::FaultCleared };
                    let actions = fsm.handle(event, started.elapsed());
                    runtime.perform(actions).await;
                    continue;
                }
                for (name, status) in &after {
                    let was = before.iter().find(|(n, _)| n == name).map(|(_, s)| s.state);
                    if was == Some(status.state) {
                        continue;
                    }
                    let event = match (status.state, fsm.state()) {
                        (State::Master, State::Backup) => Some(Event::Takeover),
                        (State::Backup, State::Master) if was == Some(State::Master) => Some(Event::Resign),
                        _ => None,
                    };
                    if let Some(event) = event {
                        tracing::info!("({}) following sync group member {name} ({:?})", spec.name, status.state);
                        let actions = fsm.handle(event, started.elapsed());
                        runtime.perform(actions).await;
                    }
                }
            }
            changed = tracking.changed() => {
                if changed.is_err() {
                    continue;
                }
                let now = *tracking.borrow_and_update();
                // The address owner's 255 is never adjusted (RFC 5798 owner semantics).
                let priority = if spec.priority == 255 {
                    255
                } else {
                    (i32::from(spec.priority) + now.delta).clamp(1, 254) as u8
                };
                if priority != fsm.priority() {
                    tracing::info!("({}) Changing effective priority from {} to {priority}", spec.name, fsm.priority());
                    runtime.priority = priority;
                    let actions = fsm.handle(Event::Priority(priority), started.elapsed());
                    runtime.perform(actions).await;
                }
                own_fault = now.fault;
                runtime.publish(|s| s.tracking_fault = now.fault);
                let group_fault = !spec.sync_with.is_empty()
                    && spec.sync_with.iter().any(|n| group_seen.get(n).is_some_and(|s| s.tracking_fault));
                let fault = own_fault || group_fault;
                if fault != in_fault {
                    in_fault = fault;
                    let event = if fault { Event::Fault } else { Event::FaultCleared };
                    let actions = fsm.handle(event, started.elapsed());
                    runtime.perform(actions).await;
                }
            }
            () = async { tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)).await }, if timer.is_some() => {
                runtime.timer = None;
                let actions = fsm.handle(Event::Timer, started.elapsed());
                runtime.perform(actions).await;
            }
            received = runtime.socket.recv() => {
                let Some(received) = received? else {
                    *runtime.dropped.entry("truncated".into()).or_default() += 1;
                    continue;
                };
                match accept(&spec, &received) {
                    Ok(advert) => {
                        let event = Event::Advert {
                            from: received.src,
                            priority: advert.priority,
                            interval_cs: advert.interval_cs,
                        };
                        let actions = fsm.handle(event, started.elapsed());
                        runtime.perform(actions).await;
                    }
                    // Other VRIDs share the group: not worth a log line.
                    Err(PacketError::WrongVrid(_)) => {}
                    Err(error) => {
                        let count = runtime.dropped.entry(error.to_string()).or_default();
                        *count += 1;
                        tracing::debug!(instance = %spec.name, from = %received.src, %error, dropped = *count, "advertisement dropped");
                    }
                }
            }
            _ = async { refresh.as_mut().expect("guarded").tick().await }, if refresh.is_some() && fsm.state() == State::Master => {
                runtime.announce();
            }
        }
    };
    let event = match stop {
        Stop::Leave => Event::Shutdown,
        Stop::HandOver => Event::HandOver,
    };
    let actions = fsm.handle(event, started.elapsed());
    runtime.perform(actions).await;
    // Make-before-break: a master that said goodbye forwards on until the new master is
    // heard (or Master_Down_Interval passes), then lets its addresses go.
    while fsm.is_leaving() {
        let timer = runtime.timer;
        let event = tokio::select! {
            () = async { tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)).await } => {
                runtime.timer = None;
                Event::Timer
            }
            received = runtime.socket.recv() => match received {
                Ok(Some(received)) => match accept(&spec, &received) {
                    Ok(advert) => Event::Advert {
                        from: received.src,
                        priority: advert.priority,
                        interval_cs: advert.interval_cs,
                    },
                    Err(_) => continue,
                },
                Ok(None) => continue,
                // Nothing more can be heard: leave now.
                Err(_) => Event::Timer,
            },
        };
        let actions = fsm.handle(event, started.elapsed());
        runtime.perform(actions).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, path::Path};

    use super::*;
    use crate::vrrp::{net::Received, packet::password_bytes};

    fn spec() -> VrrpSpec {
        let text = "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 51\nversion = 2\nadvert = \"1s\"\n\
                    auth_pass = \"secret\"\nvips = [\"192.168.1.201/24\"]\n";
        crate::config::load_str(Path::new("lb.toml"), text)
            .expect("valid")
            .resolved
            .vrrp[0]
            .clone()
    }

    fn received(advert: &Advert, ttl: u8) -> Received {
        let (src, dst): (IpAddr, IpAddr) = (
            "192.168.1.1".parse().unwrap(),
            "224.0.0.18".parse().unwrap(),
        );
        Received {
            src,
            dst,
            ttl,
            payload: advert.encode(src, dst),
        }
    }

    #[test]
    fn instance_level_checks_drop_what_is_not_for_us() {
        let spec = spec();
        let good = Advert {
            version: crate::vrrp::packet::Version::V2,
            vrid: 51,
            priority: 100,
            interval_cs: 100,
            addrs: vec!["192.168.1.201".parse().unwrap()],
            password: Some(password_bytes("secret")),
        };
        assert_eq!(accept(&spec, &received(&good, 255)), Ok(good.clone()));
        assert_eq!(
            accept(&spec, &received(&good, 254)),
            Err(PacketError::WrongTtl(254)),
            "RFC 5798 7.1: TTL 255"
        );
        let other_vrid = Advert {
            vrid: 52,
            ..good.clone()
        };
        assert_eq!(
            accept(&spec, &received(&other_vrid, 255)),
            Err(PacketError::WrongVrid(52))
        );
        let wrong_password = Advert {
            password: Some(password_bytes("guess")),
            ..good.clone()
        };
        assert_eq!(
            accept(&spec, &received(&wrong_password, 255)),
            Err(PacketError::AuthMismatch)
        );
        let no_password = Advert {
            password: None,
            ..good.clone()
        };
        assert_eq!(
            accept(&spec, &received(&no_password, 255)),
            Err(PacketError::AuthMismatch)
        );
        let v3 = Advert {
            version: crate::vrrp::packet::Version::V3,
            password: None,
            ..good
        };
        assert_eq!(
            accept(&spec, &received(&v3, 255)),
            Err(PacketError::BadVersion(3))
        );
    }
}
