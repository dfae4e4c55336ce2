//! Choosing a server in a backend, HAProxy's `balance` algorithms: `roundrobin` (smooth
//! weighted), `static-rr`, `leastconn`, `first`, `source` and `uri` (hashes), `random` (two
//! random choices, the less loaded wins). Only servers that are up count; `backup` servers
//! only when no primary is up (HAProxy without `allbackups`: the first backup).

use std::net::IpAddr;

/// A server as the balancer sees it at the moment of choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Weight (0: takes nothing new).
    pub weight: u32,
    /// Up per the health board and not drained.
    pub up: bool,
    /// A backup server.
    pub backup: bool,
    /// Connections in flight.
    pub active: u32,
    /// Connection limit (0: none).
    pub maxconn: u32,
}

/// The algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Smooth weighted round robin (nginx's variant of HAProxy's dynamic round robin).
    RoundRobin,
    /// Weighted round robin over a fixed sequence.
    StaticRr,
    /// Fewest connections in flight relative to weight; round robin among equals.
    LeastConn,
    /// The first server (in configuration order) with room.
    First,
    /// Hash of the client address.
    Source,
    /// Hash of the request path.
    Uri,
    /// Two random choices, the less loaded one.
    Random,
}

/// Per-backend state a stateful algorithm keeps between choices.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    current: Vec<i64>,
    static_position: u64,
    seed: u64,
}

/// What the request contributes to hashing algorithms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Key<'a> {
    /// Client address (`source`).
    pub src: Option<IpAddr>,
    /// Request path (`uri`).
    pub path: Option<&'a str>,
}

/// FNV-1a: stable across runs and builds, so a client hashes to the same server on every
/// node and after every restart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The server whose share of the weight line `0..sum(weights)` holds `position % sum`.
fn weighted_slot(eligible: &[usize], weight: &impl Fn(usize) -> i64, position: u64) -> usize {
    let total: u64 = eligible.iter().map(|&i| weight(i) as u64).sum();
    let mut position = position % total;
    for &i in eligible {
        if position < weight(i) as u64 {
            return i;
        }
        position -= weight(i) as u64;
    }
    eligible[0]
}

fn has_room(c: &Candidate) -> bool {
    c.maxconn == 0 || c.active < c.maxconn
}

