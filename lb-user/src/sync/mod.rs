//! Connection-table sync between balancer nodes (LVS's sync daemon, for lb). The XDP program
//! publishes every flow it starts forwarding in a ring buffer (`LB_FLOW_EVENTS`, written only
//! while `[sync]` is configured); this module sends them to the peers in batches over UDP,
//! authenticated with HMAC-SHA256 under the shared key, and writes what the peers send into
//! this node's connection table and NAT table. A flow that starts on the master is then
//! already known to the backup: after a failover it keeps its real even when Maglev would
//! choose another now (a real added or removed since), and a NAT flow's replies are turned
//! back from their first packet.
//!
//! Layout: [`wire`] (the message, pure); [`run`] (the task: ring buffer -> peers, peers ->
//! maps); [`SyncCounters`].
//!
//! Entries name their service by key and their real by its identity key, so peers resolve
//! their own ids; NAT entries name their interface, and the receiver uses its own index and
//! MAC of that name. When the client closes a flow (its first FIN, or a RST, through the
//! forwarding node's XDP), the peers are told and let the entry (and its NAT reverse entry)
//! go after `fin_timeout` or `rst_timeout` (IPVS's defaults: 2 min and 10 s), long enough for
//! the close to finish through a failover; a new flow on the same addresses cancels that.
//! Flows that just stop leave each table by LRU eviction. A node that starts asks
//! its peers for a copy of their tables (three times, a second apart: UDP may lose one), so it
//! knows the flows that were running before it joined; until a copy is complete (or 4 s have
//! passed) its VRRP instances do not preempt.

pub mod wire;

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, RingBuf};
use lb_common::maps::{
    CONNS_MAP, EVENT_CONN, EVENT_FIN, EVENT_NAT, EVENT_RST, FLOW_EVENTS_MAP, FLOW_RST, Flow,
    FlowEvent, FlowKey, MAX_REALS, MODE_NAT, NAT_MAP, NatEntry, REALS_MAP, Real, SERVICE_TABLE_MAP,
    SERVICES_MAP, Service, ServiceKey,
};
use tokio::{io::unix::AsyncFd, net::UdpSocket};

use crate::config::SyncSpec;
use wire::{Entry, Kind, MAX_ENTRIES, Message, Senders, Stamped};

/// What the sync did, for `lb ctl show sync`.
#[derive(Debug, Default)]
pub struct SyncCounters {
    /// Flow entries sent to peers (each peer counted).
    pub sent: AtomicU64,
    /// Messages received.
    pub received: AtomicU64,
    /// Flow entries written into this node's tables.
    pub applied: AtomicU64,
    /// Messages refused (bad MAC, version, hash seed, replay, malformed).
    pub refused: AtomicU64,
    /// Entries that named a service, real or interface this node does not have (or a close
    /// of a flow this node does not know).
    pub unknown: AtomicU64,
    /// Closed flows removed from this node's tables after their closing timeout.
    pub removed: AtomicU64,
    /// The last lags (µs) from a peer reading a new flow to this node applying it.
    lags: std::sync::Mutex<std::collections::VecDeque<u64>>,
}

/// Lags kept for the percentiles.
const LAGS_KEPT: usize = 100_000;

/// Now, in microseconds since the Unix epoch (the wire's clock: nodes keep theirs in step).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl SyncCounters {
    fn record_lag(&self, lag_us: u64) {
        if let Ok(mut lags) = self.lags.lock() {
            if lags.len() == LAGS_KEPT {
                lags.pop_front();
            }
            lags.push_back(lag_us);
        }
    }

    /// The median and 99th percentile of the recent lags, µs.
    pub fn lag_percentiles(&self) -> Option<(u64, u64)> {
        let mut lags: Vec<u64> = self.lags.lock().ok()?.iter().copied().collect();
        if lags.is_empty() {
            return None;
        }
        lags.sort_unstable();
        let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5), at(0.99)))
    }

    /// `show sync`'s answer.
    pub fn render(&self) -> String {
        let (p50, p99) = self.lag_percentiles().unwrap_or((0, 0));
        format!(
            "sent {} received {} applied {} refused {} unknown {} removed {} lag_p50_us {p50} lag_p99_us {p99}\n",
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
            self.applied.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.unknown.load(Ordering::Relaxed),
            self.removed.load(Ordering::Relaxed),
        )
    }
}

/// Errors that stop the sync.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A pinned map could not be opened.
    #[error("opening the pinned map {map}: {message}")]
    Map { map: String, message: String },
    /// The UDP socket.
    #[error("sync socket: {0}")]
    Socket(#[from] io::Error),
}

