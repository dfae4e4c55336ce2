//! Checks of the L7 sections: `[defaults]`, `[[frontend]]`, `[[backend]]` and `[[listen]]`
//! (split into a frontend and a backend of the same name). Values a section does not set
//! come from `[defaults]`, then from HAProxy's own defaults. ACLs, header rules, cookie
//! lines and error files are compiled here, once.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use toml::Spanned;

use super::{
    model::{Backend, Config, Frontend, ProxyDefaults, Timeouts},
    validate::{CheckSpec, Failure, duration_of, fail, validate_check},
};
use crate::proxy::{
    acl::{Acl, Condition},
    balance::{Algorithm, HashInput, HashType, parse_balance},
    cookie::CookieSpec,
    rewrite::HeaderRule,
};

/// HAProxy's `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1 proxying with everything HTTP (the default).
    Http,
    /// Byte streams copied both ways, no HTTP.
    Tcp,
}

fn mode_of(
    own: &Option<Spanned<String>>,
    inherited: &Option<Spanned<String>>,
) -> Result<Mode, Failure> {
    match own.as_ref().or(inherited.as_ref()) {
        None => Ok(Mode::Http),
        Some(value) => match value.get_ref().as_str() {
            "http" => Ok(Mode::Http),
            "tcp" => Ok(Mode::Tcp),
            other => fail(
                value.span(),
                format!("expected http or tcp, found `{other}`"),
            ),
        },
    }
}

/// How connections are kept (HAProxy `option http-keep-alive` / `http-server-close` /
/// `httpclose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// Keep-alive on both sides; server connections are reused (the default).
    KeepAlive,
    /// Keep-alive with clients; a server connection per request.
    ServerClose,
    /// One request per connection on both sides.
    Close,
}

/// `option forwardfor [except NET] [header NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwardfor {
    /// Header to add (default `X-Forwarded-For`).
    pub header: HeaderName,
    /// Clients in this network get no header.
    pub except: Option<(std::net::IpAddr, u8)>,
}

/// The `option` lines in force for a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyOptions {
    /// Add the client address header.
    pub forwardfor: Option<Forwardfor>,
    /// Connection handling.
    pub connection: ConnectionMode,
    /// On the last connection retry, try another server.
    pub redispatch: bool,
    /// No log line for connections that sent nothing.
    pub dontlognull: bool,
    /// When no primary server is up, every backup serves (else only the first).
    pub allbackups: bool,
    /// A cookie's server that its checks call down still gets the cookie's requests.
    pub persist: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            forwardfor: None,
            connection: ConnectionMode::KeepAlive,
            redispatch: false,
            dontlognull: false,
            allbackups: false,
            persist: false,
        }
    }
}

/// A raw HTTP error response from an `errorfile`, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPage {
    /// Status code.
    pub status: u16,
    /// Headers, in file order.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// Nowhere.
    None,
    /// Appended to a file.
    File(std::path::PathBuf),
    /// A local syslog socket (RFC 3164 lines, facility local0).
    Syslog(std::path::PathBuf),
}

/// A `bind` line: `"ADDR:PORT"` or `"ADDR:PORT ssl crt FILE [crt FILE ...]"`.
#[derive(Debug, Clone)]
pub struct Bind {
    /// Address and port.
    pub addr: SocketAddr,
    /// TLS termination, when `ssl`.
    pub tls: Option<crate::proxy::tls::TlsSettings>,
    /// HTTP/2 accepted too (`proto h2`: h2c with prior knowledge on a plain bind; TLS binds
    /// always offer h2 through ALPN).
    pub h2: bool,
}

fn parse_bind(text: &str) -> Result<Bind, String> {
    let mut words = text.split_whitespace();
    let addr_text = words.next().unwrap_or_default();
    let addr: SocketAddr = addr_text
        .parse()
        .map_err(|_| format!("expected \"address:port [ssl crt FILE]\", found `{text}`"))?;
    let mut ssl = false;
    let mut h2 = false;
    let mut files = Vec::new();
    while let Some(option) = words.next() {
        match option {
            "ssl" => ssl = true,
            "crt" => files.push(words.next().ok_or("`crt` needs a file")?.to_string()),
            "proto" => match words.next() {
                Some("h2") => h2 = true,
                other => {
                    return Err(format!(
                        "expected `proto h2`, found `proto {}`",
                        other.unwrap_or("")
                    ));
                }
            },
            other => {
                return Err(format!(
                    "unknown bind option `{other}` (known: ssl, crt FILE, proto h2)"
                ));
            }
        }
    }
    if !ssl && !files.is_empty() {
        return Err("`crt` goes with `ssl`".into());
    }
    let tls = if ssl {
        Some(crate::proxy::tls::TlsSettings::load(&files)?)
    } else {
        None
    };
    Ok(Bind { addr, tls, h2 })
}

