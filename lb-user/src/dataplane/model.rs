//! The L4 model: configuration -> what the maps must hold. Pure functions, no kernel.
//!
//! Service ids follow configuration order; real ids number distinct (address, port) pairs in
//! order of first appearance, so a real shared by services has one slot and one set of stats.
//! Connection-table entries carry the real's identity key, so when ids shift after a config
//! change an old entry is treated as a miss rather than followed to the wrong real.

use std::net::{IpAddr, SocketAddr};

use lb_common::{
    hash::{flow_hash, real_key},
    maps::{
        FAMILY_V4, FAMILY_V6, FlowKey, MODE_DR, MODE_NAT, MODE_TUN, NO_REAL, SERVICE_ACTIVE,
        SERVICE_SOURCE_HASH, SETTINGS_NAT, Service, ServiceKey, Settings,
    },
};

use super::maglev::{self, Backend};
use crate::config::{Config, ForwardMode, HashFields, L4Protocol};

/// A service as the maps hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceModel {
    /// Configured name.
    pub name: String,
    /// VIP and port.
    pub vip: SocketAddr,
    /// Transport protocol.
    pub protocol: L4Protocol,
    /// Forwarding mode.
    pub mode: ForwardMode,
    /// Key in the services map.
    pub key: ServiceKey,
    /// Value in the services map.
    pub value: Service,
    /// `(real id, weight)` of each configured real.
    pub members: Vec<(u32, u32)>,
    /// What to do when every real is down.
    pub on_all_down: crate::config::AllDown,
}

/// A real as the maps hold it (next hop aside: that comes from the neighbour table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealModel {
    /// Slot in the reals map.
    pub id: u32,
    /// Address.
    pub addr: IpAddr,
    /// Port (the VIP's, or the NAT port).
    pub port: u16,
    /// Identity key.
    pub key: u32,
}

/// Everything the L4 maps hold, derived from a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Model {
    /// The settings entry.
    pub settings: Settings,
    /// Services by id.
    pub services: Vec<ServiceModel>,
    /// Reals by id.
    pub reals: Vec<RealModel>,
    /// Services the rings map is sized for.
    pub max_services: u32,
    /// Connection table size.
    pub conn_table_size: u32,
}

/// Ids already in the maps: `(address, port, id)` of reals and `(key, id)` of services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Previous {
    /// Reals found in the reals map.
    pub reals: Vec<(IpAddr, u16, u32)>,
    /// Services found in the services map.
    pub services: Vec<(ServiceKey, u32)>,
}

/// Hands out the lowest ids not reserved.
struct IdAllocator {
    taken: std::collections::BTreeSet<u32>,
    next: u32,
}

impl IdAllocator {
    fn new(reserved: impl Iterator<Item = u32>) -> Self {
        IdAllocator {
            taken: reserved.collect(),
            next: 0,
        }
    }

    fn next(&mut self) -> u32 {
        while self.taken.contains(&self.next) {
            self.next += 1;
        }
        self.taken.insert(self.next);
        self.next
    }
}

fn service_key(spec: &crate::config::ServiceSpec) -> ServiceKey {
    ServiceKey {
        addr: addr_words(spec.vip.ip()),
        port: spec.vip.port(),
        protocol: protocol_number(spec.protocol),
        family: family(spec.vip.ip()),
    }
}

/// Network-order words of an address, as the maps store it.
pub fn addr_words(addr: IpAddr) -> [u32; 4] {
    match addr {
        IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut words = [0u32; 4];
            for (i, word) in words.iter_mut().enumerate() {
                *word = u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]);
            }
            words
        }
    }
}

/// The map's `family` value of an address.
pub fn family(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { FAMILY_V4 } else { FAMILY_V6 }
}

/// IP protocol number.
pub fn protocol_number(protocol: L4Protocol) -> u8 {
    match protocol {
        L4Protocol::Tcp => 6,
        L4Protocol::Udp => 17,
    }
}

/// Network-order mask of the low `host_bits` bits of a word.
fn host_mask(host_bits: u32) -> u32 {
    let host_order = if host_bits >= 32 {
        u32::MAX
    } else {
        (1u32 << host_bits) - 1
    };
    u32::from_ne_bytes(host_order.to_be_bytes())
}