/// How long new flows wait for more before they are sent.
const BATCH_WINDOW: Duration = Duration::from_millis(5);

fn open(bpf_dir: &Path, name: &str) -> Result<Map, SyncError> {
    let failed = |message: String| SyncError::Map {
        map: name.to_string(),
        message,
    };
    let data = MapData::from_pin(bpf_dir.join(name)).map_err(|e| failed(e.to_string()))?;
    Map::from_map_data(data).map_err(|e| failed(e.to_string()))
}

fn map_error(name: &str, error: impl std::fmt::Display) -> SyncError {
    SyncError::Map {
        map: name.to_string(),
        message: error.to_string(),
    }
}

/// This node's tables, as the receiving side writes them.
struct Tables {
    conns: BpfHashMap<MapData, FlowKey, Flow>,
    nat: BpfHashMap<MapData, FlowKey, NatEntry>,
    services: BpfHashMap<MapData, ServiceKey, u32>,
    service_table: Array<MapData, Service>,
    reals: Array<MapData, Real>,
    /// Real ids by identity key, read from the reals map (again at most once a second when
    /// a key is missing).
    real_ids: HashMap<u32, u32>,
    real_ids_read: Option<Instant>,
    /// This node's index and MAC of each interface name.
    interfaces: HashMap<String, Option<(u32, [u8; 6])>>,
    /// This node's interface names by index (NAT entries are sent with the name).
    names: HashMap<u32, Option<String>>,
    /// Flows the peers saw closed, and when their entries go.
    closing: HashMap<FlowKey, Instant>,
    fin_timeout: Duration,
    rst_timeout: Duration,
}

impl Tables {
    fn open(bpf_dir: &Path, spec: &SyncSpec) -> Result<Tables, SyncError> {
        Ok(Tables {
            conns: BpfHashMap::try_from(open(bpf_dir, CONNS_MAP)?)
                .map_err(|e| map_error(CONNS_MAP, e))?,
            nat: BpfHashMap::try_from(open(bpf_dir, NAT_MAP)?)
                .map_err(|e| map_error(NAT_MAP, e))?,
            services: BpfHashMap::try_from(open(bpf_dir, SERVICES_MAP)?)
                .map_err(|e| map_error(SERVICES_MAP, e))?,
            service_table: Array::try_from(open(bpf_dir, SERVICE_TABLE_MAP)?)
                .map_err(|e| map_error(SERVICE_TABLE_MAP, e))?,
            reals: Array::try_from(open(bpf_dir, REALS_MAP)?)
                .map_err(|e| map_error(REALS_MAP, e))?,
            real_ids: HashMap::new(),
            real_ids_read: None,
            interfaces: HashMap::new(),
            names: HashMap::new(),
            closing: HashMap::new(),
            fin_timeout: spec.fin_timeout,
            rst_timeout: spec.rst_timeout,
        })
    }

