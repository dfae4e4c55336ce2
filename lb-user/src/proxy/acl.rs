//! HAProxy ACLs: named tests on a request (`acl is_api path_beg -i /api /v1`) and the
//! conditions that combine them (`use_backend api if is_api !is_admin or is_v2`).
//!
//! Each ACL holds one criterion and any number of patterns; it matches when any pattern
//! matches. A condition is terms joined by `or` / `||`; a term is ACL names (each may be
//! negated with `!`) that must all match.

use std::{collections::HashMap, net::IpAddr};

/// What an ACL looks at, and how it compares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Criterion {
    /// Whole path equals a pattern.
    Path,
    /// Path starts with a pattern.
    PathBeg,
    /// Path ends with a pattern.
    PathEnd,
    /// Path matches a regular expression.
    PathReg,
    /// A pattern is one of the path's `/`-delimited segments (or runs of them).
    PathDir,
    /// A header's value equals a pattern (any occurrence).
    Hdr(String),
    /// A header's value starts with a pattern.
    HdrBeg(String),
    /// A header's value ends with a pattern.
    HdrEnd(String),
    /// A pattern is one of a header's `.`/`:`-delimited components (domain match).
    HdrDom(String),
    /// The method equals a pattern.
    Method,
    /// The client address is in one of the CIDR patterns.
    Src,
    /// The client connection is TLS (`ssl_fc`, no pattern).
    SslFc,
    /// A query-string parameter's value equals a pattern.
    UrlParam(String),
}

/// One `acl` line.
#[derive(Debug, Clone)]
pub struct Acl {
    name: String,
    criterion: Criterion,
    ignore_case: bool,
    patterns: Vec<String>,
    regexes: Vec<regex::Regex>,
    networks: Vec<(IpAddr, u8)>,
}

/// The parts of a request ACLs look at.
#[derive(Debug, Clone, Default)]
pub struct RequestView<'a> {
    /// Method (`GET`).
    pub method: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    /// Query string without `?`.
    pub query: Option<&'a str>,
    /// Headers, names lower-cased.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Client address.
    pub src: Option<IpAddr>,
    /// The client connection is TLS.
    pub tls: bool,
}

/// A bad `acl` or condition, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AclError(pub String);

fn argument(token: &str, prefix: &str) -> Option<String> {
    token
        .strip_prefix(prefix)?
        .strip_prefix('(')?
        .strip_suffix(')')
        .filter(|a| !a.is_empty())
        .map(str::to_ascii_lowercase)
}

impl Acl {
    /// The request header this ACL reads, if it reads one.
    pub fn header(&self) -> Option<&str> {
        match &self.criterion {
            Criterion::Hdr(name)
            | Criterion::HdrBeg(name)
            | Criterion::HdrEnd(name)
            | Criterion::HdrDom(name) => Some(name),
            _ => None,
        }
    }