/// A checked frontend.
#[derive(Debug, Clone)]
pub struct FrontendSpec {
    /// Name.
    pub name: String,
    /// HTTP or TCP.
    pub mode: Mode,
    /// Listen addresses, some with TLS.
    pub bind: Vec<Bind>,
    /// ACLs.
    pub acls: Vec<Acl>,
    /// Rules: (backend index, condition).
    pub rules: Vec<(usize, Condition)>,
    /// Default backend index.
    pub default_backend: Option<usize>,
    /// Options in force.
    pub options: ProxyOptions,
    /// Client inactivity timeout.
    pub timeout_client: Duration,
    /// Time to receive a request head.
    pub timeout_http_request: Duration,
    /// Time to wait for the next request on a kept-alive connection.
    pub timeout_http_keep_alive: Duration,
    /// Request header rules.
    pub request_rules: Vec<HeaderRule>,
    /// Response header rules.
    pub response_rules: Vec<HeaderRule>,
    /// Concurrent client connections (0: no limit).
    pub maxconn: u32,
    /// Error pages by status.
    pub errorfiles: BTreeMap<u16, ErrorPage>,
    /// Access log target.
    pub log: LogTarget,
    /// Path answered 200 by the proxy itself (`monitor-uri`).
    pub monitor_uri: Option<String>,
    /// Bounds on request heads.
    pub limits: HeadLimits,
}

/// Bounds on a request head (HAProxy's `tune.bufsize` and `tune.http.maxhdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head, request line and final blank line included, bytes.
    pub max_header_size: usize,
    /// Most header fields in a head (and trailer fields after a chunked body).
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_header_size: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// A checked backend.
#[derive(Debug, Clone)]
pub struct BackendSpec {
    /// Name.
    pub name: String,
    /// HTTP or TCP.
    pub mode: Mode,
    /// Algorithm.
    pub balance: Algorithm,
    /// What a hashing algorithm hashes.
    pub hash_input: HashInput,
    /// How hashes map to servers.
    pub hash_type: HashType,
    /// Servers.
    pub servers: Vec<ServerSpec>,
    /// Health check.
    pub check: Option<CheckSpec>,
    /// Persistence cookie.
    pub cookie: Option<CookieSpec>,
    /// Learnt application sessions: cookie name, table size, expiry.
    pub stick_cookie: Option<(String, usize, Duration)>,
    /// Options in force.
    pub options: ProxyOptions,
    /// Connect timeout.
    pub timeout_connect: Duration,
    /// Server response timeout.
    pub timeout_server: Duration,
    /// Longest wait for a server slot.
    pub timeout_queue: Duration,
    /// Tunnel inactivity timeout.
    pub timeout_tunnel: Duration,
    /// Retries on connection failure.
    pub retries: u32,
    /// ACLs of the backend's rules.
    pub acls: Vec<Acl>,
    /// Request header rules.
    pub request_rules: Vec<HeaderRule>,
    /// Response header rules.
    pub response_rules: Vec<HeaderRule>,
    /// Error pages by status.
    pub errorfiles: BTreeMap<u16, ErrorPage>,
}

/// A checked server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Name.
    pub name: String,
    /// Address.
    pub addr: SocketAddr,
    /// Weight.
    pub weight: u32,
    /// Backup server.
    pub backup: bool,
    /// Concurrency limit.
    pub maxconn: u32,
    /// Persistence cookie value.
    pub cookie: String,
    /// Health-checked.
    pub check: bool,
    /// TLS to the server.
    pub tls: Option<std::sync::Arc<crate::proxy::tls::UpstreamTls>>,
    /// Speak HTTP/2 to it (`proto h2`).
    pub h2: bool,
    /// Weight ramp after coming back up (zero: none).
    pub slowstart: Duration,
}