    fn real_id(&mut self, key: u32) -> Option<u32> {
        if let Some(id) = self.real_ids.get(&key) {
            return Some(*id);
        }
        if self
            .real_ids_read
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return None;
        }
        self.real_ids_read = Some(Instant::now());
        self.real_ids = (0..MAX_REALS)
            .filter_map(|id| {
                let real = self.reals.get(&id, 0).ok()?;
                (real.key != 0).then_some((real.key, id))
            })
            .collect();
        self.real_ids.get(&key).copied()
    }

    fn interface(&mut self, name: &str) -> Option<(u32, [u8; 6])> {
        self.interfaces
            .entry(name.to_string())
            .or_insert_with(|| local_interface(name))
            .to_owned()
    }

    /// The name of this node's interface `index`, looked up once.
    fn name_of(&mut self, index: u32) -> Option<String> {
        self.names
            .entry(index)
            .or_insert_with(|| interface_name(index))
            .clone()
    }

    /// A ring-buffer event as a wire entry (NAT entries name their interface).
    fn entry_of(&mut self, event: &FlowEvent) -> Option<Entry> {
        match event.kind {
            EVENT_CONN => Some(Entry::Conn {
                flow: event.flow,
                service: event.service,
                real_key: event.real_key,
            }),
            kind @ (EVENT_FIN | EVENT_RST) => Some(Entry::Closed {
                flow: event.flow,
                service: event.service,
                real_key: event.real_key,
                reset: kind == EVENT_RST,
            }),
            EVENT_NAT => Some(Entry::Nat {
                back: event.flow,
                vip: event.nat.vip,
                vip_port: event.nat.vip_port,
                client_mac: event.nat.client_mac,
                interface: self.name_of(event.nat.ifindex)?,
            }),
            _ => None,
        }
    }

    /// Every entry of this node's tables, for a peer's copy.
    fn copy(&mut self) -> Vec<Stamped> {
        let seen_us = now_us();
        self.entries()
            .into_iter()
            .map(|entry| Stamped { entry, seen_us })
            .collect()
    }

    fn entries(&mut self) -> Vec<Entry> {
        let mut entries = Vec::new();
        for (flow, value) in self.conns.iter().filter_map(Result::ok) {
            let Ok(service) = self.service_table.get(&value.service_id, 0) else {
                continue;
            };
            entries.push(Entry::Conn {
                flow,
                service: service.key,
                real_key: value.real_key,
            });
            // A flow closed here is closing on the copy's receiver too.
            if value.closing != 0 {
                entries.push(Entry::Closed {
                    flow,
                    service: service.key,
                    real_key: value.real_key,
                    reset: value.closing & FLOW_RST != 0,
                });
            }
        }
        let nat: Vec<(FlowKey, NatEntry)> = self.nat.iter().filter_map(Result::ok).collect();
        for (back, value) in nat {
            let Some(interface) = self.name_of(value.ifindex) else {
                continue;
            };
            entries.push(Entry::Nat {
                back,
                vip: value.vip,
                vip_port: value.vip_port,
                client_mac: value.client_mac,
                interface,
            });
        }
        entries
    }

    /// Writes one peer entry; false when it names something this node does not have.
    fn apply(&mut self, entry: &Entry) -> bool {
        match entry {
            Entry::Conn {
                flow,
                service,
                real_key,
            } => {
                let Ok(service_id) = self.services.get(service, 0) else {
                    return false;
                };
                let Some(real_id) = self.real_id(*real_key) else {
                    return false;
                };
                let value = Flow {
                    real_id,
                    real_key: *real_key,
                    service_id,
                    closing: 0,
                };
                // The same addresses again: a new flow, no longer closing.
                self.closing.remove(flow);
                self.conns.insert(flow, value, 0).is_ok()
            }
            Entry::Closed {
                flow,
                real_key,
                reset,
                ..
            } => {
                let known = self
                    .conns
                    .get(flow, 0)
                    .is_ok_and(|value| value.real_key == *real_key);
                if !known {
                    return false;
                }
                let timeout = if *reset {
                    self.rst_timeout
                } else {
                    self.fin_timeout
                };
                let at = Instant::now() + timeout;
                self.closing
                    .entry(*flow)
                    .and_modify(|due| *due = (*due).min(at))
                    .or_insert(at);
                true
            }
            Entry::Nat {
                back,
                vip,
                vip_port,
                client_mac,
                interface,
            } => {
                let Some((ifindex, lb_mac)) = self.interface(interface) else {
                    return false;
                };
                let value = NatEntry {
                    vip: *vip,
                    vip_port: *vip_port,
                    _pad: 0,
                    ifindex,
                    client_mac: *client_mac,
                    lb_mac,
                };
                self.nat.insert(back, value, 0).is_ok()
            }
        }
    }
}

impl Tables {
    /// Removes the closed flows whose timeout has passed (and their NAT reverse entries);
    /// how many.
    fn expire(&mut self, now: Instant) -> u64 {
        let due: Vec<FlowKey> = self
            .closing
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(flow, _)| *flow)
            .collect();
        let mut removed = 0;
        for flow in due {
            self.closing.remove(&flow);
            let Ok(value) = self.conns.get(&flow, 0) else {
                continue;
            };
            if let Some(back) = self.nat_back_key(&flow, &value) {
                let _ = self.nat.remove(&back);
            }
            if self.conns.remove(&flow).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// The key of `flow`'s NAT reverse entry, when its service uses NAT: the real's side
    /// (the client's address is kept, the VIP becomes the real's address and port).
    fn nat_back_key(&self, flow: &FlowKey, value: &Flow) -> Option<FlowKey> {
        let service = self.service_table.get(&value.service_id, 0).ok()?;
        if service.mode != MODE_NAT {
            return None;
        }
        let real = self.reals.get(&value.real_id, 0).ok()?;
        Some(FlowKey {
            src: real.addr,
            dst: flow.src,
            src_port: real.port,
            dst_port: flow.src_port,
            protocol: flow.protocol,
            family: flow.family,
            _pad: [0; 2],
        })
    }
}

/// How often closed flows are looked at for removal.
const EXPIRY_INTERVAL: Duration = Duration::from_millis(500);

/// The index and MAC of this node's interface `name`.
fn local_interface(name: &str) -> Option<(u32, [u8; 6])> {
    let index = nix::net::if_::if_nametoindex(name).ok()?;
    let mac = nix::ifaddrs::getifaddrs()
        .ok()?
        .filter(|a| a.interface_name == name)
        .find_map(|a| a.address?.as_link_addr()?.addr())?;
    Some((index, mac))
}

/// The name of this node's interface with index `index`.
fn interface_name(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index)
        .ok()?
        .into_string()
        .ok()
}

