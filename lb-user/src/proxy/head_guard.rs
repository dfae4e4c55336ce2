//! The client stream as the HTTP server (hyper) sees it: every byte a client sends passes
//! the [`Framer`] first, which alone decides the HTTP/1 framing, and the client's timeouts
//! run on what it sends and on what it takes.
//!
//! - A refused head (both framings, a bad length or coding, a fragment, too many fields) has
//!   its final line feed broken before hyper reads it: hyper then answers 400 itself, in
//!   order after the answers before it, and closes. A head past `max_header_size` is
//!   delivered as is and hyper answers 431 (its limit is the same). A body that breaks its
//!   framing is cut where it breaks: hyper sees the body end in an error (the request path
//!   answers 400) and never the bytes after it.
//! - After the message of an upgrade request (an `Upgrade` or a CONNECT), the bytes that
//!   follow are held until the request path says whether the connection switched protocols
//!   ([`Activity::settle`]): only then are they either tunnel bytes or the next head.
//! - Timeouts, HAProxy's words: `timeout http_request` for a head, `timeout
//!   http_keep_alive` between requests, `timeout client` while a body arrives and while a
//!   write to the client does not progress (a client that stops reading gives its server
//!   slot back).
//!
//! HTTP/2 (a connection preface) and switched connections are not framed; their writes are
//! still timed.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
};

use super::framing::{Framer, Limits, Phase, Step};

/// The client-side timeouts of HTTP/1 connections, HAProxy's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// A request head must be complete this long after it started (or, for a connection's
    /// first request, after the connection was accepted): else 408.
    pub http_request: Duration,
    /// Between requests (nothing in flight), the next must start within this.
    pub http_keep_alive: Duration,
    /// While a request body is arriving, the client may pause this long at most; a write
    /// to the client may wait this long at most.
    pub client: Duration,
}

/// Which timeout ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A head that started did not finish in time (answered 408).
    HttpRequest,
    /// A connection that never sent a byte.
    Silent,
    /// An idle keep-alive connection (closed quietly).
    KeepAlive,
    /// A request body stalled, or the client stopped taking its response.
    Client,
}

/// The answer to an upgrade request the guard holds bytes for.
#[derive(Debug, Default)]
struct UpgradeWait {
    /// The request (numbered from 1 in arrival order) whose answer is awaited.
    request: Option<u64>,
    /// Its answer: switched protocols or not.
    decided: Option<bool>,
    /// The guard's read, to wake when the answer comes.
    waker: Option<Waker>,
}

/// What the connection and the request path share about one client connection.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Requests whose responses are not finished yet.
    in_flight: AtomicUsize,
    /// Requests handed to the request path so far (numbers them from 1).
    requests: AtomicU64,
    /// When the last response finished (ms since `start`).
    last_done_ms: AtomicU64,
    /// Which timeout ended the connection (0: none; see [`Expired`]).
    expired: AtomicU8,
    /// The client spoke HTTP/2.
    http2: AtomicBool,
    /// The pending upgrade answer, if the guard holds bytes.
    upgrade: Mutex<UpgradeWait>,
    /// Woken when the client turns out to speak HTTP/2.
    http2_seen: Notify,
    /// HTTP/2 responses waiting for the client to take their next bytes: each clock holds
    /// since when (ms since `start`, plus one; 0 while not waiting on the client).
    stalls: Mutex<Vec<Weak<AtomicU64>>>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_done_ms: AtomicU64::new(0),
            expired: AtomicU8::new(0),
            http2: AtomicBool::new(false),
            upgrade: Mutex::new(UpgradeWait::default()),
            http2_seen: Notify::new(),
            stalls: Mutex::new(Vec::new()),
        }
    }
}