/// Validates the L7 sections: frontends (listens after them) and backends (likewise).
pub(super) fn validate(config: &Config) -> Result<(Vec<FrontendSpec>, Vec<BackendSpec>), Failure> {
    let defaults = &config.defaults;
    let base = options(&ProxyOptions::default(), &defaults.options)?;
    let frontends_in: Vec<Frontend> = config
        .frontend
        .iter()
        .cloned()
        .chain(config.listen.iter().map(|l| l.frontend()))
        .collect();
    let backends_in: Vec<Backend> = config
        .backend
        .iter()
        .cloned()
        .chain(config.listen.iter().map(|l| l.backend()))
        .collect();
    let mut backends: Vec<BackendSpec> = Vec::new();
    for backend in &backends_in {
        let spec = validate_backend(backend, defaults, &base)?;
        if backends.iter().any(|b| b.name == spec.name) {
            return fail(
                backend.name.span(),
                format!(
                    "backend names must be unique, `{}` is used twice",
                    spec.name
                ),
            );
        }
        backends.push(spec);
    }
    let mut frontends: Vec<FrontendSpec> = Vec::new();
    for frontend in &frontends_in {
        let spec = validate_frontend(frontend, defaults, &base, &backends)?;
        if frontends.iter().any(|f| f.name == spec.name) {
            return fail(
                frontend.name.span(),
                format!(
                    "frontend names must be unique, `{}` is used twice",
                    spec.name
                ),
            );
        }
        frontends.push(spec);
    }
    Ok((frontends, backends))
}