    /// Parses `name criterion [-i] pattern...` (HAProxy's `acl` line without the keyword).
    pub fn parse(line: &str) -> Result<Acl, AclError> {
        let mut words = line.split_whitespace();
        let name = words
            .next()
            .filter(|n| {
                n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c))
            })
            .ok_or_else(|| {
                AclError(format!(
                    "expected `name criterion [-i] pattern...`, found `{line}`"
                ))
            })?
            .to_string();
        let token = words
            .next()
            .ok_or_else(|| AclError(format!("ACL `{name}` has no criterion")))?;
        let criterion = match token {
            "path" => Criterion::Path,
            "path_beg" => Criterion::PathBeg,
            "path_end" => Criterion::PathEnd,
            "path_reg" => Criterion::PathReg,
            "path_dir" => Criterion::PathDir,
            "method" => Criterion::Method,
            "src" => Criterion::Src,
            "ssl_fc" => Criterion::SslFc,
            t => {
                let arg = |p| argument(t, p);
                if let Some(h) = arg("hdr_beg") {
                    Criterion::HdrBeg(h)
                } else if let Some(h) = arg("hdr_end") {
                    Criterion::HdrEnd(h)
                } else if let Some(h) = arg("hdr_dom") {
                    Criterion::HdrDom(h)
                } else if let Some(h) = arg("hdr") {
                    Criterion::Hdr(h)
                } else if let Some(p) = t
                    .strip_prefix("url_param(")
                    .and_then(|r| r.strip_suffix(')'))
                    .filter(|p| !p.is_empty())
                {
                    Criterion::UrlParam(p.to_string())
                } else {
                    return Err(AclError(format!(
                        "ACL `{name}`: unknown criterion `{t}` (expected path, path_beg, path_end, path_reg, path_dir, \
                         hdr(name), hdr_beg(name), hdr_end(name), hdr_dom(name), method, src, ssl_fc or url_param(name))"
                    )));
                }
            }
        };
        let mut ignore_case = false;
        let mut patterns = Vec::new();
        for word in words {
            match word {
                "-i" if patterns.is_empty() => ignore_case = true,
                _ => patterns.push(if ignore_case {
                    word.to_ascii_lowercase()
                } else {
                    word.to_string()
                }),
            }
        }
        if criterion == Criterion::SslFc {
            if !patterns.is_empty() {
                return Err(AclError(format!("ACL `{name}`: ssl_fc takes no pattern")));
            }
        } else if patterns.is_empty() {
            return Err(AclError(format!("ACL `{name}` has no pattern")));
        }
        let mut acl = Acl {
            name,
            criterion,
            ignore_case,
            patterns,
            regexes: Vec::new(),
            networks: Vec::new(),
        };
        match acl.criterion {
            Criterion::PathReg => {
                for p in &acl.patterns {
                    let source = if acl.ignore_case {
                        format!("(?i){p}")
                    } else {
                        p.clone()
                    };
                    acl.regexes.push(regex::Regex::new(&source).map_err(|e| {
                        AclError(format!("ACL `{}`: bad regex `{p}`: {e}", acl.name))
                    })?);
                }
            }
            Criterion::Src => {
                for p in &acl.patterns {
                    let (addr, len) = match p.split_once('/') {
                        Some((a, l)) => (a.parse::<IpAddr>().ok(), l.parse::<u8>().ok()),
                        None => (p.parse::<IpAddr>().ok(), None),
                    };
                    let addr = addr.ok_or_else(|| {
                        AclError(format!(
                            "ACL `{}`: `{p}` is not an address or CIDR",
                            acl.name
                        ))
                    })?;
                    let max = if addr.is_ipv4() { 32 } else { 128 };
                    let len = len.unwrap_or(max);
                    if len > max {
                        return Err(AclError(format!(
                            "ACL `{}`: prefix length in `{p}` is too long",
                            acl.name
                        )));
                    }
                    acl.networks.push((addr, len));
                }
            }
            _ => {}
        }
        Ok(acl)
    }

    /// The ACL's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn fold<'s>(&self, sample: &'s str) -> std::borrow::Cow<'s, str> {
        if self.ignore_case {
            sample.to_ascii_lowercase().into()
        } else {
            sample.into()
        }
    }

    fn any_header(
        &self,
        request: &RequestView<'_>,
        name: &str,
        test: impl Fn(&str, &str) -> bool,
    ) -> bool {
        request
            .headers
            .iter()
            .filter(|(n, _)| *n == name)
            .any(|(_, value)| {
                let value = self.fold(value.trim());
                self.patterns.iter().any(|p| test(&value, p))
            })
    }

    /// Does the request match?
    pub fn matches(&self, request: &RequestView<'_>) -> bool {
        let path = self.fold(request.path);
        match &self.criterion {
            Criterion::Path => self.patterns.iter().any(|p| *path == **p),
            Criterion::PathBeg => self.patterns.iter().any(|p| path.starts_with(p.as_str())),
            Criterion::PathEnd => self.patterns.iter().any(|p| path.ends_with(p.as_str())),
            Criterion::PathReg => self.regexes.iter().any(|r| r.is_match(request.path)),
            Criterion::PathDir => self.patterns.iter().any(|p| delimited(&path, p, &['/'])),
            Criterion::Method => {
                let method = self.fold(request.method);
                self.patterns.iter().any(|p| *method == **p)
            }
            Criterion::Hdr(h) => self.any_header(request, h, |v, p| v == p),
            Criterion::HdrBeg(h) => self.any_header(request, h, |v, p| v.starts_with(p)),
            Criterion::HdrEnd(h) => self.any_header(request, h, |v, p| v.ends_with(p)),
            Criterion::HdrDom(h) => {
                self.any_header(request, h, |v, p| delimited(v, p, &['.', ':']))
            }
            Criterion::SslFc => request.tls,
            Criterion::Src => request.src.is_some_and(|src| {
                self.networks
                    .iter()
                    .any(|(net, len)| in_network(src, *net, *len))
            }),
            Criterion::UrlParam(name) => request.query.is_some_and(|query| {
                query_params(query)
                    .filter(|(k, _)| k == name)
                    .any(|(_, v)| {
                        let v = self.fold(v);
                        self.patterns.iter().any(|p| *v == **p)
                    })
            }),
        }
    }
}