/// This node's own addresses (a peer list may name them: it is the same on every node).
fn own_addresses() -> Vec<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| {
                    let address = a.address?;
                    if let Some(v4) = address.as_sockaddr_in() {
                        return Some(IpAddr::V4(v4.ip()));
                    }
                    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An id for this run of the agent: a restarted node starts its sequence anew under another.
fn sender_id() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// How long a node waits for its copy before it stops holding preemption anyway.
const COPY_PATIENCE: Duration = Duration::from_secs(4);

/// Socket buffers of the sync socket: a burst of new flows (10,000 a second) must not
/// overflow them while the task is busy writing maps.
const SOCKET_BUFFER: usize = 8 << 20;

/// The sync socket on `port`, all addresses: IPv4, or IPv6 taking IPv4 too (as mapped
/// addresses) when some peer is IPv6.
fn bind(port: u16, ipv6: bool) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let open = |domain: Domain, addr: SocketAddr| -> io::Result<Socket> {
        let socket = Socket::new(domain, Type::DGRAM, None)?;
        // Best effort: the kernel caps them at net.core.[rw]mem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        if domain == Domain::IPV6 {
            socket.set_only_v6(false)?;
        }
        socket.bind(&addr.into())?;
        socket.set_nonblocking(true)?;
        Ok(socket)
    };
    let socket = if ipv6 {
        open(
            Domain::IPV6,
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port),
        )?
    } else {
        open(
            Domain::IPV4,
            SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port),
        )?
    };
    UdpSocket::from_std(socket.into())
}

/// [`bind`], retried for a few seconds while the port is in use: after a binary upgrade or a
/// reload the previous sync task may not have let go of it yet.
async fn bind_patiently(port: u16, ipv6: bool) -> io::Result<UdpSocket> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match bind(port, ipv6) {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bound => return bound,
        }
    }
}