/// Applies `option` lines over `inherited`.
fn options(inherited: &ProxyOptions, lines: &[Spanned<String>]) -> Result<ProxyOptions, Failure> {
    let mut options = inherited.clone();
    for line in lines {
        let text = line.get_ref().trim();
        let (negated, text) = match text.strip_prefix("no ") {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        let mut words = text.split_whitespace();
        let word = words.next().unwrap_or_default();
        match word {
            "forwardfor" if negated => options.forwardfor = None,
            "forwardfor" => {
                let mut forwardfor = Forwardfor {
                    header: HeaderName::from_static("x-forwarded-for"),
                    except: None,
                };
                while let Some(key) = words.next() {
                    let value = words.next().ok_or_else(|| {
                        (line.span(), format!("`{key}` in `{text}` needs a value"))
                    })?;
                    match key {
                        "except" => {
                            forwardfor.except = Some(parse_network(value).ok_or_else(|| {
                                (
                                    line.span(),
                                    format!(
                                        "expected a network such as 10.0.0.0/8, found `{value}`"
                                    ),
                                )
                            })?);
                        }
                        "header" => {
                            forwardfor.header =
                                HeaderName::from_bytes(value.as_bytes()).map_err(|_| {
                                    (line.span(), format!("`{value}` is not a header name"))
                                })?;
                        }
                        other => {
                            return fail(
                                line.span(),
                                format!(
                                    "unknown forwardfor argument `{other}` (known: except, header)"
                                ),
                            );
                        }
                    }
                }
                options.forwardfor = Some(forwardfor);
            }
            "http-keep-alive" | "http-server-close" | "httpclose" => {
                options.connection = match (word, negated) {
                    (_, true) => ConnectionMode::KeepAlive,
                    ("http-keep-alive", false) => ConnectionMode::KeepAlive,
                    ("http-server-close", false) => ConnectionMode::ServerClose,
                    _ => ConnectionMode::Close,
                };
            }
            "redispatch" => options.redispatch = !negated,
            "dontlognull" => options.dontlognull = !negated,
            "allbackups" => options.allbackups = !negated,
            "persist" => options.persist = !negated,
            // The log format of an HTTP proxy is always httplog; accepted for familiarity.
            "httplog" => {}
            _ => {
                return fail(
                    line.span(),
                    format!(
                        "unknown option `{text}` (known: forwardfor, http-keep-alive, \
                         http-server-close, httpclose, redispatch, dontlognull, allbackups, persist, httplog; \
                         `no ` before one cancels it)"
                    ),
                );
            }
        }
        if words.next().is_some() && word != "forwardfor" {
            return fail(line.span(), format!("option `{word}` takes no arguments"));
        }
    }
    Ok(options)
}

fn parse_network(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr.parse().ok()?, len.parse().ok()?),
        None => {
            let addr: std::net::IpAddr = text.parse().ok()?;
            (addr, if addr.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// The head limits of a frontend: its own, else `[defaults]`, else HAProxy-like defaults.
fn limits(frontend: &Frontend, defaults: &ProxyDefaults) -> Result<HeadLimits, Failure> {
    let fallback = HeadLimits::default();
    let pick = |own: &Option<Spanned<u32>>,
                inherited: &Option<Spanned<u32>>,
                range: std::ops::RangeInclusive<u32>,
                default: usize|
     -> Result<usize, Failure> {
        match own.as_ref().or(inherited.as_ref()) {
            None => Ok(default),
            Some(value) if range.contains(value.get_ref()) => Ok(*value.get_ref() as usize),
            Some(value) => fail(
                value.span(),
                format!(
                    "expected {} to {}, found {}",
                    range.start(),
                    range.end(),
                    value.get_ref()
                ),
            ),
        }
    };
    Ok(HeadLimits {
        max_header_size: pick(
            &frontend.max_header_size,
            &defaults.max_header_size,
            8192..=262_144,
            fallback.max_header_size,
        )?,
        max_headers: pick(
            &frontend.max_headers,
            &defaults.max_headers,
            1..=1000,
            fallback.max_headers,
        )?,
    })
}

/// A timeout from the section, else `[defaults]`, else `fallback`.
fn timeout(
    own: &Option<Spanned<String>>,
    inherited: &Option<Spanned<String>>,
    fallback: Duration,
) -> Result<Duration, Failure> {
    duration_of(if own.is_some() { own } else { inherited }, fallback)
}

/// Rejects timeouts that belong to the other side (HAProxy warns and ignores them; an
/// error is clearer).
fn only_timeouts(timeouts: &Timeouts, section: &str, allowed: &[&str]) -> Result<(), Failure> {
    let all = [
        ("connect", &timeouts.connect),
        ("client", &timeouts.client),
        ("server", &timeouts.server),
        ("http_request", &timeouts.http_request),
        ("http_keep_alive", &timeouts.http_keep_alive),
        ("queue", &timeouts.queue),
        ("tunnel", &timeouts.tunnel),
    ];
    for (name, value) in all {
        if let Some(value) = value
            && !allowed.contains(&name)
        {
            return fail(
                value.span(),
                format!(
                    "`timeout.{name}` does not apply to a {section} (it takes {})",
                    allowed.join(", ")
                ),
            );
        }
    }
    Ok(())
}

fn compile_acls(lines: &[Spanned<String>]) -> Result<Vec<Acl>, Failure> {
    let mut acls: Vec<Acl> = Vec::new();
    for line in lines {
        let acl = Acl::parse(line.get_ref()).map_err(|e| (line.span(), e.0))?;
        if acls.iter().any(|a| a.name() == acl.name()) {
            return fail(
                line.span(),
                format!("ACL `{}` is defined twice", acl.name()),
            );
        }
        acls.push(acl);
    }
    Ok(acls)
}

fn compile_rules(lines: &[Spanned<String>], acls: &[Acl]) -> Result<Vec<HeaderRule>, Failure> {
    lines
        .iter()
        .map(|line| HeaderRule::parse(line.get_ref(), acls).map_err(|e| (line.span(), e)))
        .collect()
}

/// Response rules: header rules only (`redirect` and `deny` answer requests).
fn compile_response_rules(
    lines: &[Spanned<String>],
    acls: &[Acl],
) -> Result<Vec<HeaderRule>, Failure> {
    let rules = compile_rules(lines, acls)?;
    for (rule, line) in rules.iter().zip(lines) {
        if rule.answers() {
            return fail(
                line.span(),
                "`redirect`, `deny` and path rules go in http_request, not http_response".into(),
            );
        }
    }
    Ok(rules)
}

/// An `errorloc` line: `"CODE URL"` (302) or `"CODE 303 URL"`, as an error page that
/// redirects.
fn error_location(text: &str) -> Result<(u16, ErrorPage), String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (code, redirect, url) = match words.as_slice() {
        [code, url] => (*code, 302, *url),
        [code, kind, url] if *kind == "302" || *kind == "303" => {
            (*code, if *kind == "302" { 302 } else { 303 }, *url)
        }
        _ => {
            return Err(format!(
                "expected \"CODE URL\" or \"CODE 303 URL\", found `{text}`"
            ));
        }
    };
    let code: u16 = code
        .parse()
        .ok()
        .filter(|c| ERRORFILE_STATUSES.contains(c))
        .ok_or_else(|| {
            format!("errorloc status must be one of {ERRORFILE_STATUSES:?}, found `{code}`")
        })?;
    let location = HeaderValue::from_str(url).map_err(|_| format!("`{url}` is not a URL"))?;
    let page = ErrorPage {
        status: redirect,
        headers: vec![
            (hyper::header::LOCATION, location),
            (
                hyper::header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            ),
        ],
        body: bytes::Bytes::new(),
    };
    Ok((code, page))
}

/// Statuses HAProxy lets `errorfile` replace.
const ERRORFILE_STATUSES: [u16; 11] = [200, 400, 403, 405, 408, 425, 429, 500, 502, 503, 504];

fn load_errorfiles(
    own: &[Spanned<String>],
    inherited: &[Spanned<String>],
    own_locations: &[Spanned<String>],
    inherited_locations: &[Spanned<String>],
) -> Result<BTreeMap<u16, ErrorPage>, Failure> {
    let mut pages = BTreeMap::new();
    for line in inherited_locations.iter().chain(own_locations) {
        let (code, page) = error_location(line.get_ref()).map_err(|e| (line.span(), e))?;
        pages.insert(code, page);
    }
    for line in inherited.iter().chain(own) {
        let text = line.get_ref();
        let (code, path) = text.trim().split_once(char::is_whitespace).ok_or_else(|| {
            (
                line.span(),
                format!("expected \"CODE /path/to/file\", found `{text}`"),
            )
        })?;
        let code: u16 = code
            .parse()
            .ok()
            .filter(|c| ERRORFILE_STATUSES.contains(c))
            .ok_or_else(|| {
                (
                    line.span(),
                    format!(
                        "errorfile status must be one of {ERRORFILE_STATUSES:?}, found `{code}`"
                    ),
                )
            })?;
        let path = path.trim();
        let raw = std::fs::read(path)
            .map_err(|e| (line.span(), format!("cannot read errorfile `{path}`: {e}")))?;
        let page = parse_error_page(&raw)
            .map_err(|e| (line.span(), format!("errorfile `{path}`: {e}")))?;
        pages.insert(code, page);
    }
    Ok(pages)
}

/// Parses a raw HTTP/1.x response (status line, headers, blank line, body), as HAProxy's
/// error files are written.
pub fn parse_error_page(raw: &[u8]) -> Result<ErrorPage, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(raw) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return Err("the response head does not end with an empty line".into());
        }
        Err(e) => return Err(format!("not an HTTP response: {e}")),
    };
    let status = response.code.ok_or("no status code")?;
    let mut parsed = Vec::new();
    for header in response.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("bad header name `{}`", header.name))?;
        // Length and framing are worked out from the body actually sent.
        if name == hyper::header::CONTENT_LENGTH || name == hyper::header::TRANSFER_ENCODING {
            continue;
        }
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| format!("bad value for header `{}`", header.name))?;
        parsed.push((name, value));
    }
    Ok(ErrorPage {
        status,
        headers: parsed,
        body: Bytes::copy_from_slice(&raw[head_len..]),
    })
}