impl Balancer {
    /// Chooses a server among `servers`; `None` when no server can take the request (the
    /// proxy answers 503).
    pub fn choose(
        &mut self,
        algorithm: Algorithm,
        servers: &[Candidate],
        key: Key<'_>,
    ) -> Option<usize> {
        if self.current.len() != servers.len() {
            self.current = vec![0; servers.len()];
        }
        let primaries_up = servers.iter().any(|s| s.up && !s.backup && s.weight > 0);
        let eligible: Vec<usize> = if primaries_up {
            (0..servers.len())
                .filter(|&i| {
                    servers[i].up
                        && !servers[i].backup
                        && servers[i].weight > 0
                        && has_room(&servers[i])
                })
                .collect()
        } else {
            // HAProxy: without `option allbackups`, only the first usable backup serves.
            (0..servers.len())
                .find(|&i| servers[i].up && servers[i].backup && has_room(&servers[i]))
                .into_iter()
                .collect()
        };
        if eligible.is_empty() {
            return None;
        }
        let weight = |i: usize| i64::from(servers[i].weight.max(1));
        Some(match algorithm {
            Algorithm::RoundRobin => {
                let total: i64 = eligible.iter().map(|&i| weight(i)).sum();
                for &i in &eligible {
                    self.current[i] += weight(i);
                }
                let chosen = *eligible
                    .iter()
                    .max_by_key(|&&i| (self.current[i], std::cmp::Reverse(i)))
                    .expect("not empty");
                self.current[chosen] -= total;
                chosen
            }
            Algorithm::StaticRr => {
                let position = self.static_position;
                self.static_position = self.static_position.wrapping_add(1);
                weighted_slot(&eligible, &weight, position)
            }
            Algorithm::LeastConn => {
                // Compare active/weight without division: a.active * b.weight vs b.active * a.weight.
                let best = eligible
                    .iter()
                    .copied()
                    .min_by(|&a, &b| {
                        (i64::from(servers[a].active) * weight(b))
                            .cmp(&(i64::from(servers[b].active) * weight(a)))
                    })
                    .expect("not empty");
                let ties: Vec<usize> = eligible
                    .iter()
                    .copied()
                    .filter(|&i| {
                        i64::from(servers[i].active) * weight(best)
                            == i64::from(servers[best].active) * weight(i)
                    })
                    .collect();
                let pick = ties[(self.static_position % ties.len() as u64) as usize];
                self.static_position = self.static_position.wrapping_add(1);
                pick
            }
            Algorithm::First => eligible[0],
            Algorithm::Source | Algorithm::Uri => {
                let hash = match (algorithm, key.src, key.path) {
                    (Algorithm::Source, Some(IpAddr::V4(a)), _) => fnv1a(&a.octets()),
                    (Algorithm::Source, Some(IpAddr::V6(a)), _) => fnv1a(&a.octets()),
                    (Algorithm::Uri, _, Some(path)) => fnv1a(path.as_bytes()),
                    _ => 0,
                };
                weighted_slot(&eligible, &weight, hash)
            }
            Algorithm::Random => {
                let mut next = || {
                    // xorshift64*: a cheap generator; quality is ample for picking two servers.
                    self.seed ^= self.seed >> 12;
                    self.seed ^= self.seed << 25;
                    self.seed ^= self.seed >> 27;
                    self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15) | 1;
                    self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
                };
                let a = eligible[(next() % eligible.len() as u64) as usize];
                let b = eligible[(next() % eligible.len() as u64) as usize];
                if i64::from(servers[a].active) * weight(b)
                    <= i64::from(servers[b].active) * weight(a)
                {
                    a
                } else {
                    b
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(weight: u32) -> Candidate {
        Candidate {
            weight,
            up: true,
            backup: false,
            active: 0,
            maxconn: 0,
        }
    }

    fn tally(algorithm: Algorithm, servers: &[Candidate], rounds: usize) -> Vec<usize> {
        let mut balancer = Balancer::default();
        let mut counts = vec![0; servers.len()];
        for _ in 0..rounds {
            counts[balancer
                .choose(algorithm, servers, Key::default())
                .expect("a server")] += 1;
        }
        counts
    }

    #[test]
    fn roundrobin_is_weighted_and_smooth() {
        let servers = [server(5), server(1), server(1)];
        let mut balancer = Balancer::default();
        let sequence: Vec<usize> = (0..7)
            .map(|_| {
                balancer
                    .choose(Algorithm::RoundRobin, &servers, Key::default())
                    .unwrap()
            })
            .collect();
        // nginx's smooth weighted round robin for weights 5, 1, 1.
        assert_eq!(sequence, vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(
            tally(Algorithm::RoundRobin, &servers, 700),
            vec![500, 100, 100]
        );
        assert_eq!(
            tally(Algorithm::StaticRr, &servers, 700),
            vec![500, 100, 100]
        );
    }

    #[test]
    fn down_servers_and_backups() {
        let mut servers = [
            server(1),
            server(1),
            Candidate {
                backup: true,
                ..server(1)
            },
            Candidate {
                backup: true,
                ..server(1)
            },
        ];
        servers[0].up = false;
        assert_eq!(
            tally(Algorithm::RoundRobin, &servers, 10),
            vec![0, 10, 0, 0],
            "backups idle while a primary is up"
        );
        servers[1].up = false;
        assert_eq!(
            tally(Algorithm::RoundRobin, &servers, 10),
            vec![0, 0, 10, 0],
            "the first backup takes over"
        );
        servers[2].up = false;
        servers[3].up = false;
        assert_eq!(
            Balancer::default().choose(Algorithm::RoundRobin, &servers, Key::default()),
            None,
            "none: 503"
        );
    }

    #[test]
    fn leastconn_prefers_the_least_loaded_by_weight() {
        let servers = [
            Candidate {
                active: 4,
                ..server(1)
            },
            Candidate {
                active: 4,
                ..server(2)
            },
            Candidate {
                active: 3,
                ..server(1)
            },
        ];
        // 4/1, 4/2 = 2, 3/1: the second.
        assert_eq!(
            Balancer::default().choose(Algorithm::LeastConn, &servers, Key::default()),
            Some(1)
        );
    }

    #[test]
    fn maxconn_and_first() {
        let servers = [
            Candidate {
                active: 2,
                maxconn: 2,
                ..server(1)
            },
            server(1),
            server(1),
        ];
        assert_eq!(
            Balancer::default().choose(Algorithm::First, &servers, Key::default()),
            Some(1),
            "the first with room"
        );
    }

    #[test]
    fn hashes_are_stable_per_key() {
        let servers = [server(1), server(1), server(1)];
        let mut balancer = Balancer::default();
        let src = Some("192.0.2.7".parse().unwrap());
        let first = balancer.choose(Algorithm::Source, &servers, Key { src, path: None });
        for _ in 0..10 {
            assert_eq!(
                balancer.choose(Algorithm::Source, &servers, Key { src, path: None }),
                first
            );
        }
        let spread: std::collections::HashSet<_> = (0..50)
            .map(|i| {
                let path = format!("/item/{i}");
                balancer.choose(
                    Algorithm::Uri,
                    &servers,
                    Key {
                        src: None,
                        path: Some(&path),
                    },
                )
            })
            .collect();
        assert_eq!(spread.len(), 3, "uri hashing uses every server");
    }

    #[test]
    fn random_uses_every_server() {
        let counts = tally(Algorithm::Random, &[server(1), server(1), server(1)], 300);
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}