/// Runs the sync for the maps pinned in `bpf_dir` until the task is dropped; `copied` turns
/// true when a peer's copy of its tables has arrived (or the wait for one ran out).
pub async fn run(
    spec: SyncSpec,
    bpf_dir: PathBuf,
    hash_seed: u32,
    counters: Arc<SyncCounters>,
    copied: tokio::sync::watch::Sender<bool>,
) -> Result<(), SyncError> {
    let ring = RingBuf::try_from(open(&bpf_dir, FLOW_EVENTS_MAP)?)
        .map_err(|e| map_error(FLOW_EVENTS_MAP, e))?;
    // SAFETY: the ring owns its descriptor and is moved into the AsyncFd, which deregisters
    // it before the ring (and so the descriptor) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| SyncError::Socket(e.into()))?;
    let mut tables = Tables::open(&bpf_dir, &spec)?;
    let own = own_addresses();
    let ipv6 = spec.peers.iter().any(IpAddr::is_ipv6);
    let peers: Vec<SocketAddr> = spec
        .peers
        .iter()
        .filter(|p| !own.contains(p))
        .map(|p| match (p, ipv6) {
            (IpAddr::V4(v4), true) => IpAddr::V6(v4.to_ipv6_mapped()),
            _ => *p,
        })
        .map(|p| SocketAddr::new(p, spec.port))
        .collect();
    let socket = bind_patiently(spec.port, ipv6).await?;
    tracing::info!(peers = ?peers, port = spec.port, "connection-table sync running");
    if peers.is_empty() {
        copied.send_replace(true);
    }
    let copy_deadline = tokio::time::Instant::now() + COPY_PATIENCE;
    let sender = sender_id();
    let mut sequence = 0u64;
    let mut senders = Senders::default();
    let mut pending: Vec<Stamped> = Vec::new();
    // When the oldest pending entry must be sent at the latest.
    let mut flush_at: Option<tokio::time::Instant> = None;
    let mut buffer = vec![0u8; 2048];
    // Copy requests go out at start and twice more, a second apart.
    let mut copy_requests = tokio::time::interval(Duration::from_secs(1));
    let mut copy_requests_left = 3u8;
    let mut expiry = tokio::time::interval(EXPIRY_INTERVAL);
    loop {
        tokio::select! {
            _ = expiry.tick() => {
                let removed = tables.expire(Instant::now());
                counters.removed.fetch_add(removed, Ordering::Relaxed);
            }
            readable = ring.readable_mut() => {
                let mut guard = readable?;
                let events = guard.get_inner_mut();
                while let Some(item) = events.next() {
                    if item.len() < std::mem::size_of::<FlowEvent>() {
                        continue;
                    }
                    // SAFETY: the item holds one FlowEvent as the program wrote it (repr(C),
                    // any byte pattern valid); read unaligned.
                    let event: FlowEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                    if let Some(entry) = tables.entry_of(&event) {
                        pending.push(Stamped { entry, seen_us: now_us() });
                        flush_at.get_or_insert_with(|| tokio::time::Instant::now() + BATCH_WINDOW);
                    }
                }
                guard.clear_ready();
            }
            () = async { tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)).await }, if flush_at.is_some() => {}
            () = tokio::time::sleep_until(copy_deadline), if !*copied.borrow() => {
                tracing::warn!("no peer sent a copy of its tables in time; preempting is allowed again");
                copied.send_replace(true);
            }
            _ = copy_requests.tick(), if copy_requests_left > 0 => {
                copy_requests_left -= 1;
                sequence += 1;
                let request = wire::encode(
                    &Message { kind: Kind::CopyRequest, hash_seed, sender, sequence, entries: Vec::new() },
                    &spec.key,
                );
                for peer in &peers {
                    let _ = socket.send_to(&request, peer).await;
                }
            }
            received = socket.recv_from(&mut buffer) => {
                let (len, from) = received?;
                counters.received.fetch_add(1, Ordering::Relaxed);
                let admitted = wire::decode(&buffer[..len], &spec.key, hash_seed)
                    .and_then(|message| senders.admit(&message).map(|()| message));
                match admitted {
                    Ok(message) if message.kind == Kind::CopyRequest => {
                        let copy = tables.copy();
                        tracing::info!(%from, entries = copy.len(), "sending a copy of the tables");
                        for entries in copy.chunks(MAX_ENTRIES) {
                            sequence += 1;
                            let bytes = wire::encode(
                                &Message { kind: Kind::Flows, hash_seed, sender, sequence, entries: entries.to_vec() },
                                &spec.key,
                            );
                            if socket.send_to(&bytes, from).await.is_ok() {
                                counters.sent.fetch_add(entries.len() as u64, Ordering::Relaxed);
                            }
                        }
                        sequence += 1;
                        let done = wire::encode(
                            &Message { kind: Kind::CopyDone, hash_seed, sender, sequence, entries: Vec::new() },
                            &spec.key,
                        );
                        let _ = socket.send_to(&done, from).await;
                    }
                    Ok(message) if message.kind == Kind::CopyDone => {
                        if !*copied.borrow() {
                            tracing::info!(%from, "copy of the peer's tables complete");
                            copied.send_replace(true);
                        }
                        // One copy is enough.
                        copy_requests_left = 0;
                    }
                    Ok(message) => {
                        let now = now_us();
                        for stamped in &message.entries {
                            if tables.apply(&stamped.entry) {
                                counters.applied.fetch_add(1, Ordering::Relaxed);
                                counters.record_lag(now.saturating_sub(stamped.seen_us));
                            } else {
                                counters.unknown.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(refused) => {
                        counters.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%from, %refused, "sync message refused");
                    }
                }
            }
        }
        // Send what waited long enough, or fills a message.
        let due = flush_at.is_some_and(|at| tokio::time::Instant::now() >= at);
        if due {
            flush_at = None;
        }
        while pending.len() >= MAX_ENTRIES || (due && !pending.is_empty()) {
            let take = pending.len().min(MAX_ENTRIES);
            let entries: Vec<Stamped> = pending.drain(..take).collect();
            sequence += 1;
            let message = wire::encode(
                &Message {
                    kind: Kind::Flows,
                    hash_seed,
                    sender,
                    sequence,
                    entries,
                },
                &spec.key,
            );
            for peer in &peers {
                if socket.send_to(&message, peer).await.is_ok() {
                    counters.sent.fetch_add(take as u64, Ordering::Relaxed);
                }
            }
        }
        if !pending.is_empty() && flush_at.is_none() {
            flush_at = Some(tokio::time::Instant::now() + BATCH_WINDOW);
        }
    }
}