fn log_target(own: &Option<Spanned<String>>, inherited: &Option<Spanned<String>>) -> LogTarget {
    let Some(value) = own.as_ref().or(inherited.as_ref()) else {
        return LogTarget::Stdout;
    };
    match value.get_ref().as_str() {
        "stdout" => LogTarget::Stdout,
        "none" => LogTarget::None,
        other => match other.strip_prefix("syslog:") {
            Some(socket) => LogTarget::Syslog(socket.into()),
            None => LogTarget::File(other.into()),
        },
    }
}

fn validate_backend(
    backend: &Backend,
    defaults: &ProxyDefaults,
    base: &ProxyOptions,
) -> Result<BackendSpec, Failure> {
    let name = backend.name.get_ref().clone();
    if name.is_empty() {
        return fail(
            backend.name.span(),
            "backend names must not be empty".into(),
        );
    }
    only_timeouts(
        &backend.timeout,
        "backend",
        &["connect", "server", "queue", "tunnel"],
    )?;
    let balance_value = backend.balance.as_ref().or(defaults.balance.as_ref());
    let (balance, hash_input) = match balance_value {
        Some(line) => parse_balance(line.get_ref()).map_err(|e| (line.span(), e))?,
        None => (Algorithm::RoundRobin, HashInput::None),
    };
    let hash_type = match backend
        .hash_type
        .as_ref()
        .map(|h| (h.get_ref().as_str(), h.span()))
    {
        None | Some(("map-based", _)) => HashType::MapBased,
        Some(("consistent", _)) => HashType::Consistent,
        Some((other, span)) => {
            return fail(
                span,
                format!("expected map-based or consistent, found `{other}`"),
            );
        }
    };
    if backend.servers.is_empty() {
        return fail(
            backend.name.span(),
            format!("backend `{name}` has no servers"),
        );
    }
    let mut servers: Vec<ServerSpec> = Vec::new();
    for server in &backend.servers {
        let server_name = server.name.get_ref().clone();
        if server_name.is_empty()
            || server_name.contains('/')
            || servers.iter().any(|s| s.name == server_name)
        {
            return fail(
                server.name.span(),
                format!("server names must be unique in a backend, without `/`: `{server_name}`"),
            );
        }
        let addr: SocketAddr = server.addr.get_ref().parse().map_err(|_| {
            (
                server.addr.span(),
                format!(
                    "expected \"address:port\", found `{}`",
                    server.addr.get_ref()
                ),
            )
        })?;
        if server.weight > 256 {
            return fail(
                server.name.span(),
                format!(
                    "expected a weight of 0 to 256 (as HAProxy), found {}",
                    server.weight
                ),
            );
        }
        let cookie = match &server.cookie {
            Some(value) => {
                let text = value.get_ref();
                if text.is_empty()
                    || !text
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b";,|~\"\\".contains(&b))
                {
                    return fail(
                        value.span(),
                        format!(
                            "a cookie value is printable, without ; , | ~ quotes or backslash: `{text}`"
                        ),
                    );
                }
                text.clone()
            }
            None => server_name.clone(),
        };
        if servers.iter().any(|s| s.cookie == cookie) {
            return fail(
                server.name.span(),
                format!("server cookie value `{cookie}` is used twice in backend `{name}`"),
            );
        }
        let h2 = match &server.proto {
            None => false,
            Some(proto) if proto.get_ref() == "h2" => true,
            Some(proto) => {
                return fail(
                    proto.span(),
                    format!(
                        "expected proto \"h2\" (HTTP/1.1 is the default), found `{}`",
                        proto.get_ref()
                    ),
                );
            }
        };
        let slowstart = match &server.slowstart {
            Some(text) => {
                super::duration::parse_duration(text.get_ref()).map_err(|e| (text.span(), e))?
            }
            None => Duration::ZERO,
        };
        servers.push(ServerSpec {
            name: server_name,
            addr,
            h2,
            slowstart,
            weight: server.weight,
            backup: server.backup,
            maxconn: server.maxconn,
            cookie,
            check: server.check,
            tls: match &server.ssl {
                Some(line) => Some(std::sync::Arc::new(
                    crate::proxy::tls::UpstreamTls::parse(line.get_ref(), addr.ip(), h2)
                        .map_err(|e| (line.span(), e))?,
                )),
                None => None,
            },
        });
    }
    let check = match &backend.check {
        Some(c) => Some(validate_check(c, servers[0].addr)?),
        None => None,
    };
    let cookie = match &backend.cookie {
        Some(line) => Some(CookieSpec::parse(line.get_ref()).map_err(|e| (line.span(), e))?),
        None => None,
    };
    let stick_cookie = match &backend.stick_cookie {
        Some(stick) => Some((
            stick.name.get_ref().clone(),
            stick.size.unwrap_or(100_000).max(1) as usize,
            duration_of(&stick.expire, Duration::from_secs(30 * 60))?,
        )),
        None => None,
    };
    let acls = compile_acls(&backend.acls)?;
    let mode = mode_of(&backend.mode, &defaults.mode)?;
    if mode == Mode::Tcp {
        let http_only = [
            (backend.cookie.as_ref().map(Spanned::span), "cookie"),
            (
                backend.stick_cookie.as_ref().map(|s| s.name.span()),
                "stick_cookie",
            ),
            (
                backend.http_request.first().map(Spanned::span),
                "http_request",
            ),
            (
                backend.http_response.first().map(Spanned::span),
                "http_response",
            ),
            (backend.errorfile.first().map(Spanned::span), "errorfile"),
            (backend.errorloc.first().map(Spanned::span), "errorloc"),
        ];
        for (span, key) in http_only {
            if let Some(span) = span {
                return fail(
                    span,
                    format!("`{key}` needs mode http; backend `{name}` is mode tcp"),
                );
            }
        }
        if matches!(
            balance,
            Algorithm::Uri | Algorithm::UrlParam | Algorithm::Hdr
        ) {
            let span = balance_value.map(Spanned::span).unwrap_or(0..0);
            return fail(span, "this balance algorithm reads HTTP requests: mode tcp takes roundrobin, static-rr, leastconn, first, source, random or rdp-cookie".into());
        }
    }
    if mode == Mode::Tcp
        && let Some(ssl) = backend.servers.iter().find_map(|s| s.ssl.as_ref())
    {
        return fail(ssl.span(), "`ssl` to servers needs mode http".into());
    }
    if mode == Mode::Tcp
        && let Some(proto) = backend.servers.iter().find_map(|s| s.proto.as_ref())
    {
        return fail(proto.span(), "`proto` of servers needs mode http".into());
    }
    if mode == Mode::Http && balance == Algorithm::RdpCookie {
        let span = balance_value.map(Spanned::span).unwrap_or(0..0);
        return fail(
            span,
            "rdp-cookie reads RDP connections: it needs mode tcp".into(),
        );
    }
    let timeout_connect = timeout(
        &backend.timeout.connect,
        &defaults.timeout.connect,
        Duration::from_secs(5),
    )?;
    let timeout_client = timeout(&None, &defaults.timeout.client, Duration::from_secs(30))?;
    Ok(BackendSpec {
        mode,
        balance,
        hash_input,
        hash_type,
        servers,
        check,
        cookie,
        stick_cookie,
        options: options(base, &backend.options)?,
        timeout_connect,
        timeout_server: timeout(
            &backend.timeout.server,
            &defaults.timeout.server,
            Duration::from_secs(30),
        )?,
        timeout_queue: timeout(
            &backend.timeout.queue,
            &defaults.timeout.queue,
            timeout_connect,
        )?,
        timeout_tunnel: timeout(
            &backend.timeout.tunnel,
            &defaults.timeout.tunnel,
            timeout_client,
        )?,
        retries: backend.retries.or(defaults.retries).unwrap_or(3).min(10),
        request_rules: compile_rules(&backend.http_request, &acls)?,
        response_rules: compile_response_rules(&backend.http_response, &acls)?,
        acls,
        errorfiles: load_errorfiles(&backend.errorfile, &[], &backend.errorloc, &[])?,
        name,
    })
}

