//! Choosing a server in a backend, HAProxy's `balance` algorithms: `roundrobin` (smooth
//! weighted), `static-rr`, `leastconn`, `first`, the hashes `source`, `uri`, `url_param` and
//! `hdr` (with `hash-type map-based` or `consistent`), `random` (two random choices, the less
//! loaded wins). Only servers that are up count; `backup` servers only when no primary is up
//! (HAProxy without `allbackups`: the first backup).

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
    /// Hash of the request URI (see [`UriHash`]).
    Uri,
    /// Hash of a query parameter's value; round robin when the request has none.
    UrlParam,
    /// Hash of a header's value; round robin when the request has none.
    Hdr,
    /// Hash of an RDP client's cookie (`Cookie: mstshash=...` in its first packet); round
    /// robin when it sends none (TCP mode).
    RdpCookie,
    /// Two random choices, the less loaded one.
    Random,
}

/// How a hash becomes a server (HAProxy `hash-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashType {
    /// The hash modulo the total weight: even, but most keys move when a server comes or
    /// goes.
    #[default]
    MapBased,
    /// Weighted rendezvous hashing: when a server goes, only its keys move (about 1/N), and
    /// they come back when it returns.
    Consistent,
}

/// Which part of the URI `balance uri` hashes (`uri [whole] [depth N] [len N]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UriHash {
    /// Hash the query string too (default: the path only).
    pub whole: bool,
    /// Only the first `depth` directories (0: all).
    pub depth: usize,
    /// Only the first `len` characters (0: all).
    pub len: usize,
}

impl UriHash {
    /// The part of `path` (and `query`) to hash.
    pub fn select<'a>(&self, path: &'a str, query: Option<&'a str>, whole_uri: &'a str) -> &'a str {
        let mut text = if self.whole && query.is_some() {
            whole_uri
        } else {
            path
        };
        if self.depth > 0 {
            // The n-th slash after the first ends the n-th directory.
            if let Some((end, _)) = text.match_indices('/').nth(self.depth) {
                text = &text[..end];
            }
        }
        if self.len > 0 && text.len() > self.len {
            let mut end = self.len;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text = &text[..end];
        }
        text
    }
}

/// What a hashing algorithm hashes besides the client address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HashInput {
    /// Nothing (the algorithm does not hash a request part).
    #[default]
    None,
    /// Part of the URI.
    Uri(UriHash),
    /// A query parameter's value.
    UrlParam(String),
    /// A header's value.
    Header(hyper::header::HeaderName),
    /// An RDP cookie's value (`rdp-cookie(NAME)`, default `mstshash`).
    RdpCookie(String),
}

/// Parses a `balance` line: the algorithm and what it hashes.
pub fn parse_balance(line: &str) -> Result<(Algorithm, HashInput), String> {
    let mut words = line.split_whitespace();
    let first = words.next().unwrap_or("roundrobin");
    let rest: Vec<&str> = words.collect();
    let simple = |algorithm: Algorithm| {
        if rest.is_empty() {
            Ok((algorithm, HashInput::None))
        } else {
            Err(format!(
                "`{first}` takes no arguments, found `{}`",
                rest.join(" ")
            ))
        }
    };
    match first {
        "roundrobin" => simple(Algorithm::RoundRobin),
        "static-rr" => simple(Algorithm::StaticRr),
        "leastconn" => simple(Algorithm::LeastConn),
        "first" => simple(Algorithm::First),
        "source" => simple(Algorithm::Source),
        "random" => simple(Algorithm::Random),
        "uri" => {
            let mut uri = UriHash::default();
            let mut words = rest.into_iter();
            while let Some(word) = words.next() {
                match word {
                    "whole" => uri.whole = true,
                    "path-only" => uri.whole = false,
                    "depth" | "len" => {
                        let value: usize = words
                            .next()
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| format!("`{word}` needs a number"))?;
                        if word == "depth" {
                            uri.depth = value;
                        } else {
                            uri.len = value;
                        }
                    }
                    other => {
                        return Err(format!(
                            "unknown uri option `{other}` (known: whole, path-only, depth N, len N)"
                        ));
                    }
                }
            }
            Ok((Algorithm::Uri, HashInput::Uri(uri)))
        }
        "rdp-cookie" => Ok((
            Algorithm::RdpCookie,
            HashInput::RdpCookie("mstshash".into()),
        )),
        "url_param" => match rest.as_slice() {
            [name] => Ok((
                Algorithm::UrlParam,
                HashInput::UrlParam((*name).to_string()),
            )),
            _ => Err("`url_param` needs one parameter name".into()),
        },
        other => {
            if let Some(name) = other
                .strip_prefix("rdp-cookie(")
                .and_then(|n| n.strip_suffix(')'))
                .filter(|n| !n.is_empty())
            {
                if !rest.is_empty() {
                    return Err("`rdp-cookie(name)` takes no further arguments".into());
                }
                return Ok((Algorithm::RdpCookie, HashInput::RdpCookie(name.to_string())));
            }
            if let Some(name) = other.strip_prefix("hdr(").and_then(|n| n.strip_suffix(')')) {
                let name = hyper::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("`{name}` is not a header name"))?;
                if !rest.is_empty() {
                    return Err("`hdr(name)` takes no further arguments".into());
                }
                return Ok((Algorithm::Hdr, HashInput::Header(name)));
            }
            Err(format!(
                "expected roundrobin, static-rr, leastconn, first, source, uri, url_param NAME, \
                 hdr(NAME), rdp-cookie(NAME) or random, found `{other}`"
            ))
        }
    }
}

