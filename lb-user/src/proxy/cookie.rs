//! Persistence: HAProxy's `cookie NAME insert | rewrite | prefix` (the proxy's own cookie
//! names the server) and learning an application's session cookie (`JSESSIONID`) from
//! responses so later requests carrying it go to the server that issued it.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How the persistence cookie is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// The proxy adds its own cookie to responses.
    Insert,
    /// The server sets the cookie; the proxy replaces its value with the server's.
    Rewrite,
    /// The server sets the cookie; the proxy puts the server's value and `~` before it.
    Prefix,
}

/// A backend's `cookie` line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSpec {
    /// Cookie name.
    pub name: String,
    /// How it is made.
    pub mode: CookieMode,
    /// Insert mode: not passed to the server, and not set again while it is right.
    pub indirect: bool,
    /// Responses that set the cookie are marked non-cacheable (`Cache-Control: private`).
    pub nocache: bool,
    /// `HttpOnly` attribute.
    pub httponly: bool,
    /// `Secure` attribute.
    pub secure: bool,
    /// `Domain` attribute.
    pub domain: Option<String>,
    /// A cookie not seen for this long is ignored (insert mode).
    pub maxidle: Option<Duration>,
    /// A cookie first set this long ago is ignored (insert mode).
    pub maxlife: Option<Duration>,
}

impl CookieSpec {
    /// Parses HAProxy's `cookie` arguments: `"SERVERID insert indirect nocache httponly"`.
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let name = words
            .next()
            .ok_or_else(|| "expected a cookie name".to_string())?;
        if !name.bytes().all(is_token_byte) {
            return Err(format!("`{name}` is not a valid cookie name"));
        }
        let mut spec = CookieSpec {
            name: name.to_string(),
            mode: CookieMode::Insert,
            indirect: false,
            nocache: false,
            httponly: false,
            secure: false,
            domain: None,
            maxidle: None,
            maxlife: None,
        };
        let mut mode = None;
        while let Some(word) = words.next() {
            let mut value = |what: &str| {
                words
                    .next()
                    .ok_or_else(|| format!("`{word}` needs a {what}"))
            };
            match word {
                "insert" | "rewrite" | "prefix" => {
                    if mode.is_some() {
                        return Err("choose one of insert, rewrite and prefix".into());
                    }
                    mode = Some(match word {
                        "insert" => CookieMode::Insert,
                        "rewrite" => CookieMode::Rewrite,
                        _ => CookieMode::Prefix,
                    });
                }
                "indirect" => spec.indirect = true,
                "nocache" => spec.nocache = true,
                "httponly" => spec.httponly = true,
                "secure" => spec.secure = true,
                "domain" => spec.domain = Some(value("domain")?.to_string()),
                "maxidle" | "maxlife" => {
                    let text = value("duration")?;
                    let duration = crate::config::parse_duration(text)
                        .map_err(|e| format!("`{word}`: {e}"))?;
                    if word == "maxidle" {
                        spec.maxidle = Some(duration);
                    } else {
                        spec.maxlife = Some(duration);
                    }
                }
                other => {
                    return Err(format!(
                        "unknown cookie option `{other}` (known: insert, rewrite, prefix, \
                         indirect, nocache, httponly, secure, domain, maxidle, maxlife)"
                    ));
                }
            }
        }
        spec.mode = mode.unwrap_or(CookieMode::Insert);
        if spec.mode != CookieMode::Insert && (spec.maxidle.is_some() || spec.maxlife.is_some()) {
            return Err("maxidle and maxlife need insert mode".into());
        }
        Ok(spec)
    }

    /// The server value a request's cookies point to, if any and still valid.
    pub fn server_value<'a>(&self, cookies: &[(&str, &'a str)], now: u64) -> Option<&'a str> {
        let value = cookies
            .iter()
            .find(|(name, _)| *name == self.name)
            .map(|(_, v)| *v)?;
        match self.mode {
            CookieMode::Insert => {
                let mut parts = value.split('|');
                let server = parts.next()?;
                let last: Option<u64> = parts.next().and_then(|t| t.parse().ok());
                let first: Option<u64> = parts.next().and_then(|t| t.parse().ok());
                let expired = |limit: Option<Duration>, since: Option<u64>| match limit {
                    Some(limit) => since.is_none_or(|t| now.saturating_sub(t) > limit.as_secs()),
                    None => false,
                };
                if expired(self.maxidle, last) || expired(self.maxlife, first) {
                    return None;
                }
                Some(server)
            }
            CookieMode::Rewrite => Some(value),
            CookieMode::Prefix => value.split_once('~').map(|(server, _)| server),
        }
    }

    /// The `Set-Cookie` value that pins the client to `server` (insert mode); `first` is
    /// when the client first got it (for maxlife).
    pub fn insert_value(&self, server: &str, now: u64, first: Option<u64>) -> String {
        let mut value = format!("{}={server}", self.name);
        if self.maxidle.is_some() || self.maxlife.is_some() {
            value.push_str(&format!("|{now}|{}", first.unwrap_or(now)));
        }
        value.push_str("; path=/");
        if let Some(domain) = &self.domain {
            value.push_str(&format!("; domain={domain}"));
        }
        if self.httponly {
            value.push_str("; HttpOnly");
        }
        if self.secure {
            value.push_str("; Secure");
        }
        value
    }

    /// True if an insert-mode cookie must be set again so its idle date stays fresh.
    pub fn needs_refresh(&self, cookies: &[(&str, &str)], now: u64) -> bool {
        let Some(maxidle) = self.maxidle else {
            return false;
        };
        let last = cookies
            .iter()
            .find(|(name, _)| *name == self.name)
            .and_then(|(_, v)| v.split('|').nth(1))
            .and_then(|t| t.parse::<u64>().ok());
        last.is_none_or(|t| now.saturating_sub(t) >= (maxidle.as_secs() / 4).max(1))
    }

    /// The date the client's cookie was first set, to carry it over when refreshing.
    pub fn first_seen(&self, cookies: &[(&str, &str)]) -> Option<u64> {
        cookies
            .iter()
            .find(|(name, _)| *name == self.name)
            .and_then(|(_, v)| v.split('|').nth(2))
            .and_then(|t| t.parse().ok())
    }

    /// A server's `Set-Cookie` value rewritten for rewrite and prefix modes, or `None` when
    /// it is about another cookie.
    pub fn rewrite_set_cookie(&self, set_cookie: &str, server: &str) -> Option<String> {
        let (pair, attributes) = match set_cookie.split_once(';') {
            Some((pair, rest)) => (pair, Some(rest)),
            None => (set_cookie, None),
        };
        let (name, value) = pair.split_once('=')?;
        if name.trim() != self.name {
            return None;
        }
        let value = match self.mode {
            CookieMode::Insert => return None,
            CookieMode::Rewrite => server.to_string(),
            CookieMode::Prefix => format!("{server}~{}", value.trim()),
        };
        let mut out = format!("{}={value}", self.name);
        if let Some(attributes) = attributes {
            out.push(';');
            out.push_str(attributes);
        }
        Some(out)
    }
}