fn validate_frontend(
    frontend: &Frontend,
    defaults: &ProxyDefaults,
    base: &ProxyOptions,
    backends: &[BackendSpec],
) -> Result<FrontendSpec, Failure> {
    let name = frontend.name.get_ref().clone();
    if name.is_empty() {
        return fail(
            frontend.name.span(),
            "frontend names must not be empty".into(),
        );
    }
    only_timeouts(
        &frontend.timeout,
        "frontend",
        &["client", "http_request", "http_keep_alive"],
    )?;
    if frontend.bind.is_empty() {
        return fail(
            frontend.name.span(),
            format!("frontend `{name}` binds nothing"),
        );
    }
    let mut bind = Vec::new();
    for b in &frontend.bind {
        bind.push(parse_bind(b.get_ref()).map_err(|e| (b.span(), e))?);
    }
    let acls = compile_acls(&frontend.acls)?;
    let mode = mode_of(&frontend.mode, &defaults.mode)?;
    if mode == Mode::Tcp {
        let http_only = [
            (
                frontend.use_backend.first().map(Spanned::span),
                "use_backend",
            ),
            (
                frontend.http_request.first().map(Spanned::span),
                "http_request",
            ),
            (
                frontend.http_response.first().map(Spanned::span),
                "http_response",
            ),
            (frontend.errorfile.first().map(Spanned::span), "errorfile"),
        ];
        for (span, key) in http_only {
            if let Some(span) = span {
                return fail(
                    span,
                    format!("`{key}` needs mode http; frontend `{name}` is mode tcp"),
                );
            }
        }
        if frontend.default_backend.is_none() {
            return fail(
                frontend.name.span(),
                format!("mode tcp frontend `{name}` needs a default_backend"),
            );
        }
        if let Some((text, _)) = frontend
            .bind
            .iter()
            .zip(&bind)
            .find(|(_, b)| b.tls.is_some())
        {
            return fail(text.span(), "`ssl` binds need mode http".into());
        }
    }
    let backend_index = |name: &str, span: std::ops::Range<usize>| -> Result<usize, Failure> {
        backends
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| (span.clone(), format!("no [[backend]] is called `{name}`")))
            .and_then(|i| {
                if backends[i].mode == mode {
                    Ok(i)
                } else {
                    fail(
                        span,
                        format!("backend `{name}` is not in the frontend's mode ({mode:?})"),
                    )
                }
            })
    };
    let mut rules = Vec::new();
    for rule in &frontend.use_backend {
        let text = rule.get_ref();
        let (backend, condition) = text.split_once(char::is_whitespace).ok_or_else(|| {
            (
                rule.span(),
                format!("expected \"backend if condition\", found `{text}`"),
            )
        })?;
        let index = backend_index(backend, rule.span())?;
        let condition = Condition::parse(condition, &acls).map_err(|e| (rule.span(), e.0))?;
        rules.push((index, condition));
    }
    let default_backend = frontend
        .default_backend
        .as_ref()
        .map(|b| backend_index(b.get_ref(), b.span()))
        .transpose()?;
    let timeout_client = timeout(
        &frontend.timeout.client,
        &defaults.timeout.client,
        Duration::from_secs(30),
    )?;
    let timeout_http_request = timeout(
        &frontend.timeout.http_request,
        &defaults.timeout.http_request,
        timeout_client,
    )?;
    Ok(FrontendSpec {
        mode,
        bind,
        rules,
        default_backend,
        options: options(base, &frontend.options)?,
        timeout_client,
        timeout_http_request,
        timeout_http_keep_alive: timeout(
            &frontend.timeout.http_keep_alive,
            &defaults.timeout.http_keep_alive,
            timeout_http_request,
        )?,
        request_rules: compile_rules(&frontend.http_request, &acls)?,
        response_rules: compile_response_rules(&frontend.http_response, &acls)?,
        acls,
        maxconn: frontend.maxconn.or(defaults.maxconn).unwrap_or(0),
        limits: limits(frontend, defaults)?,
        errorfiles: load_errorfiles(
            &frontend.errorfile,
            &defaults.errorfile,
            &frontend.errorloc,
            &defaults.errorloc,
        )?,
        log: log_target(&frontend.log, &defaults.log),
        monitor_uri: match &frontend.monitor_uri {
            Some(path) if !path.get_ref().starts_with('/') || path.get_ref().contains(' ') => {
                return fail(
                    path.span(),
                    format!(
                        "expected a path such as /haproxy_test, found `{}`",
                        path.get_ref()
                    ),
                );
            }
            Some(path) => Some(path.get_ref().clone()),
            None => None,
        },
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errorloc_lines_become_redirects() {
        let (code, page) = error_location("503 https://status.example.com/").expect("302");
        assert_eq!((code, page.status), (503, 302));
        assert_eq!(page.headers[0].1, "https://status.example.com/");
        assert!(page.body.is_empty());
        let (_, page) = error_location("403 303 /denied").expect("303");
        assert_eq!(page.status, 303);
        assert!(error_location("999 https://x/").is_err());
        assert!(error_location("503 301 https://x/").is_err());
        assert!(error_location("503").is_err());
    }

    #[test]
    fn error_pages_parse_like_haproxy_files() {
        let page = parse_error_page(
            b"HTTP/1.0 503 Service Unavailable\r\nCache-Control: no-cache\r\nContent-Type: text/html\r\nContent-Length: 99\r\n\r\n<html>sorry</html>\n",
        )
        .unwrap();
        assert_eq!(page.status, 503);
        assert_eq!(page.headers.len(), 2, "content-length is recomputed");
        assert_eq!(&page.body[..], b"<html>sorry</html>\n");
        assert!(parse_error_page(b"<html>not http</html>").is_err());
        assert!(parse_error_page(b"HTTP/1.0 503 X\r\nA: b\r\n").is_err());
    }

    #[test]
    fn options_inherit_and_cancel() {
        let line = |s: &str| Spanned::new(0..0, s.to_string());
        let base = options(
            &ProxyOptions::default(),
            &[
                line("redispatch"),
                line("forwardfor except 127.0.0.0/8 header X-Client"),
            ],
        )
        .unwrap();
        assert!(base.redispatch);
        let ff = base.forwardfor.clone().unwrap();
        assert_eq!(ff.header, "x-client");
        assert_eq!(ff.except, Some(("127.0.0.0".parse().unwrap(), 8)));
        let own = options(&base, &[line("no redispatch"), line("http-server-close")]).unwrap();
        assert!(!own.redispatch);
        assert_eq!(own.connection, ConnectionMode::ServerClose);
        assert!(own.forwardfor.is_some(), "inherited");
        assert!(options(&base, &[line("bogus")]).is_err());
        assert!(options(&base, &[line("redispatch now")]).is_err());
        assert!(options(&base, &[line("forwardfor except nonsense")]).is_err());
    }
}