/// The value of cookie `name` in an RDP client's first packet (an X.224 Connection Request
/// whose user data starts `Cookie: NAME=VALUE` and ends at CR LF, as HAProxy reads it).
pub fn rdp_cookie<'a>(first: &'a [u8], name: &str) -> Option<&'a str> {
    let text = first.get(11..)?;
    let rest = text.strip_prefix(b"Cookie: ")?;
    let rest = rest.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    std::str::from_utf8(&rest[..end])
        .ok()
        .filter(|v| !v.is_empty())
}

/// Per-backend state a stateful algorithm keeps between choices.
#[derive(Debug, Clone, Default)]
pub struct Balancer {
    current: Vec<i64>,
    static_position: u64,
    seed: u64,
    hash_type: HashType,
    /// `option allbackups`: with no primary up, every backup serves.
    all_backups: bool,
}

/// What the request contributes to hashing algorithms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Key<'a> {
    /// Client address (`source`).
    pub src: Option<IpAddr>,
    /// The text `uri`, `url_param` and `hdr` hash (`None`: the request has none).
    pub text: Option<&'a str>,
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

/// Weighted rendezvous (highest random weight) hashing: each server scores
/// `-weight / ln(u)` with `u` uniform in (0, 1) from the key and the server; the best score
/// wins. A server's departure moves only the keys it held.
fn rendezvous(eligible: &[usize], weight: &impl Fn(usize) -> i64, hash: u64) -> usize {
    let score = |i: usize| {
        let mut x = hash ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // splitmix64 finaliser: a well-mixed 64-bit value per (key, server).
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -(weight(i) as f64) / u.ln()
    };
    eligible
        .iter()
        .copied()
        .max_by(|&a, &b| score(a).total_cmp(&score(b)))
        .unwrap_or(eligible[0])
}

fn has_room(c: &Candidate) -> bool {
    c.maxconn == 0 || c.active < c.maxconn
}

impl Balancer {
    /// A balancer mapping hashes the `hash_type` way.
    pub fn new(hash_type: HashType) -> Self {
        Balancer {
            hash_type,
            ..Balancer::default()
        }
    }

