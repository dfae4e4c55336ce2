//! Making the maps hold what the model says, writing only what differs.
//!
//! Order matters so that no packet ever finds a service without a real: new reals are written
//! first, then each ring slot moves from one valid real to another, then services are added or
//! removed, and only then are reals nobody points to any more switched off. A service is
//! written filter bit first, then its slot by id, then its key -> id entry; removal goes the
//! other way, so the XDP program never finds a key whose slot says something else.

use std::{collections::HashMap, net::IpAddr};

use aya::maps::{Array, HashMap as BpfHashMap, MapData};
use lb_common::{
    hash::service_filter_bit,
    maps::{
        MAX_REALS, MAX_SERVICES, REAL_ACTIVE, REAL_IPV6, REALS_MAP, Real, SERVICE_FILTER_MAP,
        SERVICE_FILTER_WORDS, SERVICE_TABLE_MAP, SERVICES_MAP, SETTINGS_MAP, Service, ServiceKey,
        Settings,
    },
};

use super::{
    loader::{Dataplane, DataplaneError},
    maglev,
    model::{L4Model, Previous, addr_words},
    neigh::Nexthop,
};

/// What one sync wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Real slots written.
    pub reals: usize,
    /// Ring slots written.
    pub ring_slots: usize,
    /// Service entries written.
    pub services: usize,
    /// Service entries removed.
    pub services_removed: usize,
}

fn missing(name: &str) -> DataplaneError {
    DataplaneError::Missing(format!("map `{name}`"))
}

impl Dataplane {
    /// Brings the maps in line with `model`. A real takes traffic when its next hop is known;
    /// it gets new flows of service `i` (a place in its ring) when `healthy(i, real id)` too.
    /// Flows already in the connection table stay with their real while it has a next hop:
    /// that is how weight 0 drains.
    pub fn apply(
        &mut self,
        model: &L4Model,
        nexthops: &HashMap<IpAddr, Nexthop>,
        healthy: &dyn Fn(usize, u32) -> bool,
    ) -> Result<SyncReport, DataplaneError> {
        let mut report = SyncReport::default();
        let ebpf = self.ebpf_mut();
        {
            let mut settings: Array<&mut MapData, Settings> = Array::try_from(
                ebpf.map_mut(SETTINGS_MAP)
                    .ok_or_else(|| missing(SETTINGS_MAP))?,
            )?;
            if settings.get(&0, 0)? != model.settings {
                settings.set(0, model.settings, 0)?;
            }
        }
        {
            let mut reals: Array<&mut MapData, Real> =
                Array::try_from(ebpf.map_mut(REALS_MAP).ok_or_else(|| missing(REALS_MAP))?)?;
            for real in &model.reals {
                let mut entry = Real {
                    addr: addr_words(real.addr),
                    key: real.key,
                    flags: if real.addr.is_ipv6() { REAL_IPV6 } else { 0 },
                    port: real.port,
                    ..Real::default()
                };
                if let Some(nexthop) = nexthops.get(&real.addr) {
                    entry.ifindex = nexthop.ifindex;
                    entry.dmac = nexthop.dmac;
                    entry.smac = nexthop.smac;
                    entry.flags |= REAL_ACTIVE;
                }
                if reals.get(&real.id, 0)? != entry {
                    reals.set(real.id, entry, 0)?;
                    report.reals += 1;
                }
            }
        }
        report.ring_slots = self.update_rings(model, nexthops, healthy);
        let ebpf = self.ebpf_mut();
        let filter = service_filter(&model.filter_keys());
        let current = read_filter(ebpf)?;
        let union: Vec<u64> = current.iter().zip(&filter).map(|(a, b)| a | b).collect();
        // Adding: every bit the model needs is set before any key that needs it.
        write_filter(ebpf, &current, &union)?;
        {
            let mut table = service_table(ebpf)?;
            for service in &model.services {
                if table.get(&service.value.id, 0)? != service.value {
                    table.set(service.value.id, service.value, 0)?;
                    report.services += 1;
                }
            }
        }
        let mut services = service_ids(ebpf)?;
        for service in &model.services {
            if services.get(&service.key, 0).ok() != Some(service.value.id) {
                services.insert(service.key, service.value.id, 0)?;
            }
        }
        let stale: Vec<ServiceKey> = services
            .keys()
            .filter_map(Result::ok)
            .filter(|key| !model.services.iter().any(|s| s.key == *key))
            .collect();
        for key in &stale {
            services.remove(key)?;
            report.services_removed += 1;
        }
        {
            let mut table = service_table(ebpf)?;
            for id in 0..MAX_SERVICES {
                if !model.services.iter().any(|s| s.value.id == id)
                    && table.get(&id, 0)? != Service::default()
                {
                    table.set(id, Service::default(), 0)?;
                }
            }
        }
        // Removing: bits only the removed services used are cleared last.
        write_filter(ebpf, &union, &filter)?;
        {
            let mut reals: Array<&mut MapData, Real> =
                Array::try_from(ebpf.map_mut(REALS_MAP).ok_or_else(|| missing(REALS_MAP))?)?;
            for id in 0..MAX_REALS {
                if model.real(id).is_none() && reals.get(&id, 0)?.key != 0 {
                    reals.set(id, Real::default(), 0)?;
                    report.reals += 1;
                }
            }
        }
        Ok(report)
    }
}

