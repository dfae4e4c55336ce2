//! The HTTP/1.1 proxy: frontends accept clients, route each request by ACL to a backend,
//! choose an up server with the backend's algorithm, forward, and stream the answer back.
//! Health comes from the same HealthBoard as L4 (a backend's servers are board entries).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::Incoming,
    header::{HeaderName, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

use super::{
    acl::RequestView,
    balance::{Balancer, Candidate, Key},
};
use crate::{
    config::{BackendSpec, FrontendSpec},
    health::HealthBoard,
};

type Body = BoxBody<Bytes, hyper::Error>;

/// A backend with its run-time state.
struct BackendState {
    spec: BackendSpec,
    /// Its entry on the health board.
    board_index: usize,
    balancer: Mutex<Balancer>,
    active: Vec<AtomicU32>,
}

/// Everything a request handler reads.
struct Shared {
    frontends: Vec<FrontendSpec>,
    backends: Vec<BackendState>,
    board: watch::Receiver<HealthBoard>,
}

/// Headers that describe one hop and are not forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Opens a listening socket that may bind an address this host does not hold yet
/// (IP_FREEBIND), so a frontend on a VRRP VIP starts on a backup node.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv4() {
        socket.set_freebind_v4(true)?;
    } else {
        socket.set_freebind_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Runs every frontend until the returned tasks are dropped. `board_base` is the board index
/// of the first backend (L4 services come first).
pub fn spawn(
    frontends: Vec<FrontendSpec>,
    backends: Vec<BackendSpec>,
    board_base: usize,
    board: watch::Receiver<HealthBoard>,
) -> std::io::Result<tokio::task::JoinSet<()>> {
    let backends = backends
        .into_iter()
        .enumerate()
        .map(|(i, spec)| BackendState {
            active: spec.servers.iter().map(|_| AtomicU32::new(0)).collect(),
            spec,
            board_index: board_base + i,
            balancer: Mutex::new(Balancer::default()),
        })
        .collect();
    let shared = Arc::new(Shared {
        frontends,
        backends,
        board,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (f, frontend) in shared.frontends.iter().enumerate() {
        for addr in &frontend.bind {
            let listener = bind(*addr)?;
            tracing::info!(frontend = %frontend.name, %addr, "listening");
            let shared = shared.clone();
            tasks.spawn(async move {
                loop {
                    let Ok((stream, peer)) = listener.accept().await else {
                        continue;
                    };
                    let shared = shared.clone();
                    tokio::spawn(async move { serve_client(stream, peer, f, shared).await });
                }
            });
        }
    }
    Ok(tasks)
}

async fn serve_client(stream: TcpStream, peer: SocketAddr, frontend: usize, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let timeout = shared.frontends[frontend].timeout_client;
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(request, peer, frontend, &shared).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, %peer, "client connection ended");
    }
}

fn full(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/html"));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// HAProxy's wording for its own answers.
fn no_server() -> Response<Body> {
    full(
        StatusCode::SERVICE_UNAVAILABLE,
        "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n",
    )
}

async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    f: usize,
    shared: &Shared,
) -> Response<Body> {
    let frontend = &shared.frontends[f];
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(n, v)| {
            v.to_str()
                .ok()
                .map(|v| (n.as_str().to_string(), v.to_string()))
        })
        .collect();
    let view = RequestView {
        method: &method,
        path: &path,
        query: query.as_deref(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect(),
        src: Some(peer.ip()),
    };
    let chosen_backend = frontend
        .rules
        .iter()
        .find(|(_, condition)| condition.holds(&frontend.acls, &view))
        .map(|(b, _)| *b)
        .or(frontend.default_backend);
    let Some(b) = chosen_backend else {
        tracing::info!(
            "{} -/- 503 {method} {path} {peer} (no backend)",
            frontend.name
        );
        return no_server();
    };
    let backend = &shared.backends[b];
    let board = shared.board.borrow().clone();
    let mut tried = vec![false; backend.spec.servers.len()];
    let mut attempts = 0;
    let (request_parts, body) = request.into_parts();
    loop {
        let candidates: Vec<Candidate> = backend
            .spec
            .servers
            .iter()
            .enumerate()
            .map(|(s, server)| Candidate {
                weight: server.weight,
                up: !tried[s]
                    && board
                        .get(&(backend.board_index, s as u32))
                        .is_none_or(|st| st.in_service()),
                backup: server.backup,
                active: backend.active[s].load(Ordering::Relaxed),
                maxconn: server.maxconn,
            })
            .collect();
        let key = Key {
            src: Some(peer.ip()),
            path: Some(&path),
        };
        let choice = backend
            .balancer
            .lock()
            .ok()
            .and_then(|mut b| b.choose(backend.spec.balance, &candidates, key));
        let Some(s) = choice else {
            tracing::info!(
                "{} {}/- 503 {method} {path} {peer} (no server up)",
                frontend.name,
                backend.spec.name
            );
            return no_server();
        };
        let server = &backend.spec.servers[s];
        tried[s] = true;
        attempts += 1;
        let connected = tokio::time::timeout(
            backend.spec.timeout_connect,
            TcpStream::connect(server.addr),
        )
        .await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            _ if attempts <= backend.spec.retries as usize => {
                tracing::warn!(
                    "{} {}/{} connection failed; retrying another server",
                    frontend.name,
                    backend.spec.name,
                    server.name
                );
                continue;
            }
            _ => {
                tracing::info!(
                    "{} {}/{} 503 {method} {path} {peer} (connect failed)",
                    frontend.name,
                    backend.spec.name,
                    server.name
                );
                return no_server();
            }
        };
        let _ = stream.set_nodelay(true);
        backend.active[s].fetch_add(1, Ordering::Relaxed);
        let response = forward(
            request_parts,
            body,
            stream,
            peer,
            frontend.forwardfor,
            backend.spec.timeout_server,
        )
        .await;
        backend.active[s].fetch_sub(1, Ordering::Relaxed);
        let response = response.unwrap_or_else(|status| {
            let text = if status == StatusCode::GATEWAY_TIMEOUT {
                "<html><body><h1>504 Gateway Time-out</h1>\nThe server didn't respond in time.\n</body></html>\n"
            } else {
                "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n"
            };
            full(status, text)
        });
        tracing::info!(
            "{} {}/{} {} {method} {path} {peer}",
            frontend.name,
            backend.spec.name,
            server.name,
            response.status().as_u16()
        );
        return response;
    }
}

/// Sends the request over `stream` and returns the server's response (its body streamed), or
/// the status to answer with (502, 504).
async fn forward(
    mut parts: hyper::http::request::Parts,
    body: Incoming,
    stream: TcpStream,
    peer: SocketAddr,
    forwardfor: bool,
    timeout: Duration,
) -> Result<Response<Body>, StatusCode> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if forwardfor {
        let value = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(existing) => format!("{existing}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-for"), value);
        }
    }
    // Servers get origin-form targets (RFC 9112 3.2.1), whatever form the client used.
    if let Some(path_and_query) = parts.uri.path_and_query().cloned() {
        parts.uri = path_and_query.into();
    }
    let request = Request::from_parts(parts, body);
    let response = tokio::time::timeout(timeout, sender.send_request(request))
        .await
        .map_err(|_| StatusCode::GATEWAY_TIMEOUT)?
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    let (mut parts, body) = response.into_parts();
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, body.boxed()))
}