/// True if `pattern` occurs in `sample` bounded on both sides by a delimiter or an end
/// (HAProxy's `_dir` and `_dom` matching).
fn delimited(sample: &str, pattern: &str, delimiters: &[char]) -> bool {
    let pattern = pattern.trim_matches(|c| delimiters.contains(&c));
    if pattern.is_empty() {
        return false;
    }
    let mut start = 0;
    while let Some(found) = sample[start..].find(pattern) {
        let at = start + found;
        let end = at + pattern.len();
        let before = sample[..at]
            .chars()
            .next_back()
            .is_none_or(|c| delimiters.contains(&c));
        let after = sample[end..]
            .chars()
            .next()
            .is_none_or(|c| delimiters.contains(&c) || c == '?');
        if before && after {
            return true;
        }
        start = at + 1;
        if start >= sample.len() {
            return false;
        }
    }
    false
}

/// The `name=value` pairs of a query string (a name alone has an empty value).
pub fn query_params(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// True if `addr` is inside `net`/`len`.
pub fn in_network(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            a.to_bits() & mask == n.to_bits() & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            a.to_bits() & mask == n.to_bits() & mask
        }
        _ => false,
    }
}

/// A condition: `if` or `unless`, then terms joined by `or`.
#[derive(Debug, Clone)]
pub struct Condition {
    negate: bool,
    /// Each term: (ACL index, negated) that must all hold.
    terms: Vec<Vec<(usize, bool)>>,
}

impl Condition {
    /// Parses `if a !b or c` / `unless a` against the known `acls`.
    pub fn parse(text: &str, acls: &[Acl]) -> Result<Condition, AclError> {
        let mut words = text.split_whitespace();
        let negate = match words.next() {
            Some("if") => false,
            Some("unless") => true,
            _ => {
                return Err(AclError(format!(
                    "expected `if` or `unless`, found `{text}`"
                )));
            }
        };
        let mut terms = vec![Vec::new()];
        for word in words {
            if word == "or" || word == "||" {
                terms.push(Vec::new());
                continue;
            }
            let (negated, name) = match word.strip_prefix('!') {
                Some(name) => (true, name),
                None => (false, word),
            };
            let index = acls
                .iter()
                .position(|a| a.name == name)
                .ok_or_else(|| AclError(format!("unknown ACL `{name}` in `{text}`")))?;
            terms
                .last_mut()
                .expect("at least one term")
                .push((index, negated));
        }
        if terms.iter().any(Vec::is_empty) {
            return Err(AclError(format!("empty term in `{text}`")));
        }
        Ok(Condition { negate, terms })
    }