/// Seconds since the epoch (cookie dates).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The `name=value` pairs of `Cookie` header values (RFC 6265 section 4.2.1).
pub fn parse_cookies<'a>(headers: impl Iterator<Item = &'a str>) -> Vec<(&'a str, &'a str)> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim(), value.trim()))
        })
        .collect()
}

/// A `Cookie` header value without the cookie `name` (insert indirect), or with the
/// `server~` prefix taken off its value (prefix mode); `None` if nothing is left.
pub fn strip_cookie(header: &str, name: &str, prefix: bool) -> Option<String> {
    let kept: Vec<String> = header
        .split(';')
        .filter_map(|pair| {
            let trimmed = pair.trim();
            let (n, v) = trimmed.split_once('=').unwrap_or((trimmed, ""));
            if n != name {
                return Some(trimmed.to_string());
            }
            if prefix {
                v.split_once('~').map(|(_, rest)| format!("{n}={rest}"))
            } else {
                None
            }
        })
        .filter(|p| !p.is_empty())
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Application sessions learnt from responses: session cookie value -> server index, at
/// most `capacity` entries, each forgotten `expire` after it was last used.
pub struct SessionTable {
    /// Name of the application's session cookie.
    pub cookie: String,
    capacity: usize,
    expire: Duration,
    inner: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    servers: HashMap<String, (usize, Instant)>,
    /// Insertion order, oldest first, for eviction when full.
    order: VecDeque<String>,
}

impl SessionTable {
    /// An empty table.
    pub fn new(cookie: String, capacity: usize, expire: Duration) -> Self {
        SessionTable {
            cookie,
            capacity: capacity.max(1),
            expire,
            inner: Mutex::default(),
        }
    }

    /// The server that issued `session`, if known and not expired.
    pub fn lookup(&self, session: &str, now: Instant) -> Option<usize> {
        let mut inner = self.inner.lock().ok()?;
        let (server, seen) = inner.servers.get_mut(session)?;
        if now.duration_since(*seen) > self.expire {
            inner.servers.remove(session);
            return None;
        }
        *seen = now;
        Some(*server)
    }

    /// Remembers that `server` issued `session`.
    pub fn learn(&self, session: &str, server: usize, now: Instant) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner
            .servers
            .insert(session.to_string(), (server, now))
            .is_none()
        {
            inner.order.push_back(session.to_string());
        }
        while inner.servers.len() > self.capacity {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.servers.remove(&oldest);
        }
        // Keep the order queue from growing with entries that expired on lookup.
        if inner.order.len() > 2 * self.capacity {
            let Sessions { servers, order } = &mut *inner;
            order.retain(|s| servers.contains_key(s));
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.servers.len())
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_haproxy_cookie_lines() {
        let spec = CookieSpec::parse("SERVERID insert indirect nocache httponly secure").unwrap();
        assert_eq!(spec.name, "SERVERID");
        assert_eq!(spec.mode, CookieMode::Insert);
        assert!(spec.indirect && spec.nocache && spec.httponly && spec.secure);
        assert_eq!(
            CookieSpec::parse("JSESSIONID prefix").unwrap().mode,
            CookieMode::Prefix
        );
        assert!(CookieSpec::parse("A insert rewrite").is_err());
        assert!(CookieSpec::parse("A insert bogus").is_err());
        assert!(CookieSpec::parse("A prefix maxidle 30m").is_err());
        assert!(CookieSpec::parse("").is_err());
        assert!(CookieSpec::parse("A;B insert").is_err());
    }

    #[test]
    fn insert_cookie_round_trips_and_expires() {
        let spec = CookieSpec::parse("SRV insert httponly maxidle 60s maxlife 1h").unwrap();
        let set = spec.insert_value("s2", 1000, None);
        assert_eq!(set, "SRV=s2|1000|1000; path=/; HttpOnly");
        let pair = set.split(';').next().unwrap();
        let cookies = parse_cookies([pair, "other=1"].into_iter());
        assert_eq!(spec.server_value(&cookies, 1030), Some("s2"));
        assert!(!spec.needs_refresh(&cookies, 1010));
        assert!(spec.needs_refresh(&cookies, 1020));
        // Idle past maxidle, or older than maxlife even when refreshed: ignored.
        assert_eq!(spec.server_value(&cookies, 1061), None);
        // Refreshed cookies keep their first date: fine while young, ignored past maxlife.
        let refresh = |at: u64| {
            let set = spec.insert_value("s2", at, spec.first_seen(&cookies));
            set.split(';').next().unwrap().to_string()
        };
        let young = refresh(2000);
        assert_eq!(
            spec.server_value(&parse_cookies([young.as_str()].into_iter()), 2010),
            Some("s2")
        );
        let old = refresh(4650);
        assert_eq!(
            spec.server_value(&parse_cookies([old.as_str()].into_iter()), 4660),
            None
        );
        let plain = CookieSpec::parse("SRV insert").unwrap();
        assert_eq!(plain.insert_value("s1", 5, None), "SRV=s1; path=/");
        assert_eq!(
            plain.server_value(&parse_cookies(["SRV=s1"].into_iter()), 1 << 40),
            Some("s1")
        );
    }

    #[test]
    fn rewrite_and_prefix_modes_change_the_servers_cookie() {
        let rewrite = CookieSpec::parse("SID rewrite").unwrap();
        assert_eq!(
            rewrite.rewrite_set_cookie("SID=abc; Path=/; HttpOnly", "s1"),
            Some("SID=s1; Path=/; HttpOnly".into())
        );
        assert_eq!(rewrite.rewrite_set_cookie("OTHER=abc", "s1"), None);
        let prefix = CookieSpec::parse("JSESSIONID prefix").unwrap();
        assert_eq!(
            prefix.rewrite_set_cookie("JSESSIONID=abc123", "s2"),
            Some("JSESSIONID=s2~abc123".into())
        );
        let cookies = parse_cookies(["JSESSIONID=s2~abc123; x=y"].into_iter());
        assert_eq!(prefix.server_value(&cookies, 0), Some("s2"));
        assert_eq!(
            strip_cookie("x=y; JSESSIONID=s2~abc123", "JSESSIONID", true),
            Some("x=y; JSESSIONID=abc123".into())
        );
        assert_eq!(
            strip_cookie("SRV=s1; lang=en", "SRV", false),
            Some("lang=en".into())
        );
        assert_eq!(strip_cookie("SRV=s1", "SRV", false), None);
    }

    #[test]
    fn session_table_is_bounded_and_expires() {
        let table = SessionTable::new("JSESSIONID".into(), 2, Duration::from_secs(10));
        let t0 = Instant::now();
        table.learn("a", 0, t0);
        table.learn("b", 1, t0);
        table.learn("c", 2, t0);
        assert_eq!(table.len(), 2, "bounded");
        assert_eq!(table.lookup("a", t0), None, "oldest evicted");
        assert_eq!(table.lookup("c", t0), Some(2));
        assert_eq!(
            table.lookup("b", t0 + Duration::from_secs(11)),
            None,
            "expired"
        );
        assert_eq!(table.lookup("c", t0 + Duration::from_secs(9)), Some(2));
        assert_eq!(
            table.lookup("c", t0 + Duration::from_secs(18)),
            Some(2),
            "a lookup renews the entry"
        );
    }
}