impl Activity {
    /// Marks a request in flight until the returned guard is dropped (its response done).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let number = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        InFlight {
            activity: self.clone(),
            number,
        }
    }

    /// Which timeout ended the connection, if one did.
    pub fn expired(&self) -> Option<Expired> {
        match self.expired.load(Ordering::Relaxed) {
            1 => Some(Expired::HttpRequest),
            2 => Some(Expired::Silent),
            3 => Some(Expired::KeepAlive),
            4 => Some(Expired::Client),
            _ => None,
        }
    }

    /// Records which timeout ends the connection.
    pub fn set_expired(&self, expired: Expired) {
        let code = match expired {
            Expired::HttpRequest => 1,
            Expired::Silent => 2,
            Expired::KeepAlive => 3,
            Expired::Client => 4,
        };
        self.expired.store(code, Ordering::Relaxed);
    }

    /// Whether the client speaks HTTP/2.
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// Resolves once the client has spoken HTTP/2 (never for HTTP/1).
    pub async fn http2(&self) {
        if !self.is_http2() {
            self.http2_seen.notified().await;
        }
    }

    /// A clock for one response: [`StallClock::waiting`] when it waits for the client to take
    /// its next bytes, [`StallClock::not_waiting`] otherwise. Starts waiting.
    pub fn stall_clock(self: &Arc<Self>) -> StallClock {
        let clock = Arc::new(AtomicU64::new(self.now_mark()));
        if let Ok(mut stalls) = self.stalls.lock() {
            stalls.retain(|c| c.strong_count() > 0);
            stalls.push(Arc::downgrade(&clock));
        }
        StallClock {
            activity: self.clone(),
            since: clock,
        }
    }

    /// Since when the response that has waited longest for the client has been waiting.
    pub fn oldest_stall(&self) -> Option<Instant> {
        let stalls = self.stalls.lock().ok()?;
        stalls
            .iter()
            .filter_map(Weak::upgrade)
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|mark| *mark > 0)
            .min()
            .map(|mark| self.start + Duration::from_millis(mark - 1))
    }

    fn now_mark(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    /// Responses not finished yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// When the connection was last busy: the later of its start and the end of its last
    /// response.
    pub fn idle_since(&self) -> Instant {
        self.start + Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed))
    }

    /// The request path's answer to request `number`: whether the connection switched
    /// protocols after it. Releases the bytes the guard holds if it waits for that answer.
    pub fn settle(&self, number: u64, upgraded: bool) {
        let Ok(mut wait) = self.upgrade.lock() else {
            return;
        };
        if wait.request == Some(number) {
            wait.decided = Some(upgraded);
            if let Some(waker) = wait.waker.take() {
                waker.wake();
            }
        }
    }

    /// The guard holds bytes after request `number`.
    fn hold_for(&self, number: u64) {
        if let Ok(mut wait) = self.upgrade.lock() {
            *wait = UpgradeWait {
                request: Some(number),
                decided: None,
                waker: None,
            };
        }
    }

    /// The answer the guard waits for, or `None` (then `cx` is woken when it comes).
    fn poll_decision(&self, cx: &Context<'_>) -> Option<bool> {
        let mut wait = self.upgrade.lock().ok()?;
        match wait.decided {
            Some(upgraded) => {
                *wait = UpgradeWait::default();
                Some(upgraded)
            }
            None => {
                wait.waker = Some(cx.waker().clone());
                None
            }
        }
    }
}

/// Whether one HTTP/2 response waits for its client (see [`Activity::stall_clock`]).
#[derive(Debug)]
pub struct StallClock {
    activity: Arc<Activity>,
    since: Arc<AtomicU64>,
}

impl StallClock {
    /// The response handed bytes on and waits for the client to take more.
    pub fn waiting(&self) {
        self.since
            .store(self.activity.now_mark(), Ordering::Relaxed);
    }

    /// The response waits for its server, or is done.
    pub fn not_waiting(&self) {
        self.since.store(0, Ordering::Relaxed);
    }
}

/// A request in flight; dropping it marks its response done.
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<Activity>,
    /// The request's number on its connection (from 1).
    number: u64,
}