    /// Evaluates the condition for `request`.
    pub fn holds(&self, acls: &[Acl], request: &RequestView<'_>) -> bool {
        let mut cache: HashMap<usize, bool> = HashMap::new();
        let mut test = |index: usize| {
            *cache
                .entry(index)
                .or_insert_with(|| acls[index].matches(request))
        };
        let any = self
            .terms
            .iter()
            .any(|term| term.iter().all(|(index, negated)| test(*index) != *negated));
        any != self.negate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        method: &'a str,
        target: &'a str,
        headers: Vec<(&'a str, &'a str)>,
    ) -> RequestView<'a> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        RequestView {
            method,
            path,
            query,
            headers,
            src: Some("192.0.2.7".parse().unwrap()),
            tls: false,
        }
    }

    fn acl(line: &str) -> Acl {
        Acl::parse(line).expect("valid ACL")
    }

    #[test]
    fn path_criteria() {
        let r = request("GET", "/api/v1/users.json?id=7", vec![]);
        assert!(acl("a path /api/v1/users.json").matches(&r));
        assert!(!acl("a path /api").matches(&r));
        assert!(acl("a path_beg /static /api").matches(&r), "any pattern");
        assert!(acl("a path_end .json").matches(&r));
        assert!(acl("a path_reg ^/api/v[0-9]+/").matches(&r));
        assert!(acl("a path_dir v1").matches(&r));
        assert!(
            !acl("a path_dir v").matches(&r),
            "a segment, not a substring"
        );
        assert!(acl("a path_beg -i /API").matches(&r), "-i folds case");
        assert!(!acl("a path_beg /API").matches(&r));
    }

    #[test]
    fn header_criteria() {
        let r = request(
            "GET",
            "/",
            vec![("host", "www.Example.com:8080"), ("x-env", "staging")],
        );
        assert!(acl("a hdr(x-env) staging").matches(&r));
        assert!(acl("a hdr_beg(host) -i www.").matches(&r));
        assert!(acl("a hdr_end(host) :8080").matches(&r));
        assert!(acl("a hdr_dom(host) -i example.com").matches(&r));
        assert!(
            !acl("a hdr_dom(host) -i ample.com").matches(&r),
            "whole domain components only"
        );
        assert!(!acl("a hdr(x-missing) x").matches(&r));
    }

    #[test]
    fn method_src_and_url_param() {
        let r = request("POST", "/login?user=bob&debug", vec![]);
        assert!(acl("a method POST PUT").matches(&r));
        assert!(!acl("a method GET").matches(&r));
        assert!(acl("a src 10.0.0.0/8 192.0.2.0/24").matches(&r));
        assert!(!acl("a src 198.51.100.0/24").matches(&r));
        assert!(acl("a url_param(user) bob").matches(&r));
        assert!(!acl("a url_param(user) alice").matches(&r));
    }

    #[test]
    fn bad_acls_say_what_was_expected() {
        assert!(
            Acl::parse("a path_bgn /x")
                .unwrap_err()
                .0
                .contains("unknown criterion `path_bgn`")
        );
        assert!(
            Acl::parse("a path_beg")
                .unwrap_err()
                .0
                .contains("no pattern")
        );
        assert!(
            Acl::parse("a path_reg (")
                .unwrap_err()
                .0
                .contains("bad regex")
        );
        assert!(
            Acl::parse("a src 10.0.0.0/33")
                .unwrap_err()
                .0
                .contains("too long")
        );
    }

    #[test]
    fn conditions_and_or_not_unless() {
        let acls = vec![
            acl("api path_beg /api"),
            acl("admin path_beg /api/admin"),
            acl("local src 192.0.2.0/24"),
        ];
        let api = request("GET", "/api/users", vec![]);
        let admin = request("GET", "/api/admin/x", vec![]);
        let holds = |text: &str, r: &RequestView<'_>| {
            Condition::parse(text, &acls)
                .expect("valid")
                .holds(&acls, r)
        };
        assert!(holds("if api !admin", &api));
        assert!(!holds("if api !admin", &admin));
        assert!(holds("if admin or local", &api), "local matches");
        assert!(holds("unless admin", &api));
        assert!(
            Condition::parse("if nope", &acls)
                .unwrap_err()
                .0
                .contains("unknown ACL `nope`")
        );
        assert!(Condition::parse("when api", &acls).is_err());
    }
}
