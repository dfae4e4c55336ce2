//! The HTTP/1.1 proxy. Per request, in HAProxy's order: route by ACL to a backend, find the
//! server persistence names (cookie, learnt session) or let the balance algorithm choose an
//! up server with room (waiting in the backend's FIFO queue up to `timeout queue`), connect
//! (a pooled connection when one is idle; retries, redispatch on the last one), rewrite the
//! request (hop-by-hop headers, cookies, forwardfor, header rules), forward, rewrite the
//! response (cookies, header rules) and stream it back. Upgrades become tunnels. One
//! httplog line per request, counters per frontend, backend and server.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Instant, SystemTime},
};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    HeaderMap, Request, Response, StatusCode,
    body::{Body as HttpBody, Frame, Incoming, SizeHint},
    header::{self, HeaderName, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::watch;

use super::{
    acl::{RequestView, in_network, query_params},
    balance::{Candidate, HashInput, Key},
    cookie::{self, CookieMode},
    head_guard::{Activity, ClientTimeouts, Expired, HeadGuard, InFlight, StallClock},
    log::{Entry, format_httplog},
    rewrite::{Answer, HeaderRule, Vars, answering_rule},
    screen::screen,
    tunnel,
    upstream::PooledBody,
};
use crate::config::{ConnectionMode, ErrorPage};

use super::upstream::Body;

use super::snapshot::BackendState;
pub use super::snapshot::Proxy;

/// Concurrent HTTP/2 streams per client connection (HAProxy's `tune.h2.max-concurrent-streams`
/// defaults to 100 too).
const H2_MAX_STREAMS: u32 = 100;
/// Streams a client may reset before the proxy has seen them served: past it the connection
/// is closed (CVE-2023-44487, "rapid reset").
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the proxy may reset for a client's protocol errors before closing its connection.
const H2_MAX_LOCAL_RESETS: usize = 256;
/// Largest send buffer per stream, bytes.
const H2_MAX_SEND_BUFFER: usize = 256 * 1024;

/// Headers that describe one hop and are not forwarded (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Serves one client connection of frontend `f` of `proxy` (the snapshot current when it was
/// accepted). Each request is served by the newest snapshot (`current`) when its frontend is
/// still there; when a reload removed the frontend, requests finish on the old snapshot, the
/// connection closes after the one in flight, and idle connections close at once.
#[expect(
    clippy::too_many_arguments,
    reason = "one accepted connection's facts, gathered by the accept loop"
)]
pub(super) async fn serve_connection<IO>(
    stream: IO,
    peer: SocketAddr,
    local: SocketAddr,
    f: usize,
    proxy: Arc<Proxy>,
    current: Arc<ArcSwap<Proxy>>,
    tls: bool,
    wire: Wire,
    accepted_at: Instant,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let frontend = &proxy.frontends[f];
    let _session = frontend.counters.enter();
    let spec = &frontend.spec;
    // Requests hyper would take with two framings are refused before it reads them, and the
    // client's timeouts run on what it sends.
    let activity = Arc::new(Activity::default());
    let timeouts = ClientTimeouts {
        http_request: spec.timeout_http_request,
        http_keep_alive: spec.timeout_http_keep_alive,
        client: spec.timeout_client,
    };
    let limits = spec.limits;
    let stream = HeadGuard::new(stream, accepted_at, timeouts, limits, activity.clone());
    let keep_alive = spec.options.connection != ConnectionMode::Close;
    // hyper's own limit is only a backstop: the guard's timeouts come first.
    let header_timeout = spec.timeout_http_request.max(spec.timeout_http_keep_alive)
        + std::time::Duration::from_secs(5);
    let accepted = SystemTime::now();
    let started = Instant::now();
    let served = Arc::new(AtomicBool::new(false));
    let service = {
        let proxy = proxy.clone();
        let served = served.clone();
        let activity = activity.clone();
        service_fn(move |request: Request<Incoming>| {
            let (proxy, f, retired) = newest(&current, &proxy, f);
            served.store(true, Ordering::Relaxed);
            let in_flight = activity.request();
            // The guard holds the bytes after a request that may switch protocols until it
            // knows whether it did.
            let upgrade_asked = (request.method() == hyper::Method::CONNECT
                || request.headers().contains_key(header::UPGRADE))
            .then(|| (activity.clone(), in_flight.number()));
            async move {
                let mut response = handle(request, peer, local, f, proxy, tls, in_flight).await;
                if let Some((activity, number)) = upgrade_asked {
                    activity.settle(number, response.status() == StatusCode::SWITCHING_PROTOCOLS);
                }
                if retired && response.version() != hyper::Version::HTTP_2 {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut retired = proxy.frontends[f].retired.subscribe();
    let ended = |result: Result<(), String>, parse: bool, timeout: bool| {
        connection_ended(
            &proxy,
            f,
            peer,
            accepted,
            started,
            served.load(Ordering::Relaxed),
            result,
            parse,
            timeout,
        );
    };
    if wire == Wire::Auto {
        // TLS binds (ALPN h2) and `proto h2` binds speak HTTP/2 too: the builder reads the
        // preface to tell.
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // hyper's buffer is the head limit here (the auto builder has no max_header_size):
        // a longer head fills it and is answered 431.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(keep_alive)
            .max_buf_size(limits.max_header_size.max(8192));
        if limits.max_headers != DEFAULT_MAX_HEADERS {
            builder.http1().max_headers(limits.max_headers);
        }
        // Bounds on what one client can make the proxy hold: streams, resets (rapid reset),
        // header lists (CONTINUATION floods), send buffers.
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
            .max_header_list_size(limits.max_header_size as u32)
            .max_send_buf_size(H2_MAX_SEND_BUFFER);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let watch = watch_http2(&activity, timeouts);
        if let Some(result) = until_retired(connection, &mut retired, watch).await {
            connection_result(result, &activity, ended);
        }
        return;
    }
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive)
        .max_header_size(limits.max_header_size);
    if limits.max_headers != DEFAULT_MAX_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let never = std::future::pending::<Http2End>();
    if let Some(result) = until_retired(connection, &mut retired, never).await {
        let result = result.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
        connection_result(result, &activity, ended);
    }
}

/// hyper's own header count limit when none is set (held on the stack, where a configured
/// one is allocated per request).
const DEFAULT_MAX_HEADERS: usize = 100;

/// Why an HTTP/2 connection is ended by the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http2End {
    /// No stream for `timeout http_keep_alive`: GOAWAY, as HAProxy and nginx send.
    Idle,
    /// A response waited `timeout client` for the client to take its bytes (a zero window):
    /// the connection goes, and with it the server slots its streams held.
    Stalled,
}

/// Watches an HTTP/2 client connection (resolves never for HTTP/1): when it has been idle
/// for `timeout http_keep_alive`, or a response has waited for the client `timeout client`.
async fn watch_http2(activity: &Activity, timeouts: ClientTimeouts) -> Http2End {
    activity.http2().await;
    let period = (timeouts.client.min(timeouts.http_keep_alive) / 4).clamp(
        std::time::Duration::from_millis(20),
        std::time::Duration::from_secs(1),
    );
    loop {
        let now = Instant::now();
        if activity.in_flight() == 0 {
            let deadline = activity.idle_since() + timeouts.http_keep_alive;
            if now >= deadline {
                return Http2End::Idle;
            }
            tokio::time::sleep_until(deadline.min(now + period).into()).await;
            continue;
        }
        if let Some(since) = activity.oldest_stall()
            && now >= since + timeouts.client
        {
            activity.set_expired(Expired::Client);
            return Http2End::Stalled;
        }
        tokio::time::sleep(period).await;
    }
}

/// A client connection hyper serves, which can be asked to finish what is in flight and
/// close.
trait GracefulConnection: std::future::Future {
    fn shut_down_gracefully(self: Pin<&mut Self>);
}

impl<I, S> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    Self: std::future::Future,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> GracefulConnection
    for hyper_util::server::conn::auto::UpgradeableConnection<'_, I, S, E>
where
    Self: std::future::Future,
    S: hyper::service::HttpService<Incoming>,
    S::Future: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn shut_down_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs `connection` to its end; when a reload retires the frontend first, it finishes
/// what is in flight and closes. When `watch` ends an HTTP/2 connection: an idle one gets
/// GOAWAY and a second to close; a stalled one is dropped at once (then `None`).
async fn until_retired<C: GracefulConnection>(
    connection: C,
    retired: &mut watch::Receiver<bool>,
    watch: impl std::future::Future<Output = Http2End>,
) -> Option<C::Output> {
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => Some(result),
        () = retirement(retired) => {
            connection.as_mut().shut_down_gracefully();
            Some(connection.await)
        }
        end = watch => match end {
            Http2End::Idle => {
                connection.as_mut().shut_down_gracefully();
                tokio::time::timeout(std::time::Duration::from_secs(1), connection)
                    .await
                    .ok()
            }
            Http2End::Stalled => None,
        },
    }
}

/// Hands how a client connection ended to `ended` (result, parse error, head timeout).
fn connection_result(
    result: Result<(), Box<dyn std::error::Error + Send + Sync>>,
    activity: &Activity,
    ended: impl FnOnce(Result<(), String>, bool, bool),
) {
    match result {
        Ok(()) => ended(Ok(()), false, false),
        Err(error) => {
            let hyper_error = error.downcast_ref::<hyper::Error>();
            let parse = hyper_error.is_some_and(|e| e.is_parse() || e.is_parse_too_large());
            let timeout = hyper_error.is_some_and(hyper::Error::is_timeout)
                || activity.expired() == Some(Expired::HttpRequest);
            ended(Err(error.to_string()), parse, timeout);
        }
    }
}

/// The snapshot and frontend index a new request on a connection of frontend `f` of
/// `proxy` is served with: the newest snapshot's frontend of the same name and mode, or,
/// when a reload removed it, the connection's own (then `true`: the connection should close).
fn newest(current: &ArcSwap<Proxy>, proxy: &Arc<Proxy>, f: usize) -> (Arc<Proxy>, usize, bool) {
    let newest = current.load_full();
    if Arc::ptr_eq(&newest, proxy) {
        return (newest, f, false);
    }
    let spec = &proxy.frontends[f].spec;
    match newest.frontend_index(&spec.name, spec.mode) {
        Some(index) => (newest, index, false),
        None => (proxy.clone(), f, true),
    }
}

/// Resolves when a reload retires the frontend (never if the snapshot is gone: then there
/// is nobody left to retire it).
async fn retirement(retired: &mut watch::Receiver<bool>) {
    if retired.wait_for(|r| *r).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Counts and logs how a client connection ended when no request line says it: a request
/// that could not be parsed (400, `<BADREQ>`, HAProxy's `PR--`), a head that did not arrive
/// in time (408, `cR--`), or a connection that sent nothing (`CR--`, not logged with
/// `option dontlognull`).
#[expect(
    clippy::too_many_arguments,
    reason = "one connection's facts, gathered by its caller"
)]
fn connection_ended(
    proxy: &Proxy,
    f: usize,
    peer: SocketAddr,
    accepted: SystemTime,
    started: Instant,
    served: bool,
    result: Result<(), String>,
    parse: bool,
    timeout: bool,
) {
    let frontend = &proxy.frontends[f];
    let (status, termination) = match &result {
        Err(_) if parse => (400, *b"PR--"),
        Err(_) if timeout && !served => (408, *b"cR--"),
        Ok(()) if !served => (0, *b"CR--"),
        Err(error) => {
            tracing::debug!(%error, %peer, "client connection ended");
            return;
        }
        Ok(()) => return,
    };
    if status != 0 {
        frontend.counters.denied.fetch_add(1, Ordering::Relaxed);
        frontend.counters.response(status);
    } else if frontend.spec.options.dontlognull {
        return;
    }
    if frontend.logger.is_off() {
        return;
    }
    let entry = Entry {
        client: peer,
        accepted,
        frontend: frontend.spec.name.clone(),
        backend: frontend.spec.name.clone(),
        server: "<NOSRV>".into(),
        t_request: -1,
        t_queue: -1,
        t_connect: -1,
        t_response: -1,
        t_total: millis(started),
        status,
        bytes: 0,
        termination,
        retries: 0,
        request_line: "<BADREQ>".into(),
    };
    frontend.logger.log(format_httplog(&entry));
}

/// Which HTTP versions a client connection may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wire {
    /// HTTP/1.x only.
    Http1,
    /// HTTP/1.x or HTTP/2, told apart by the connection preface.
    Auto,
}

