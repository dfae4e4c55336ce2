//! Connections to servers: HTTP/1.1 connections kept idle per server after a response is
//! read to its end and reused by later requests of any client (HAProxy's `http-reuse safe`),
//! dropped after an idle time shorter than servers' usual keep-alive timeouts.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hyper::{
    Request, Response,
    body::{Body as HttpBody, Frame, Incoming, SizeHint},
    client::conn::{TrySendError, http1::SendRequest, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::tls::UpstreamTls;

/// Idle connections older than this are closed rather than reused: most servers close idle
/// keep-alive connections after 5 s or more (nginx 75 s, Apache 5 s), and a request sent on
/// a connection the server is closing fails.
const IDLE_LIMIT: Duration = Duration::from_secs(4);
/// How long a pooled connection may take to become ready before another is used.
const READY_WAIT: Duration = Duration::from_millis(100);
/// Idle connections kept per server at most. HTTP/2 clients can have many requests in
/// flight (100 streams per connection): a pool smaller than the concurrency closes and
/// reopens server connections under load (HAProxy keeps every one: `pool-max-conn -1`).
const MAX_IDLE: usize = 2048;

/// Request and response bodies as the proxy passes them on.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// A connection to a server, ready for a request.
pub enum Sender {
    /// HTTP/1.1: one request at a time.
    Http1(SendRequest<Body>),
    /// HTTP/2 (`proto h2`): requests are streams of one shared connection.
    Http2(http2::SendRequest<Body>),
}

impl Sender {
    /// The connection is gone (closed by the server, or after an error).
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }

    /// A request may be sent now.
    pub fn is_ready(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_ready(),
            Sender::Http2(s) => s.is_ready(),
        }
    }

    /// Waits until a request may be sent.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        }
    }

    /// Sends `request`; a request the connection could not take is given back in the error.
    pub async fn try_send_request(
        &mut self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        match self {
            Sender::Http1(s) => s.try_send_request(request).await,
            Sender::Http2(s) => s.try_send_request(request).await,
        }
    }
}

/// Why no connection could be made.
#[derive(Debug)]
pub enum ConnectError {
    /// The server refused or was unreachable.
    Failed(std::io::Error),
    /// No answer within `timeout connect`.
    TimedOut,
    /// The HTTP handshake over the new connection failed.
    Handshake(hyper::Error),
}

/// Idle connections to one server.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<Vec<(Sender, Instant)>>,
    /// The HTTP/2 connection every request shares (`proto h2`).
    shared: Mutex<Option<http2::SendRequest<Body>>>,
}

impl Pool {
    /// An idle connection that can take a request, if there is one (stale ones are closed
    /// on the way); for an HTTP/2 server, the shared connection.
    pub async fn take(&self) -> Option<Sender> {
        let shared = self
            .shared
            .lock()
            .ok()
            .and_then(|s| s.as_ref().filter(|s| !s.is_closed()).cloned());
        if let Some(mut shared) = shared {
            if shared.is_ready() {
                return Some(Sender::Http2(shared));
            }
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, shared.ready()).await {
                return Some(Sender::Http2(shared));
            }
        }
        loop {
            let (mut sender, since) = self.idle.lock().ok()?.pop()?;
            if since.elapsed() >= IDLE_LIMIT || sender.is_closed() {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            // A connection comes back when its response was read to the end; the connection
            // task may need a moment more to be ready for the next request.
            if let Ok(Ok(())) = tokio::time::timeout(READY_WAIT, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    /// Keeps `sender` for reuse unless its connection is closing.
    pub fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let sender = match sender {
            Sender::Http2(sender) => {
                if let Ok(mut shared) = self.shared.lock()
                    && shared.as_ref().is_none_or(|s| s.is_closed())
                {
                    *shared = Some(sender);
                }
                return;
            }
            http1 => http1,
        };
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() >= MAX_IDLE {
                idle.remove(0);
            }
            idle.push((sender, Instant::now()));
        }
    }
}

/// Opens a connection to `addr` and runs its HTTP/1.1 client side (HTTP/2 with `h2`);
/// `upgrades` keeps an HTTP/1.1 connection usable as a tunnel after a `101 Switching
/// Protocols`.
pub async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    upgrades: bool,
    tls: Option<&UpstreamTls>,
    h2: bool,
) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(ConnectError::Failed(error)),
        Err(_) => return Err(ConnectError::TimedOut),
    };
    let _ = stream.set_nodelay(true);
    match tls {
        None if h2 => start_h2(stream).await,
        None => start(stream, upgrades).await,
        Some(tls) => match tokio::time::timeout(timeout, tls.connect(stream)).await {
            Ok(Ok(stream)) if h2 => {
                let negotiated = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                if !negotiated {
                    return Err(ConnectError::Failed(std::io::Error::other(
                        "the server did not agree to HTTP/2 (ALPN h2)",
                    )));
                }
                start_h2(stream).await
            }
            Ok(Ok(stream)) => start(stream, upgrades).await,
            Ok(Err(error)) => Err(ConnectError::Failed(error)),
            Err(_) => Err(ConnectError::TimedOut),
        },
    }
}

/// Runs the HTTP/2 client side over a connected (and maybe TLS) stream.
async fn start_h2<IO>(stream: IO) -> Result<Sender, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Sender::Http2(sender))
}

/// Runs the HTTP/1.1 client side over a connected (and maybe TLS) stream.
async fn start<IO>(stream: IO, upgrades: bool) -> Result<Sender, ConnectError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    if upgrades {
        tokio::spawn(async move {
            let _ = connection.with_upgrades().await;
        });
    } else {
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    Ok(Sender::Http1(sender))
}

/// A server's response body that hands its connection back to the pool once read to the
/// end. Dropped early (the client went away), the connection is closed instead: it still
/// holds unread data.
pub struct PooledBody {
    inner: Incoming,
    give_back: Option<(Sender, Arc<Pool>)>,
}

impl PooledBody {
    /// Wraps `inner`, read over `sender` (`None`: the connection is not to be reused).
    pub fn new(inner: Incoming, give_back: Option<(Sender, Arc<Pool>)>) -> Self {
        let mut body = PooledBody { inner, give_back };
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((sender, pool)) = self.give_back.take() {
            pool.put(sender);
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            _ => {}
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