impl InFlight {
    /// The request's number on its connection, from 1.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The connection the request came on.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The connection the request came on, shared.
    pub fn activity_arc(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        let ms = activity.start.elapsed().as_millis() as u64;
        activity.last_done_ms.store(ms, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When things happened on a client connection.
#[derive(Debug, Clone, Copy)]
struct Marks {
    /// The connection was accepted.
    accepted: Instant,
    /// The current (or last) head's first byte.
    head_started: Instant,
    /// The last byte from the client.
    last_byte: Instant,
}

/// The deadline that applies while the client sends nothing, and what expires then.
/// `requests` is how many heads the client completed so far; `last_done` when the last
/// response finished.
fn deadline(
    phase: Phase,
    timeouts: &ClientTimeouts,
    in_flight: bool,
    requests: u64,
    marks: Marks,
    last_done: Instant,
) -> Option<(Instant, Expired)> {
    let Marks {
        accepted,
        head_started,
        last_byte,
    } = marks;
    match phase {
        Phase::Unwatched => None,
        // Waiting for a response: the client has nothing to send.
        Phase::BetweenRequests if in_flight => None,
        Phase::BetweenRequests if requests == 0 => {
            Some((accepted + timeouts.http_request, Expired::Silent))
        }
        Phase::BetweenRequests => Some((
            last_byte.max(last_done) + timeouts.http_keep_alive,
            Expired::KeepAlive,
        )),
        Phase::InHead => Some((head_started + timeouts.http_request, Expired::HttpRequest)),
        Phase::InBody => Some((last_byte + timeouts.client, Expired::Client)),
    }
}

/// The response a client gets when its head does not arrive in time.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Time-out\r\nContent-Length: 110\r\n\
Cache-Control: no-cache\r\nConnection: close\r\nContent-Type: text/html\r\n\r\n\
<html><body><h1>408 Request Time-out</h1>\nYour browser didn't send a complete request in time.\n</body></html>\n";

/// Where the guard's reads stand besides the framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// Reads pass (through the framer).
    Open,
    /// Bytes after an upgrade request wait for its answer.
    Holding,
    /// The client's bytes were refused: the next read fails.
    Refused,
}

/// A client stream with the guard on its reads and writes.
pub struct HeadGuard<IO> {
    inner: IO,
    framer: Framer,
    reading: Reading,
    /// Bytes read but not yet handed on (held after an upgrade request).
    held: Vec<u8>,
    timeouts: ClientTimeouts,
    activity: Arc<Activity>,
    timer: Pin<Box<tokio::time::Sleep>>,
    marks: Marks,
    /// Since when a write to the client has been waiting, and its deadline.
    write_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> HeadGuard<IO> {
    /// Watches `inner`, accepted at `accepted` (before any TLS handshake), which starts with
    /// a request head or the HTTP/2 preface, with `timeouts` and head `limits`; `activity`
    /// is shared with the request path.
    pub fn new(
        inner: IO,
        accepted: Instant,
        timeouts: ClientTimeouts,
        limits: Limits,
        activity: Arc<Activity>,
    ) -> Self {
        let now = accepted;
        HeadGuard {
            inner,
            framer: Framer::new(limits),
            reading: Reading::Open,
            held: Vec::new(),
            timeouts,
            activity,
            timer: Box::pin(tokio::time::sleep_until(now.into())),
            marks: Marks {
                accepted: now,
                head_started: now,
                last_byte: now,
            },
            write_timer: None,
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> HeadGuard<IO> {
    /// Called when a read found nothing: arms the timer of the current phase and, when it
    /// has passed, ends the connection as that timeout says.
    fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let activity = &self.activity;
        let Some((at, expired)) = deadline(
            self.framer.phase(),
            &self.timeouts,
            activity.in_flight() > 0,
            self.framer.heads(),
            self.marks,
            activity.idle_since(),
        ) else {
            return Poll::Pending;
        };
        let at = tokio::time::Instant::from_std(at);
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.activity.set_expired(expired);
        self.reading = Reading::Refused;
        match expired {
            Expired::HttpRequest => {
                // Best effort, as HAProxy does: the answer fits any socket buffer.
                let _ = Pin::new(&mut self.inner).poll_write(cx, REQUEST_TIMEOUT);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timeout http-request",
                )))
            }
            // The end of the stream: hyper closes the connection without a word.
            Expired::Silent | Expired::KeepAlive => Poll::Ready(Ok(())),
            Expired::Client => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timeout client",
            ))),
        }
    }

    /// Frames the bytes `buf` got from `before` on; cuts, breaks or holds them as the
    /// framer says.
    fn frame(&mut self, buf: &mut ReadBuf<'_>, before: usize) -> Poll<io::Result<()>> {
        let end = buf.filled().len();
        if self.framer.is_off() {
            return Poll::Ready(Ok(()));
        }
        match self.framer.advance(&buf.filled()[before..end]) {
            Step::Continue => {}
            Step::TooLong => {
                // hyper's buffer holds at least as much: it answers 431 without reading on.
                self.reading = Reading::Refused;
            }
            Step::Http2 => {
                self.activity.http2.store(true, Ordering::Relaxed);
                self.activity.http2_seen.notify_one();
            }
            Step::RefuseHead { final_lf, why } => {
                tracing::debug!(?why, "request head refused");
                // A NUL where the head's final line feed was: no parser takes that for the
                // end of a head, so hyper refuses the request with 400.
                buf.filled_mut()[before + final_lf] = 0;
                self.reading = Reading::Refused;
            }
            Step::RefuseBody { at, why } => {
                tracing::debug!(?why, "request body refused");
                buf.set_filled(before + at);
                self.reading = Reading::Refused;
                if at == 0 {
                    return Poll::Ready(Err(refused()));
                }
            }
            Step::Hold { at } => {
                let mut held = buf.filled()[before + at..end].to_vec();
                held.append(&mut self.held);
                self.held = held;
                buf.set_filled(before + at);
                self.reading = Reading::Holding;
                self.activity.hold_for(self.framer.heads());
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn refused() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "request framing refused")
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.reading {
            Reading::Refused => return Poll::Ready(Err(refused())),
            Reading::Holding => match this.activity.poll_decision(cx) {
                None => return Poll::Pending,
                Some(upgraded) => {
                    this.framer.decided(upgraded);
                    this.reading = Reading::Open;
                }
            },
            Reading::Open => {}
        }
        let before = buf.filled().len();
        if !this.held.is_empty() {
            let n = this.held.len().min(buf.remaining());
            buf.put_slice(&this.held[..n]);
            this.held.drain(..n);
            return this.frame(buf, before);
        }
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = Instant::now();
                    if this.framer.phase() == Phase::BetweenRequests {
                        this.marks.head_started = now;
                    }
                    this.marks.last_byte = now;
                }
                this.frame(buf, before)
            }
            Poll::Pending => this.poll_timeout(cx),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> HeadGuard<IO> {
    /// Times a write that could not proceed: past `timeout client` without progress, the
    /// client is taken for gone.
    fn poll_write_stalled<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.write_timer = None;
            return polled;
        }
        let client = self.timeouts.client;
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(client)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.write_timer = None;
        self.activity.set_expired(Expired::Client);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "timeout client (the client does not read)",
        )))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeadGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.poll_write_stalled(cx, polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.poll_write_stalled(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.poll_write_stalled(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_has_its_timeout() {
        let timeouts = ClientTimeouts {
            http_request: Duration::from_secs(5),
            http_keep_alive: Duration::from_secs(2),
            client: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let marks = Marks {
            accepted: t0,
            head_started: at(10),
            last_byte: at(11),
        };
        let first = deadline(Phase::BetweenRequests, &timeouts, false, 0, marks, t0);
        assert_eq!(
            first,
            Some((at(5), Expired::Silent)),
            "first request: from accept"
        );
        let idle = deadline(Phase::BetweenRequests, &timeouts, false, 1, marks, at(12));
        assert_eq!(
            idle,
            Some((at(14), Expired::KeepAlive)),
            "after the last response"
        );
        assert_eq!(
            deadline(Phase::BetweenRequests, &timeouts, true, 1, marks, t0),
            None,
            "a response is on its way: the client may be quiet"
        );
        assert_eq!(
            deadline(Phase::InHead, &timeouts, false, 1, marks, t0),
            Some((at(15), Expired::HttpRequest))
        );
        assert_eq!(
            deadline(Phase::InBody, &timeouts, true, 1, marks, t0),
            Some((at(41), Expired::Client))
        );
        assert_eq!(
            deadline(Phase::Unwatched, &timeouts, false, 1, marks, t0),
            None
        );
    }

    #[test]
    fn an_answer_releases_only_the_request_it_is_for() {
        let activity = Arc::new(Activity::default());
        let first = activity.request();
        let second = activity.request();
        assert_eq!((first.number(), second.number()), (1, 2));
        activity.hold_for(2);
        let waker = futures_waker();
        let cx = Context::from_waker(&waker);
        // The first request's answer is not the one held for.
        activity.settle(1, false);
        assert_eq!(activity.poll_decision(&cx), None);
        activity.settle(2, true);
        assert_eq!(activity.poll_decision(&cx), Some(true));
    }

    fn futures_waker() -> Waker {
        Waker::noop().clone()
    }
}