impl Dataplane {
    /// Marks the service `key` active (its VIP is owned here: forward) or inactive (pass its
    /// packets to the stack untouched). VRRP drives this. Returns false if there is no such
    /// service.
    pub fn set_service_active(
        &mut self,
        key: &ServiceKey,
        active: bool,
    ) -> Result<bool, DataplaneError> {
        let ebpf = self.ebpf_mut();
        let Ok(id) = service_ids(ebpf)?.get(key, 0) else {
            return Ok(false);
        };
        let mut table = service_table(ebpf)?;
        let mut service = table.get(&id, 0)?;
        if active {
            service.flags |= lb_common::maps::SERVICE_ACTIVE;
        } else {
            service.flags &= !lb_common::maps::SERVICE_ACTIVE;
        }
        table.set(id, service, 0)?;
        Ok(true)
    }
}

impl Dataplane {
    /// Ids that services and reals hold in the maps now (after adopting pinned maps), so a new
    /// model can keep them.
    pub fn previous_ids(&self) -> Result<Previous, DataplaneError> {
        let ebpf = self.ebpf();
        let reals = Array::try_from(ebpf.map(REALS_MAP).ok_or_else(|| missing(REALS_MAP))?)?;
        let services = BpfHashMap::try_from(
            ebpf.map(SERVICES_MAP)
                .ok_or_else(|| missing(SERVICES_MAP))?,
        )?;
        previous_from(&reals, &services)
    }
}

/// Ids held by the maps a running agent pinned under `bpf_dir` (for `lb stats` names).
pub fn pinned_ids(bpf_dir: &std::path::Path) -> Result<Previous, DataplaneError> {
    let reals = aya::maps::Map::from_map_data(MapData::from_pin(bpf_dir.join(REALS_MAP))?)?;
    let services = aya::maps::Map::from_map_data(MapData::from_pin(bpf_dir.join(SERVICES_MAP))?)?;
    let reals: Array<MapData, Real> = Array::try_from(reals)?;
    let services: BpfHashMap<MapData, ServiceKey, u32> = BpfHashMap::try_from(services)?;
    previous_from(&reals, &services)
}