impl L4Model {
    /// The ids this model gives its services and reals, for a model derived after a reload
    /// to keep.
    pub fn ids(&self) -> Previous {
        Previous {
            reals: self.reals.iter().map(|r| (r.addr, r.port, r.id)).collect(),
            services: self.services.iter().map(|s| (s.key, s.value.id)).collect(),
        }
    }

    /// Derives the model from a validated configuration, numbering from zero.
    pub fn from_config(config: &Config) -> L4Model {
        Self::from_config_keeping(config, &Previous::default())
    }

    /// Derives the model, keeping the ids that services and reals already have in the maps
    /// (`previous`, read back from pinned maps): a restarted agent then changes nothing for
    /// what did not change, and connection-table entries stay valid.
    pub fn from_config_keeping(config: &Config, previous: &Previous) -> L4Model {
        let global = &config.global;
        let resolved = &config.resolved;
        let mut reals: Vec<RealModel> = Vec::new();
        let mut services = Vec::with_capacity(resolved.l4.len());
        let wanted_reals: Vec<(IpAddr, u16)> = resolved
            .l4
            .iter()
            .flat_map(|s| s.reals.iter().map(|r| (r.addr, r.port)))
            .collect();
        let mut real_ids = IdAllocator::new(
            previous
                .reals
                .iter()
                .filter(|(addr, port, _)| wanted_reals.contains(&(*addr, *port)))
                .map(|(_, _, id)| *id),
        );
        let wanted_services: Vec<ServiceKey> = resolved.l4.iter().map(service_key).collect();
        let mut service_ids = IdAllocator::new(
            previous
                .services
                .iter()
                .filter(|(key, _)| wanted_services.contains(key))
                .map(|(_, id)| *id),
        );
        for spec in &resolved.l4 {
            let mut members = Vec::with_capacity(spec.reals.len());
            for real in &spec.reals {
                let real_id = match reals
                    .iter()
                    .find(|r| r.addr == real.addr && r.port == real.port)
                {
                    Some(existing) => existing.id,
                    None => {
                        let kept = previous
                            .reals
                            .iter()
                            .find(|(addr, port, _)| *addr == real.addr && *port == real.port)
                            .map(|(_, _, id)| *id);
                        let id = kept.unwrap_or_else(|| real_ids.next());
                        reals.push(RealModel {
                            id,
                            addr: real.addr,
                            port: real.port,
                            key: real_key(&addr_words(real.addr), real.port),
                        });
                        id
                    }
                };
                members.push((real_id, real.weight));
            }
            let key = service_key(spec);
            let id = previous
                .services
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, id)| *id)
                .unwrap_or_else(|| service_ids.next());
            let mut flags = SERVICE_ACTIVE;
            if spec.hash == HashFields::Source {
                flags |= SERVICE_SOURCE_HASH;
            }
            services.push(ServiceModel {
                name: spec.name.clone(),
                vip: spec.vip,
                protocol: spec.protocol,
                mode: spec.mode,
                key,
                value: Service {
                    key,
                    id,
                    flags,
                    mode: match spec.mode {
                        ForwardMode::Dr => MODE_DR,
                        ForwardMode::Tun => MODE_TUN,
                        ForwardMode::Nat => MODE_NAT,
                    },
                },
                members,
                on_all_down: spec.on_all_down,
            });
        }
        let (v4, v4_len) = resolved.tunnel_source_v4;
        let (v6, v6_len) = resolved.tunnel_source_v6;
        let mut settings = Settings {
            hash_seed: global.hash_seed,
            ring_size: *global.ring_size.get_ref(),
            max_new_flows_per_sec: global.max_new_flows_per_sec,
            tunnel_mtu: *global.tunnel_mtu.get_ref(),
            tunnel_src_v4: u32::from_ne_bytes(v4.octets()),
            tunnel_src_v4_hash_mask: host_mask(32 - u32::from(v4_len)),
            tunnel_src_v6: addr_words(IpAddr::V6(v6)),
            tunnel_src_v6_hash_mask: host_mask(128 - u32::from(v6_len)),
            flags: 0,
        };
        if services.iter().any(|s| s.mode == ForwardMode::Nat) {
            settings.flags |= SETTINGS_NAT;
        }
        if resolved.sync.is_some() {
            settings.flags |= lb_common::maps::SETTINGS_SYNC;
        }
        L4Model {
            settings,
            services,
            reals,
            max_services: *global.max_services.get_ref(),
            conn_table_size: *global.conn_table_size.get_ref(),
        }
    }

    /// The Maglev table of service `index`, counting only reals for which `usable` is true
    /// (resolved next hop, healthy); weight 0 reals get no slots.
    pub fn ring(&self, index: usize, usable: impl Fn(u32) -> bool) -> Vec<u32> {
        let service = &self.services[index];
        let backends: Vec<Backend> = service
            .members
            .iter()
            .filter(|(id, _)| usable(*id))
            .map(|&(id, weight)| {
                let real = self.real(id).expect("members name reals of the model");
                Backend {
                    id,
                    addr: addr_words(real.addr),
                    port: real.port,
                    weight,
                }
            })
            .collect();
        maglev::build(&backends, self.settings.ring_size)
    }

    /// The real a new flow from `client` to `vip` would get, as the kernel computes it with
    /// every real usable: the answer to `lb simulate`.
    pub fn simulate(
        &self,
        client: SocketAddr,
        vip: SocketAddr,
        protocol: L4Protocol,
    ) -> Option<(&ServiceModel, &RealModel)> {
        let index = self
            .services
            .iter()
            .position(|s| s.vip == vip && s.protocol == protocol)?;
        let service = &self.services[index];
        let flow = FlowKey {
            src: addr_words(client.ip()),
            dst: addr_words(vip.ip()),
            src_port: client.port(),
            dst_port: vip.port(),
            protocol: protocol_number(protocol),
            family: family(vip.ip()),
            _pad: [0; 2],
        };
        let hash = flow_hash(
            &flow,
            self.settings.hash_seed,
            service.value.flags & SERVICE_SOURCE_HASH != 0,
        );
        let ring = self.ring(index, |_| true);
        let real_id = ring[(hash % self.settings.ring_size) as usize];
        if real_id == NO_REAL {
            return None;
        }
        Some((service, self.real(real_id)?))
    }

    /// Marks services active or not by VIP ownership: a service whose VIP belongs to a VRRP
    /// instance (`covered`) forwards only while that address is `owned` (this node is
    /// master); any other service always forwards.
    pub fn set_vip_ownership(&mut self, covered: &[IpAddr], owned: &[IpAddr]) {
        for service in &mut self.services {
            let ip = service.vip.ip();
            if !covered.contains(&ip) || owned.contains(&ip) {
                service.value.flags |= SERVICE_ACTIVE;
            } else {
                service.value.flags &= !SERVICE_ACTIVE;
            }
        }
    }

    /// The real with id `id`.
    pub fn real(&self, id: u32) -> Option<&RealModel> {
        self.reals.iter().find(|r| r.id == id)
    }

    /// Keys whose bit the service filter must have: every service's, and for NAT services
    /// the (real address, port, protocol) their replies come from, since the XDP program
    /// consults the same filter before looking a packet up as a NAT reply.
    pub fn filter_keys(&self) -> Vec<ServiceKey> {
        let mut keys: Vec<ServiceKey> = self.services.iter().map(|s| s.key).collect();
        for service in self.services.iter().filter(|s| s.mode == ForwardMode::Nat) {
            for real in service.members.iter().filter_map(|(id, _)| self.real(*id)) {
                keys.push(ServiceKey {
                    addr: addr_words(real.addr),
                    port: real.port,
                    protocol: service.key.protocol,
                    family: family(real.addr),
                });
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn model(text: &str) -> L4Model {
        L4Model::from_config(
            &crate::config::load_str(Path::new("lb.toml"), text).expect("valid config"),
        )
    }

    const TWO_SERVICES: &str = r#"
[global]
ring_size = 251

[[l4]]
name = "web"
vip = "10.0.0.100:80"
reals = [{ addr = "10.0.2.11" }, { addr = "10.0.2.12", weight = 3 }]

[[l4]]
name = "dns"
vip = "10.0.0.100:53"
protocol = "udp"
mode = "nat"
hash = "source"
reals = [{ addr = "10.0.2.12", port = 5353 }, { addr = "10.0.2.11", port = 53 }]
"#;

    #[test]
    fn ids_follow_configuration_order_and_reals_are_shared() {
        let m = model(TWO_SERVICES);
        assert_eq!(m.services.len(), 2);
        assert_eq!(m.services[1].value.id, 1);
        assert_eq!(m.services[1].value.mode, MODE_NAT);
        assert_eq!(
            m.services[1].value.flags,
            SERVICE_ACTIVE | SERVICE_SOURCE_HASH
        );
        assert_eq!(m.services[1].key.protocol, 17);
        // 10.0.2.12:5353 and 10.0.2.11:53 differ from the web reals (port 80): four reals.
        assert_eq!(m.reals.len(), 4);
        assert_eq!(m.services[0].members, vec![(0, 1), (1, 3)]);
        assert_eq!(m.settings.flags & SETTINGS_NAT, SETTINGS_NAT);
        assert_eq!(m.settings.ring_size, 251);
    }

    #[test]
    fn tunnel_source_masks_cover_the_host_bits() {
        let m = model(TWO_SERVICES);
        assert_eq!(
            m.settings.tunnel_src_v4,
            u32::from_ne_bytes([172, 16, 0, 0])
        );
        assert_eq!(
            m.settings.tunnel_src_v4_hash_mask,
            u32::from_ne_bytes([0, 0, 0xff, 0xff])
        );
        assert_eq!(
            m.settings.tunnel_src_v6_hash_mask,
            u32::from_ne_bytes([0, 0, 0xff, 0xff])
        );
    }

    #[test]
    fn simulate_follows_weights_and_is_deterministic() {
        let m = model(TWO_SERVICES);
        let vip: SocketAddr = "10.0.0.100:80".parse().unwrap();
        let mut counts = [0u32; 2];
        for port in 1000..5000u16 {
            let client = SocketAddr::new("192.0.2.7".parse().unwrap(), port);
            let (service, real) = m.simulate(client, vip, L4Protocol::Tcp).expect("a real");
            assert_eq!(service.name, "web");
            counts[real.id as usize] += 1;
            assert_eq!(
                m.simulate(client, vip, L4Protocol::Tcp).unwrap().1.id,
                real.id
            );
        }
        let share = f64::from(counts[1]) / 4000.0;
        assert!((share - 0.75).abs() < 0.05, "weight 3 of 4 got {share}");
    }

    #[test]
    fn source_hash_ignores_ports() {
        let m = model(TWO_SERVICES);
        let vip: SocketAddr = "10.0.0.100:53".parse().unwrap();
        let first = m
            .simulate("192.0.2.9:1000".parse().unwrap(), vip, L4Protocol::Udp)
            .unwrap()
            .1
            .id;
        for port in 1001..1100u16 {
            let client = SocketAddr::new("192.0.2.9".parse().unwrap(), port);
            assert_eq!(
                m.simulate(client, vip, L4Protocol::Udp).unwrap().1.id,
                first
            );
        }
    }

    #[test]
    fn previous_ids_are_kept_and_new_ones_fill_gaps() {
        let first = model(TWO_SERVICES);
        // Drop the first web real and swap the services' order: ids must not move.
        let changed = TWO_SERVICES.replace(
            "reals = [{ addr = \"10.0.2.11\" }, { addr = \"10.0.2.12\", weight = 3 }]",
            "reals = [{ addr = \"10.0.2.12\", weight = 3 }, { addr = \"10.0.2.99\" }]",
        );
        let previous = Previous {
            reals: first.reals.iter().map(|r| (r.addr, r.port, r.id)).collect(),
            services: first.services.iter().map(|s| (s.key, s.value.id)).collect(),
        };
        let config = crate::config::load_str(Path::new("lb.toml"), &changed).expect("valid");
        let second = L4Model::from_config_keeping(&config, &previous);
        let id_of = |m: &L4Model, a: &str, port: u16| {
            m.reals
                .iter()
                .find(|r| r.addr.to_string() == a && r.port == port)
                .map(|r| r.id)
        };
        assert_eq!(
            id_of(&second, "10.0.2.12", 80),
            id_of(&first, "10.0.2.12", 80)
        );
        assert_eq!(
            id_of(&second, "10.0.2.12", 5353),
            id_of(&first, "10.0.2.12", 5353)
        );
        // 10.0.2.11:80 left (id 0 is free again); the newcomer takes the lowest free id.
        assert_eq!(id_of(&second, "10.0.2.99", 80), Some(0));
        assert_eq!(second.services[1].value.id, 1);
    }

    #[test]
    fn unknown_service_simulates_to_none() {
        let m = model(TWO_SERVICES);
        let vip: SocketAddr = "10.0.0.100:443".parse().unwrap();
        assert!(
            m.simulate("192.0.2.9:1000".parse().unwrap(), vip, L4Protocol::Tcp)
                .is_none()
        );
    }
}