    /// With `all`, every up backup serves when no primary is up (`option allbackups`).
    pub fn all_backups(mut self, all: bool) -> Self {
        self.all_backups = all;
        self
    }

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
        } else if self.all_backups {
            // `option allbackups`: the backups share the load like primaries.
            (0..servers.len())
                .filter(|&i| {
                    servers[i].up
                        && servers[i].backup
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
            Algorithm::Source
            | Algorithm::Uri
            | Algorithm::UrlParam
            | Algorithm::Hdr
            | Algorithm::RdpCookie => {
                let hash = match (algorithm, key.src, key.text) {
                    (Algorithm::Source, Some(IpAddr::V4(a)), _) => fnv1a(&a.octets()),
                    (Algorithm::Source, Some(IpAddr::V6(a)), _) => fnv1a(&a.octets()),
                    (Algorithm::Uri, _, Some(text)) => fnv1a(text.as_bytes()),
                    (
                        Algorithm::UrlParam | Algorithm::Hdr | Algorithm::RdpCookie,
                        _,
                        Some(text),
                    ) => fnv1a(text.as_bytes()),
                    // Nothing to hash: HAProxy falls back to round robin.
                    (Algorithm::UrlParam | Algorithm::Hdr | Algorithm::RdpCookie, _, None) => {
                        return self.choose(Algorithm::RoundRobin, servers, key);
                    }
                    _ => 0,
                };
                match self.hash_type {
                    HashType::MapBased => weighted_slot(&eligible, &weight, hash),
                    HashType::Consistent => rendezvous(&eligible, &weight, hash),
                }
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
    fn allbackups_spreads_over_every_backup() {
        let servers: Vec<Candidate> = [(false, false), (true, true), (true, true)]
            .iter()
            .map(|&(up, backup)| Candidate {
                weight: 1,
                up,
                backup,
                active: 0,
                maxconn: 0,
            })
            .collect();
        let mut first_only = Balancer::default();
        let mut all = Balancer::default().all_backups(true);
        let picks = |b: &mut Balancer| -> Vec<Option<usize>> {
            (0..4)
                .map(|_| b.choose(Algorithm::RoundRobin, &servers, Key::default()))
                .collect()
        };
        assert_eq!(picks(&mut first_only), vec![Some(1); 4]);
        let spread = picks(&mut all);
        assert_eq!(
            spread.iter().filter(|p| **p == Some(1)).count(),
            2,
            "{spread:?}"
        );
        assert_eq!(
            spread.iter().filter(|p| **p == Some(2)).count(),
            2,
            "{spread:?}"
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
        let first = balancer.choose(Algorithm::Source, &servers, Key { src, text: None });
        for _ in 0..10 {
            assert_eq!(
                balancer.choose(Algorithm::Source, &servers, Key { src, text: None }),
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
                        text: Some(&path),
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

    /// Consistent hashing: removing one of five servers moves exactly the keys it held
    /// (about a fifth) and bringing it back restores every key's server; map-based moves
    /// most keys. Weights still show in the share.
    #[test]
    fn consistent_hashing_moves_only_the_departed_servers_keys() {
        let keys: Vec<String> = (0..5000).map(|i| format!("/user/{i}")).collect();
        let assign = |hash_type: HashType, servers: &[Candidate]| -> Vec<usize> {
            let mut balancer = Balancer::new(hash_type);
            keys.iter()
                .map(|k| {
                    balancer
                        .choose(
                            Algorithm::Uri,
                            servers,
                            Key {
                                src: None,
                                text: Some(k),
                            },
                        )
                        .unwrap()
                })
                .collect()
        };
        let all = [server(1), server(1), server(1), server(1), server(1)];
        let mut without = all;
        without[2].up = false;
        let before = assign(HashType::Consistent, &all);
        let after = assign(HashType::Consistent, &without);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let held = before.iter().filter(|&&s| s == 2).count();
        assert_eq!(moved, held, "only the departed server's keys move");
        assert!(
            (800..1200).contains(&held),
            "{held} of 5000 keys on one of five servers"
        );
        assert_eq!(assign(HashType::Consistent, &all), before, "all come back");
        let map_before = assign(HashType::MapBased, &all);
        let map_after = assign(HashType::MapBased, &without);
        let map_moved = map_before
            .iter()
            .zip(&map_after)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            map_moved > 2 * moved,
            "map-based moved {map_moved}, consistent {moved}"
        );
        let weighted = assign(HashType::Consistent, &[server(3), server(1)]);
        let share = weighted.iter().filter(|&&s| s == 0).count() as f64 / 5000.0;
        assert!((0.72..0.78).contains(&share), "weight 3:1 gave {share}");
    }

    #[test]
    fn url_param_and_header_fall_back_to_round_robin_without_a_value() {
        let servers = [server(1), server(1)];
        let mut balancer = Balancer::default();
        let pick = |b: &mut Balancer, text: Option<&str>| {
            b.choose(Algorithm::UrlParam, &servers, Key { src: None, text })
                .unwrap()
        };
        let fixed = pick(&mut balancer, Some("42"));
        assert!((0..5).all(|_| pick(&mut balancer, Some("42")) == fixed));
        let spread: std::collections::HashSet<usize> =
            (0..4).map(|_| pick(&mut balancer, None)).collect();
        assert_eq!(spread.len(), 2);
    }

    #[test]
    fn balance_lines_parse() {
        assert_eq!(parse_balance("leastconn").unwrap().0, Algorithm::LeastConn);
        assert_eq!(
            parse_balance("uri whole depth 2 len 10").unwrap().1,
            HashInput::Uri(UriHash {
                whole: true,
                depth: 2,
                len: 10
            })
        );
        assert_eq!(
            parse_balance("url_param userid").unwrap().1,
            HashInput::UrlParam("userid".into())
        );
        assert_eq!(parse_balance("hdr(Host)").unwrap().0, Algorithm::Hdr);
        assert!(parse_balance("leastconn now").is_err());
        assert!(parse_balance("url_param").is_err());
        assert!(parse_balance("uri depth").is_err());
        assert!(parse_balance("bogus").is_err());
    }

    #[test]
    fn rdp_cookies_are_read_from_the_connection_request() {
        let mut packet = vec![0x03, 0x00, 0x00, 0x2a, 0x25, 0xe0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(b"Cookie: mstshash=alice\r\n\x01\x00\x08\x00\x03\x00\x00\x00");
        assert_eq!(rdp_cookie(&packet, "mstshash"), Some("alice"));
        assert_eq!(rdp_cookie(&packet, "other"), None);
        assert_eq!(rdp_cookie(&packet[..20], "mstshash"), None, "cut short");
        assert_eq!(
            parse_balance("rdp-cookie(msts)").unwrap().1,
            HashInput::RdpCookie("msts".into())
        );
        assert_eq!(parse_balance("rdp-cookie").unwrap().0, Algorithm::RdpCookie);
    }

    #[test]
    fn uri_hash_options_select_the_hashed_part() {
        let whole = "/a/b/c/d?x=1";
        let pick = |u: UriHash| u.select("/a/b/c/d", Some("x=1"), whole).to_string();
        assert_eq!(pick(UriHash::default()), "/a/b/c/d");
        assert_eq!(
            pick(UriHash {
                whole: true,
                ..UriHash::default()
            }),
            whole
        );
        assert_eq!(
            pick(UriHash {
                depth: 2,
                ..UriHash::default()
            }),
            "/a/b"
        );
        assert_eq!(
            pick(UriHash {
                len: 3,
                ..UriHash::default()
            }),
            "/a/"
        );
    }
}