fn previous_from<R, S>(
    reals: &Array<R, Real>,
    services: &BpfHashMap<S, ServiceKey, u32>,
) -> Result<Previous, DataplaneError>
where
    R: std::borrow::Borrow<MapData>,
    S: std::borrow::Borrow<MapData>,
{
    let mut previous = Previous::default();
    for id in 0..MAX_REALS {
        let real = reals.get(&id, 0)?;
        if real.key == 0 {
            continue;
        }
        let addr = if real.flags & REAL_IPV6 != 0 {
            let mut octets = [0u8; 16];
            for (i, word) in real.addr.iter().enumerate() {
                octets[4 * i..4 * i + 4].copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::from(octets)
        } else {
            IpAddr::from(real.addr[0].to_ne_bytes())
        };
        previous.reals.push((addr, real.port, id));
    }
    for entry in services.iter() {
        let (key, id) = entry?;
        previous.services.push((key, id));
    }
    Ok(previous)
}

impl Dataplane {
    /// Rewrites only the slots of each service's Maglev table that change (see
    /// [`Dataplane::apply`] for `healthy`); the health path calls this alone, since nothing
    /// else changes when a check flips. Returns the number of slots written.
    pub fn update_rings(
        &mut self,
        model: &L4Model,
        nexthops: &HashMap<IpAddr, Nexthop>,
        healthy: &dyn Fn(usize, u32) -> bool,
    ) -> usize {
        let usable = |id: u32| {
            model
                .real(id)
                .is_some_and(|r| nexthops.contains_key(&r.addr))
        };
        let mut written = 0;
        let ring_size = model.settings.ring_size as usize;
        for (index, service) in model.services.iter().enumerate() {
            let base = service.value.id as usize * ring_size;
            let any_healthy = service
                .members
                .iter()
                .any(|(real, _)| usable(*real) && healthy(index, *real));
            // Fail open: with every real down, forward to all of them rather than to none.
            let ignore_health =
                !any_healthy && service.on_all_down == crate::config::AllDown::Forward;
            let wanted = model.ring(index, |real| {
                usable(real) && (ignore_health || healthy(index, real))
            });
            let current = self.rings.read(base, ring_size);
            let writes = maglev::diff(&current, &wanted);
            for (slot, real) in &writes {
                self.rings.write(base + *slot as usize, *real);
            }
            written += writes.len();
        }
        written
    }
}

fn service_ids(
    ebpf: &mut aya::Ebpf,
) -> Result<BpfHashMap<&mut MapData, ServiceKey, u32>, DataplaneError> {
    Ok(BpfHashMap::try_from(
        ebpf.map_mut(SERVICES_MAP)
            .ok_or_else(|| missing(SERVICES_MAP))?,
    )?)
}

fn service_table(ebpf: &mut aya::Ebpf) -> Result<Array<&mut MapData, Service>, DataplaneError> {
    Ok(Array::try_from(
        ebpf.map_mut(SERVICE_TABLE_MAP)
            .ok_or_else(|| missing(SERVICE_TABLE_MAP))?,
    )?)
}

/// The service filter's words with the bit of every key in `keys` set.
pub fn service_filter(keys: &[ServiceKey]) -> Vec<u64> {
    let mut words = vec![0u64; SERVICE_FILTER_WORDS as usize];
    for key in keys {
        let bit = service_filter_bit(key);
        words[(bit / 64) as usize] |= 1 << (bit % 64);
    }
    words
}

fn filter_map(ebpf: &mut aya::Ebpf) -> Result<Array<&mut MapData, u64>, DataplaneError> {
    Ok(Array::try_from(
        ebpf.map_mut(SERVICE_FILTER_MAP)
            .ok_or_else(|| missing(SERVICE_FILTER_MAP))?,
    )?)
}

/// The filter's words as the map holds them.
fn read_filter(ebpf: &mut aya::Ebpf) -> Result<Vec<u64>, DataplaneError> {
    let filter = filter_map(ebpf)?;
    (0..SERVICE_FILTER_WORDS)
        .map(|word| Ok(filter.get(&word, 0)?))
        .collect()
}

/// Writes the words where `wanted` differs from `current` (what the map holds).
fn write_filter(
    ebpf: &mut aya::Ebpf,
    current: &[u64],
    wanted: &[u64],
) -> Result<(), DataplaneError> {
    let mut filter = filter_map(ebpf)?;
    for (word, (old, new)) in current.iter().zip(wanted).enumerate() {
        if old != new {
            filter.set(word as u32, *new, 0)?;
        }
    }
    Ok(())
}