/// What the log line and counters need to know about a request as it goes.
struct Progress {
    client: SocketAddr,
    accepted: SystemTime,
    started: Instant,
    /// Backend index once routed.
    backend: Option<usize>,
    /// Server index once chosen.
    server: Option<usize>,
    t_queue: i64,
    t_connect: i64,
    t_response: i64,
    termination: [u8; 4],
    retries: u32,
    /// Only built when a log line will be written.
    request_line: Option<String>,
    /// Keeps the request counted as in flight (for the client's keep-alive timer) until the
    /// response body is done: the progress lives in the body's log record until then.
    _in_flight: InFlight,
}

pub(super) fn millis(since: Instant) -> i64 {
    since.elapsed().as_millis() as i64
}

async fn handle(
    mut request: Request<Incoming>,
    client: SocketAddr,
    local: SocketAddr,
    f: usize,
    proxy: Arc<Proxy>,
    tls: bool,
    in_flight: InFlight,
) -> Response<Body> {
    let frontend = &proxy.frontends[f];
    let mut progress = Progress {
        _in_flight: in_flight,
        client,
        accepted: SystemTime::now(),
        started: Instant::now(),
        backend: None,
        server: None,
        t_queue: -1,
        t_connect: -1,
        t_response: -1,
        termination: *b"----",
        retries: 0,
        request_line: (!frontend.logger.is_off()).then(|| {
            format!(
                "{} {} {:?}",
                request.method(),
                request.uri(),
                request.version()
            )
        }),
    };
    let client_upgrade = hyper::upgrade::on(&mut request);
    let (mut parts, incoming) = request.into_parts();
    // Refusals before anything else looks at the request; the one Host from here on.
    if let Err(refused) = screen(&mut parts, &frontend.spec.limits) {
        tracing::debug!(why = refused.why, %client, "request refused");
        frontend.counters.denied.fetch_add(1, Ordering::Relaxed);
        progress.termination = *b"PR--";
        return finish_local(&proxy, f, None, refused.status, progress);
    }
    // `monitor-uri`: the proxy answers for itself; not forwarded, not logged as traffic.
    if frontend
        .spec
        .monitor_uri
        .as_deref()
        .is_some_and(|uri| uri == parts.uri.path())
    {
        frontend.counters.response(200);
        return builtin_page(StatusCode::OK);
    }
    let h2 = parts.version == hyper::Version::HTTP_2;
    // A chunked body's first chunk is read before anything is forwarded, so a bad chunk
    // size gets its 400 here instead of a request head half-sent to a server.
    let body = ClientBody::new(incoming);
    let body_failed = body.failed.clone();
    let body = if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        match body.read_first().await {
            Ok(body) => body.boxed(),
            Err(_) => {
                frontend.counters.denied.fetch_add(1, Ordering::Relaxed);
                progress.termination = *b"CR--";
                return finish_local(&proxy, f, None, StatusCode::BAD_REQUEST, progress);
            }
        }
    } else {
        body.boxed()
    };
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    // Header rules read the request as received; copy it only when some rule may.
    let received: HeaderMap = if frontend.uses_vars {
        parts.headers.clone()
    } else {
        HeaderMap::new()
    };
    // ACLs read headers; the request's own map is edited later, so they get a copy.
    let header_copy: Vec<(String, String)> = if frontend.uses_acls {
        parts
            .headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect()
    } else {
        Vec::new()
    };
    let view = RequestView {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: header_copy
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect(),
        src: Some(client.ip()),
        tls,
    };
    // The frontend's `http_request` redirect and deny rules, in the order written.
    if let Some(answer) = answering_rule(&frontend.spec.request_rules, &frontend.spec.acls, &view) {
        return answer_locally(&proxy, f, None, answer, &parts, progress);
    }
    let chosen_backend = frontend
        .spec
        .rules
        .iter()
        .find(|(_, condition)| condition.holds(&frontend.spec.acls, &view))
        .map(|(b, _)| *b)
        .or(frontend.spec.default_backend);
    let Some(b) = chosen_backend else {
        progress.termination = *b"PR--";
        return finish_local(&proxy, f, None, StatusCode::SERVICE_UNAVAILABLE, progress);
    };
    let backend = &proxy.backends[b];
    progress.backend = Some(b);
    let _backend_session = backend.counters.enter();
    // Then the chosen backend's, as HAProxy runs a backend's rules once it is chosen.
    if let Some(answer) = answering_rule(&backend.spec.request_rules, &backend.spec.acls, &view) {
        return answer_locally(&proxy, f, Some(b), answer, &parts, progress);
    }
    let board = proxy.board.borrow().clone();
    // `option persist` may force a cookie's server that its checks call down (not one an
    // operator took out): it counts as up for this request only.
    let checked_up = |s: usize| proxy.server_up(&board, b, s);

    // Persistence: the proxy's cookie first, then a learnt application session.
    let cookies = if backend.spec.cookie.is_some() || backend.sessions.is_some() {
        cookie::parse_cookies(
            parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    } else {
        Vec::new()
    };
    let now = cookie::unix_now();
    let cookie_server = backend.spec.cookie.as_ref().and_then(|spec| {
        let value = spec.server_value(&cookies, now)?;
        backend.servers.iter().position(|s| s.spec.cookie == value)
    });
    let session_server = backend.sessions.as_ref().and_then(|table| {
        let (_, value) = cookies.iter().find(|(name, _)| *name == table.cookie)?;
        table.lookup(value, Instant::now())
    });
    // What the response needs to know of the client's cookie, taken now: the request's
    // headers are edited before then.
    let (cookie_refresh, cookie_first) =
        backend.spec.cookie.as_ref().map_or((false, None), |spec| {
            (spec.needs_refresh(&cookies, now), spec.first_seen(&cookies))
        });
    let persisted = cookie_server.or(session_server);
    if persisted.is_some() {
        progress.termination[2] = b'V';
    }
    // A cookie naming a server that is down is ignored, unless `option persist` forces it.
    let forced = cookie_server.filter(|&s| {
        backend.spec.options.persist && !checked_up(s) && proxy.server_checked_down(&board, b, s)
    });
    let up = |s: usize| checked_up(s) || forced == Some(s);
    let persisted = persisted.filter(|&s| up(s));
    if cookie_server.is_some() && persisted.is_none() {
        progress.termination[2] = b'D';
    }

    let hash_text: Option<String> = match &backend.spec.hash_input {
        HashInput::None | HashInput::RdpCookie(_) => None,
        HashInput::Uri(uri) => {
            let whole = parts
                .uri
                .path_and_query()
                .map_or(path.as_str(), |pq| pq.as_str());
            Some(uri.select(&path, query.as_deref(), whole).to_string())
        }
        HashInput::UrlParam(name) => query
            .as_deref()
            .and_then(|q| query_params(q).find(|(k, _)| k == name))
            .map(|(_, v)| v.to_string()),
        HashInput::Header(name) => parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let hash_key = Key {
        src: Some(client.ip()),
        text: hash_text.as_deref(),
    };
    let mut tried = vec![false; backend.servers.len()];
    let queued_at = Instant::now();
    let Some(mut s) = acquire(backend, persisted, &tried, &up, hash_key, queued_at).await else {
        backend.counters.denied.fetch_add(1, Ordering::Relaxed);
        progress.termination = *b"sQ--";
        return finish_local(
            &proxy,
            f,
            Some(b),
            StatusCode::SERVICE_UNAVAILABLE,
            progress,
        );
    };
    progress.t_queue = millis(queued_at);
    let mut slot = Slot::take(&proxy, b, s);

    // Connect, retrying; the last retry may go to another server (`option redispatch`).
    let upgrade = upgrade_protocol(&parts.headers);
    let reuse = backend.spec.options.connection == ConnectionMode::KeepAlive
        && frontend.spec.options.connection == ConnectionMode::KeepAlive
        && upgrade.is_none();
    let connect_started = Instant::now();
    let mut attempts = Attempts::default();
    let (mut sender, mut pooled) = loop {
        let server = &backend.servers[s];
        if reuse && let Some(sender) = server.pool.take().await {
            break (sender, true);
        }
        match server
            .connect(backend.spec.timeout_connect, upgrade.is_some(), reuse)
            .await
        {
            Ok(sender) => break (sender, false),
            Err(error) => {
                tracing::debug!(?error, server = %server.spec.name, "connect failed");
                if !attempts.failed(&proxy, b, &mut s, &mut slot, &mut tried, &up, hash_key) {
                    progress.server = Some(s);
                    progress.termination[0] = b'S';
                    progress.termination[1] = b'C';
                    progress.retries = attempts.made;
                    drop(slot);
                    return finish_local(
                        &proxy,
                        f,
                        Some(b),
                        StatusCode::SERVICE_UNAVAILABLE,
                        progress,
                    );
                }
            }
        }
    };
    progress.t_connect = millis(connect_started);
    progress.retries = attempts.made;
    let server = &backend.servers[s];
    progress.server = Some(s);
    let _server_session = server.counters.enter();

    // The request as the server gets it.
    strip_hop_by_hop(&mut parts.headers, &frontend.kept_headers);
    if let Some(protocol) = &upgrade {
        parts.headers.insert(header::UPGRADE, protocol.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if !reuse {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if let Some(spec) = &backend.spec.cookie {
        let strip = match spec.mode {
            CookieMode::Insert => spec.indirect,
            CookieMode::Prefix => true,
            CookieMode::Rewrite => false,
        };
        if strip {
            let joined: Vec<String> = parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| {
                    cookie::strip_cookie(v, &spec.name, spec.mode == CookieMode::Prefix)
                })
                .collect();
            parts.headers.remove(header::COOKIE);
            if !joined.is_empty()
                && let Ok(value) = HeaderValue::from_str(&joined.join("; "))
            {
                parts.headers.insert(header::COOKIE, value);
            }
        }
    }
    if let Some(forwardfor) = &frontend.spec.options.forwardfor {
        let excepted = forwardfor
            .except
            .is_some_and(|(net, len)| in_network(client.ip(), net, len));
        if !excepted {
            let value = match parts
                .headers
                .get(&forwardfor.header)
                .and_then(|v| v.to_str().ok())
            {
                Some(existing) => format!("{existing}, {}", client.ip()),
                None => client.ip().to_string(),
            };
            if let Ok(value) = HeaderValue::from_str(&value) {
                parts.headers.insert(forwardfor.header.clone(), value);
            }
        }
    }
    let vars = Vars {
        client,
        local,
        frontend: &frontend.spec.name,
        backend: &backend.spec.name,
        server: &server.spec.name,
        request_headers: &received,
    };
    apply_rules(
        &frontend.spec.request_rules,
        &frontend.spec.acls,
        &view,
        &mut parts.headers,
        &vars,
    );
    apply_rules(
        &backend.spec.request_rules,
        &backend.spec.acls,
        &view,
        &mut parts.headers,
        &vars,
    );
    rewrite_path(
        [
            (&frontend.spec.request_rules, &frontend.spec.acls),
            (&backend.spec.request_rules, &backend.spec.acls),
        ],
        &view,
        &vars,
        &mut parts.uri,
    );
    if server.spec.h2 {
        // HTTP/2 servers get the target as :scheme, :authority (the Host) and :path.
        let authority = parts
            .headers
            .remove(header::HOST)
            .and_then(|h| h.to_str().ok().map(str::to_string))
            .unwrap_or_else(|| server.spec.addr.to_string());
        let scheme = if server.spec.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        if let Ok(uri) = format!("{scheme}://{authority}{target}").parse() {
            parts.uri = uri;
        }
        parts.version = hyper::Version::HTTP_2;
    } else {
        // Servers get origin-form targets (RFC 9112 section 3.2.1), whatever form the client
        // used, over HTTP/1.1 whatever version the client spoke.
        if let Some(path_and_query) = parts.uri.path_and_query().cloned() {
            parts.uri = path_and_query.into();
        }
        parts.version = hyper::Version::HTTP_11;
        // hyper sends no body of unknown length on GET and HEAD unless told to chunk it;
        // a body the client sent is part of the message and goes too.
        if matches!(parts.method, hyper::Method::GET | hyper::Method::HEAD)
            && !parts.headers.contains_key(header::CONTENT_LENGTH)
            && !body.is_end_stream()
        {
            parts.headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
    }
    let websocket_key = parts.headers.contains_key(header::SEC_WEBSOCKET_KEY);
    let mut request = Request::from_parts(parts, body);

    // Send; a pooled connection the server closed meanwhile gives the request back unsent,
    // and it goes once more over a new connection.
    let response_started = Instant::now();
    let response = loop {
        let sent = tokio::time::timeout(
            backend.spec.timeout_server,
            sender.try_send_request(request),
        )
        .await;
        match sent {
            Ok(Ok(response)) => break Ok(response),
            Ok(Err(mut error)) => match error.take_message() {
                Some(unsent) if pooled => {
                    match server
                        .connect(backend.spec.timeout_connect, false, reuse)
                        .await
                    {
                        Ok(fresh) => {
                            sender = fresh;
                            pooled = false;
                            request = unsent;
                        }
                        Err(_) => break Err((StatusCode::SERVICE_UNAVAILABLE, *b"SC--")),
                    }
                }
                // The client's body broke (malformed, or stalled past `timeout client`):
                // the client's fault, not the server's (HAProxy's CH-- and cD--).
                _ if body_failed.load(Ordering::Relaxed) => {
                    break Err(
                        if progress._in_flight.activity().expired() == Some(Expired::Client) {
                            (StatusCode::REQUEST_TIMEOUT, *b"cD--")
                        } else {
                            (StatusCode::BAD_REQUEST, *b"CH--")
                        },
                    );
                }
                _ => break Err((StatusCode::BAD_GATEWAY, *b"SH--")),
            },
            Err(_) => break Err((StatusCode::GATEWAY_TIMEOUT, *b"sH--")),
        }
    };
    let mut response = match response {
        Ok(response) => response,
        Err((status, termination)) => {
            progress.termination[0] = termination[0];
            progress.termination[1] = termination[1];
            if termination[0].eq_ignore_ascii_case(&b'c') {
                server
                    .counters
                    .client_aborts
                    .fetch_add(1, Ordering::Relaxed);
                backend
                    .counters
                    .client_aborts
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                server.counters.response(status.as_u16());
            }
            drop(slot);
            return finish_local(&proxy, f, Some(b), status, progress);
        }
    };
    progress.t_response = millis(response_started);
    // A response whose framing could be read two ways (RFC 9112 section 6.3: handled as an
    // error), or a WebSocket handshake the server did not complete (RFC 6455 section 4.1):
    // nothing of it reaches the client, and the connection is not reused.
    let both_framings = response.headers().contains_key(header::TRANSFER_ENCODING)
        && response.headers().contains_key(header::CONTENT_LENGTH);
    let half_handshake = response.status() == StatusCode::SWITCHING_PROTOCOLS
        && websocket_key
        && !response
            .headers()
            .contains_key(header::SEC_WEBSOCKET_ACCEPT);
    if both_framings || half_handshake {
        progress.termination[0] = b'S';
        progress.termination[1] = b'H';
        server.counters.response(502);
        drop(slot);
        return finish_local(&proxy, f, Some(b), StatusCode::BAD_GATEWAY, progress);
    }

    if response.status() == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some() {
        let server_upgrade = hyper::upgrade::on(&mut response);
        let idle = backend.spec.timeout_tunnel;
        tokio::spawn(async move {
            if let (Ok(client_io), Ok(server_io)) = (client_upgrade.await, server_upgrade.await) {
                let stats =
                    tunnel::run(TokioIo::new(client_io), TokioIo::new(server_io), idle).await;
                tracing::debug!(?stats, "tunnel closed");
            }
            drop(slot);
        });
        let (parts, body) = response.into_parts();
        let body = PooledBody::new(body, None).boxed();
        return finish(
            &proxy,
            f,
            Some(b),
            Some(s),
            Response::from_parts(parts, body),
            progress,
            None,
        );
    }

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, &[]);
    if let Some(spec) = &backend.spec.cookie {
        match spec.mode {
            CookieMode::Insert => {
                if spec.indirect {
                    // The server must not set the proxy's cookie itself.
                    remove_set_cookie(&mut parts.headers, &spec.name);
                }
                let valid_here = cookie_server == Some(s) && persisted == Some(s);
                if !valid_here || cookie_refresh {
                    let first = valid_here.then_some(cookie_first).flatten();
                    let value = spec.insert_value(&server.spec.cookie, now, first);
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        parts.headers.append(header::SET_COOKIE, value);
                        progress.termination[3] = if valid_here { b'U' } else { b'I' };
                        if spec.nocache {
                            parts
                                .headers
                                .insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
                        }
                    }
                }
            }
            CookieMode::Rewrite | CookieMode::Prefix => {
                let rewritten: Vec<HeaderValue> = parts
                    .headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| {
                        let text = v.to_str().ok()?;
                        match spec.rewrite_set_cookie(text, &server.spec.cookie) {
                            Some(new) => HeaderValue::from_str(&new).ok(),
                            None => Some(v.clone()),
                        }
                    })
                    .collect();
                parts.headers.remove(header::SET_COOKIE);
                for value in rewritten {
                    parts.headers.append(header::SET_COOKIE, value);
                }
            }
        }
    }
    if let Some(table) = &backend.sessions {
        for value in parts.headers.get_all(header::SET_COOKIE) {
            if let Some((name, session)) = value
                .to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .and_then(|pair| pair.split_once('='))
                && name.trim() == table.cookie
            {
                table.learn(session.trim(), s, Instant::now());
            }
        }
    }
    apply_rules(
        &backend.spec.response_rules,
        &backend.spec.acls,
        &view,
        &mut parts.headers,
        &vars,
    );
    apply_rules(
        &frontend.spec.response_rules,
        &frontend.spec.acls,
        &view,
        &mut parts.headers,
        &vars,
    );
    // HTTP/2 has no Connection header (RFC 9113 section 8.2.2).
    if frontend.spec.options.connection == ConnectionMode::Close && !h2 {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let give_back = reuse.then(|| (sender, server.pool.clone()));
    let body = PooledBody::new(body, give_back).boxed();
    finish(
        &proxy,
        f,
        Some(b),
        Some(s),
        Response::from_parts(parts, body),
        progress,
        Some(slot),
    )
}

fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Removes hop-by-hop headers, those named in `Connection` included except the `kept` ones
/// (what the proxy routed on or sets: a client cannot take them from the server).
fn strip_hop_by_hop(headers: &mut HeaderMap, kept: &[HeaderName]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|name| !kept.contains(name))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn remove_set_cookie(headers: &mut HeaderMap, name: &str) {
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            v.to_str()
                .ok()
                .and_then(|t| t.split_once('='))
                .is_none_or(|(n, _)| n.trim() != name)
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

fn apply_rules(
    rules: &[HeaderRule],
    acls: &[super::acl::Acl],
    view: &RequestView<'_>,
    headers: &mut HeaderMap,
    vars: &Vars<'_>,
) {
    for rule in rules {
        if rule.applies(acls, view) {
            rule.apply(headers, vars);
        }
    }
}

/// Applies the path rules (`replace-path`, `set-path`) of the frontend, then the backend, to
/// `uri`, keeping its query. A path that would not make a valid URI leaves it unchanged.
fn rewrite_path(
    sections: [(&Vec<HeaderRule>, &Vec<super::acl::Acl>); 2],
    view: &RequestView<'_>,
    vars: &Vars<'_>,
    uri: &mut hyper::Uri,
) {
    let mut path: Option<String> = None;
    for (rules, acls) in sections {
        for rule in rules {
            let current = path.as_deref().unwrap_or_else(|| uri.path());
            if rule.applies(acls, view)
                && let Some(new) = rule.new_path(current, vars)
            {
                path = Some(new);
            }
        }
    }
    let Some(path) = path else {
        return;
    };
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    if target.starts_with('/')
        && let Ok(new) = target.parse::<hyper::Uri>()
    {
        *uri = new;
    }
}

/// True for the algorithms whose weights may change as they go (HAProxy applies `slowstart`
/// to dynamic algorithms only: a hash must not move keys while a server ramps up).
fn ramps(algorithm: super::balance::Algorithm) -> bool {
    use super::balance::Algorithm;
    matches!(
        algorithm,
        Algorithm::RoundRobin | Algorithm::LeastConn | Algorithm::Random
    )
}

/// The server for a request: the persisted one if it has room, else the algorithm's choice
/// among up servers with room and not yet `tried`.
pub(super) fn choose(
    backend: &BackendState,
    persisted: Option<usize>,
    tried: &[bool],
    up: &(dyn Fn(usize) -> bool + Sync),
    key: Key<'_>,
) -> Option<usize> {
    let candidates: Vec<Candidate> = backend
        .servers
        .iter()
        .enumerate()
        .map(|(s, server)| Candidate {
            weight: if ramps(backend.spec.balance) {
                server.current_weight()
            } else {
                server.weight.load(Ordering::Relaxed)
            },
            up: !tried[s] && up(s),
            backup: server.spec.backup,
            active: server.active.load(Ordering::Relaxed),
            maxconn: server.spec.maxconn,
        })
        .collect();
    if let Some(s) = persisted {
        let c = &candidates[s];
        return (c.up && (c.maxconn == 0 || c.active < c.maxconn)).then_some(s);
    }
    backend
        .balancer
        .lock()
        .ok()
        .and_then(|mut b| b.choose(backend.spec.balance, &candidates, key))
}

/// Chooses a server, waiting in the backend's queue (FIFO: `Notify` wakes waiters in
/// order) while every usable server is at its maxconn; `None` when no server is up or the
/// queue timeout passed.
pub(super) async fn acquire(
    backend: &BackendState,
    persisted: Option<usize>,
    tried: &[bool],
    up: &(dyn Fn(usize) -> bool + Sync),
    key: Key<'_>,
    since: Instant,
) -> Option<usize> {
    let deadline = since + backend.spec.timeout_queue;
    let mut waiting = None;
    loop {
        let notified = backend.freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(s) = choose(backend, persisted, tried, up, key) {
            return Some(s);
        }
        let any_up = match persisted {
            Some(s) => up(s),
            None => (0..backend.servers.len()).any(|s| !tried[s] && up(s)),
        };
        if !any_up {
            return None;
        }
        if waiting.is_none() {
            waiting = Some(backend.counters.queue());
        }
        if tokio::time::timeout_at(deadline.into(), notified)
            .await
            .is_err()
        {
            return None;
        }
    }
}

/// Connection attempts to a backend's servers (HAProxy's `retries`, `option redispatch`).
#[derive(Default)]
pub(super) struct Attempts {
    /// Retries made so far.
    pub(super) made: u32,
}

impl Attempts {
    /// Books a failed connection to server `*s` of backend `b`. False when the retries are
    /// used up; else true, with `*s` (and `slot`) moved to another server on the last retry
    /// when the backend redispatches.
    #[expect(
        clippy::too_many_arguments,
        reason = "the retry state of one request, kept by its caller"
    )]
    pub(super) fn failed(
        &mut self,
        proxy: &Arc<Proxy>,
        b: usize,
        s: &mut usize,
        slot: &mut Slot,
        tried: &mut [bool],
        up: &(dyn Fn(usize) -> bool + Sync),
        key: Key<'_>,
    ) -> bool {
        let backend = &proxy.backends[b];
        let server = &backend.servers[*s];
        server
            .counters
            .connect_errors
            .fetch_add(1, Ordering::Relaxed);
        backend
            .counters
            .connect_errors
            .fetch_add(1, Ordering::Relaxed);
        if self.made >= backend.spec.retries {
            return false;
        }
        self.made += 1;
        server.counters.retries.fetch_add(1, Ordering::Relaxed);
        backend.counters.retries.fetch_add(1, Ordering::Relaxed);
        if backend.spec.options.redispatch && self.made == backend.spec.retries {
            tried[*s] = true;
            if let Some(other) = choose(backend, None, tried, up, key) {
                server.counters.redispatches.fetch_add(1, Ordering::Relaxed);
                backend
                    .counters
                    .redispatches
                    .fetch_add(1, Ordering::Relaxed);
                *slot = Slot::take(proxy, b, other);
                *s = other;
            }
        }
        true
    }
}

/// A server slot held by a request: counted in `active` until the response is done.
pub(super) struct Slot {
    proxy: Arc<Proxy>,
    backend: usize,
    server: usize,
}

impl Slot {
    pub(super) fn take(proxy: &Arc<Proxy>, backend: usize, server: usize) -> Slot {
        proxy.backends[backend].servers[server]
            .active
            .fetch_add(1, Ordering::Relaxed);
        Slot {
            proxy: proxy.clone(),
            backend,
            server,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let backend = &self.proxy.backends[self.backend];
        backend.servers[self.server]
            .active
            .fetch_sub(1, Ordering::Relaxed);
        backend.freed.notify_one();
    }
}

/// The proxy's own answer (an errorfile when configured, else HAProxy's wording).
/// Answers a request from an `http_request` redirect or deny rule of frontend `f` (or of
/// backend `b`): a redirect to its location, or a refusal with its status, counted as denied.
fn answer_locally(
    proxy: &Arc<Proxy>,
    f: usize,
    b: Option<usize>,
    answer: Answer<'_>,
    parts: &hyper::http::request::Parts,
    mut progress: Progress,
) -> Response<Body> {
    match answer {
        Answer::Redirect(redirect) => {
            let host = parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok());
            let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let location = redirect.location(host, target);
            let mut response = Response::new(
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
            );
            *response.status_mut() =
                StatusCode::from_u16(redirect.code).unwrap_or(StatusCode::FOUND);
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            finish(proxy, f, b, None, response, progress, None)
        }
        Answer::Deny(status) => {
            proxy.frontends[f]
                .counters
                .denied
                .fetch_add(1, Ordering::Relaxed);
            if let Some(b) = b {
                proxy.backends[b]
                    .counters
                    .denied
                    .fetch_add(1, Ordering::Relaxed);
            }
            progress.termination = *b"PR--";
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            finish_local(proxy, f, b, status, progress)
        }
    }
}

fn finish_local(
    proxy: &Arc<Proxy>,
    f: usize,
    b: Option<usize>,
    status: StatusCode,
    progress: Progress,
) -> Response<Body> {
    let page = b
        .and_then(|b| proxy.backends[b].spec.errorfiles.get(&status.as_u16()))
        .or_else(|| proxy.frontends[f].spec.errorfiles.get(&status.as_u16()));
    let response = match page {
        Some(page) => error_page(page),
        None => builtin_page(status),
    };
    finish(proxy, f, b, None, response, progress, None)
}

fn error_page(page: &ErrorPage) -> Response<Body> {
    let mut response = Response::new(
        Full::new(page.body.clone())
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() =
        StatusCode::from_u16(page.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    for (name, value) in &page.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

/// HAProxy's wording for its own answers.
fn builtin_page(status: StatusCode) -> Response<Body> {
    let text: &'static str = match status.as_u16() {
        200 => "<html><body><h1>200 OK</h1>\nService ready.\n</body></html>\n",
        400 => {
            "<html><body><h1>400 Bad request</h1>\nYour browser sent an invalid request.\n</body></html>\n"
        }
        403 => {
            "<html><body><h1>403 Forbidden</h1>\nRequest forbidden by administrative rules.\n</body></html>\n"
        }
        405 => {
            "<html><body><h1>405 Method Not Allowed</h1>\nA request method is not allowed for this resource.\n</body></html>\n"
        }
        431 => {
            "<html><body><h1>431 Request Header Fields Too Large</h1>\nYour browser sent a request whose header fields are too large.\n</body></html>\n"
        }
        408 => {
            "<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n"
        }
        502 => {
            "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n"
        }
        504 => {
            "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n"
        }
        _ => {
            "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n"
        }
    };
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Counts the response and wraps its body so the log line is written when it ends.
fn finish(
    proxy: &Arc<Proxy>,
    f: usize,
    b: Option<usize>,
    s: Option<usize>,
    response: Response<Body>,
    progress: Progress,
    slot: Option<Slot>,
) -> Response<Body> {
    let status = response.status().as_u16();
    proxy.frontends[f].counters.response(status);
    if let Some(b) = b {
        proxy.backends[b].counters.response(status);
        if let Some(s) = s {
            proxy.backends[b].servers[s].counters.response(status);
        }
    }
    let (parts, body) = response.into_parts();
    // HTTP/2 flow control can stall one stream while the connection is busy: its clock
    // tells the connection's watch how long the client has not taken this response.
    let activity = progress._in_flight.activity_arc();
    let clock = activity.is_http2().then(|| activity.stall_clock());
    let body = LoggedBody {
        inner: body,
        bytes: 0,
        clock,
        record: Some(Record {
            proxy: proxy.clone(),
            f,
            b,
            s,
            status,
            progress,
            _slot: slot,
        }),
    };
    Response::from_parts(parts, body.boxed())
}

/// What a [`LoggedBody`] reports when it ends.
struct Record {
    proxy: Arc<Proxy>,
    f: usize,
    b: Option<usize>,
    s: Option<usize>,
    status: u16,
    progress: Progress,
    /// Held until the body is done, so leastconn and maxconn see the whole exchange.
    _slot: Option<Slot>,
}

/// The body sent to the client: counts its bytes, and when finished or dropped (client
/// gone) writes the log line and the byte counters.
struct LoggedBody {
    inner: Body,
    bytes: u64,
    /// HTTP/2 only: whether the response waits for the client.
    clock: Option<StallClock>,
    record: Option<Record>,
}

impl LoggedBody {
    fn done(&mut self, aborted: bool) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let proxy = &record.proxy;
        let frontend = &proxy.frontends[record.f];
        frontend
            .counters
            .bytes_out
            .fetch_add(self.bytes, Ordering::Relaxed);
        if let Some(b) = record.b {
            let backend = &proxy.backends[b];
            backend
                .counters
                .bytes_out
                .fetch_add(self.bytes, Ordering::Relaxed);
            if let Some(s) = record.s {
                backend.servers[s]
                    .counters
                    .bytes_out
                    .fetch_add(self.bytes, Ordering::Relaxed);
            }
        }
        if let Some(clock) = &self.clock {
            clock.not_waiting();
        }
        if aborted && record.progress.termination[0] == b'-' {
            // The client went away, or stopped taking the response past `timeout client`.
            let timed_out =
                record.progress._in_flight.activity().expired() == Some(Expired::Client);
            record.progress.termination[0] = if timed_out { b'c' } else { b'C' };
            record.progress.termination[1] = b'D';
        }
        if frontend.logger.is_off() {
            return;
        }
        let p = &mut record.progress;
        let backend = p.backend.map(|b| &proxy.backends[b]);
        let entry = Entry {
            client: p.client,
            accepted: p.accepted,
            frontend: frontend.spec.name.clone(),
            backend: backend.map_or_else(|| frontend.spec.name.clone(), |b| b.spec.name.clone()),
            server: match (backend, p.server) {
                (Some(b), Some(s)) => b.servers[s].spec.name.clone(),
                _ => "<NOSRV>".into(),
            },
            // hyper hands over a request once its head is read: that time is not seen here.
            t_request: 0,
            t_queue: p.t_queue,
            t_connect: p.t_connect,
            t_response: p.t_response,
            t_total: millis(p.started),
            status: record.status,
            bytes: self.bytes,
            termination: p.termination,
            retries: p.retries,
            request_line: p.request_line.take().unwrap_or_default(),
        };
        frontend.logger.log(format_httplog(&entry));
    }
}

impl HttpBody for LoggedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Some(clock) = &self.clock {
            match &polled {
                Poll::Ready(Some(Ok(_))) => clock.waiting(),
                _ => clock.not_waiting(),
            }
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.done(false);
                }
            }
            Poll::Ready(None) => self.done(false),
            Poll::Ready(Some(Err(_))) => {
                if let Some(record) = &mut self.record {
                    record.progress.termination[0] = b'S';
                    record.progress.termination[1] = b'D';
                }
                self.done(false);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.done(true);
    }
}

/// The client's request body as it goes to the server: notes when it breaks (so the
/// failure is the client's, not the server's), and may have its first frame read ahead (to
/// check it) and given back first.
struct ClientBody {
    first: Option<Frame<Bytes>>,
    rest: Incoming,
    /// Set when the client's body ended in an error.
    failed: Arc<AtomicBool>,
}

impl ClientBody {
    fn new(body: Incoming) -> ClientBody {
        ClientBody {
            first: None,
            rest: body,
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Reads the first frame; an error means the body is malformed.
    async fn read_first(mut self) -> Result<ClientBody, hyper::Error> {
        self.first = self.rest.frame().await.transpose()?;
        Ok(self)
    }
}

impl HttpBody for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        let polled = Pin::new(&mut self.rest).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            self.failed.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.first {
            None => self.rest.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}
