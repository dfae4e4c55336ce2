//! A watch on the bytes an HTTP/1 client sends, for what the HTTP parser (hyper) forgives but
//! a proxy must refuse: a request carrying both Content-Length and Transfer-Encoding. hyper
//! lets Transfer-Encoding win and drops Content-Length (RFC 9112 section 6.3 allows that to
//! a server), but a proxy that forwards such a request can be made to disagree with the
//! server about where it ends: request smuggling. HAProxy answers 400, and so does lb.
//!
//! The guard follows the message framing of the stream (heads, Content-Length bodies, chunked
//! bodies), so pipelined requests and bodies that merely contain such text are told apart.
//! When a head is ambiguous, the guard breaks its final line feed before hyper reads it:
//! hyper then fails to parse the head and answers 400 itself, before anything is forwarded.
//! HTTP/2 (a connection preface) and upgraded connections are left alone.

use std::{
    future::Future as _,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest head the guard collects; a longer one is hyper's to refuse (431).
const MAX_HEAD: usize = 64 * 1024;
/// Headers the guard parses; a request with more is refused by hyper as well.
const MAX_HEADERS: usize = 128;
/// How HTTP/2 with prior knowledge starts.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Where in the client's byte stream the guard is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting a request head (bytes so far).
    Head(Vec<u8>),
    /// Inside a body of known length: bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Not watching any more (HTTP/2, an upgrade, an error hyper will report).
    Off,
}

/// Position inside a chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// Inside chunk data: bytes left, then CRLF.
    Data(u64),
    /// The CRLF after chunk data: bytes of it seen.
    DataEnd(u8),
    /// Trailer lines after the last chunk: bytes of the current line so far.
    Trailer(Vec<u8>),
}

/// What the guard found in one head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A request whose body follows with this framing.
    Framed(Framing),
    /// Both Content-Length and Transfer-Encoding: refuse.
    Ambiguous,
    /// Let hyper decide (unparseable, an upgrade, CONNECT): stop watching.
    StopWatching,
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Content-Length bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// Reads one complete request head.
pub fn judge(head: &[u8]) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Verdict::StopWatching,
    }
    if request.method == Some("CONNECT") {
        return Verdict::StopWatching;
    }
    let mut length = None;
    let mut chunked = false;
    let mut upgrade = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                Some(n) => length = Some(n),
                None => return Verdict::StopWatching,
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => Verdict::Ambiguous,
        // After an upgrade the bytes are another protocol's.
        _ if upgrade => Verdict::StopWatching,
        (None, true) => Verdict::Framed(Framing::Chunked),
        (Some(n), false) => Verdict::Framed(Framing::Length(n)),
        (None, false) => Verdict::Framed(Framing::None),
    }
}

/// The end of a head in `bytes` (index after the blank line), if there is one.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if *byte == b'\n' {
            let line = &bytes[line_start..i];
            if (line.is_empty() || line == b"\r") && line_start > 0 {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

impl State {
    /// Follows `bytes` (the client's next bytes). Returns the offset within `bytes` of the
    /// final line feed of an ambiguous head, if one ended here.
    fn advance(&mut self, mut bytes: &[u8], heads: &mut u64) -> Option<usize> {
        let mut offset = 0;
        while !bytes.is_empty() {
            let used = match self {
                State::Off => return None,
                State::Head(collected) => {
                    // Leading blank lines before a request are ignored (RFC 9112 2.2).
                    if collected.is_empty() {
                        let blank = bytes
                            .iter()
                            .take_while(|b| **b == b'\r' || **b == b'\n')
                            .count();
                        if blank > 0 {
                            bytes = &bytes[blank..];
                            offset += blank;
                            continue;
                        }
                    }
                    let before = collected.len();
                    collected.extend_from_slice(bytes);
                    if collected.starts_with(H2_PREFACE) {
                        *self = State::Off;
                        return None;
                    }
                    if H2_PREFACE.starts_with(collected) {
                        // Maybe HTTP/2: wait for the rest of the preface.
                        return None;
                    }
                    match head_end(collected) {
                        None => {
                            if collected.len() > MAX_HEAD {
                                *self = State::Off;
                            }
                            return None;
                        }
                        Some(end) => {
                            let used = end - before;
                            *heads += 1;
                            let verdict = judge(&collected[..end]);
                            *self = match verdict {
                                Verdict::Framed(Framing::None) => State::Head(Vec::new()),
                                Verdict::Framed(Framing::Length(0)) => State::Head(Vec::new()),
                                Verdict::Framed(Framing::Length(n)) => State::Body(n),
                                Verdict::Framed(Framing::Chunked) => {
                                    State::Chunked(Chunk::Size(Vec::new()))
                                }
                                Verdict::Ambiguous => {
                                    *self = State::Off;
                                    return Some(offset + used - 1);
                                }
                                Verdict::StopWatching => State::Off,
                            };
                            used
                        }
                    }
                }
                State::Body(left) => {
                    let used = (*left).min(bytes.len() as u64) as usize;
                    *left -= used as u64;
                    if *left == 0 {
                        *self = State::Head(Vec::new());
                    }
                    used
                }
                State::Chunked(chunk) => match advance_chunk(chunk, bytes) {
                    ChunkStep::Used(used) => used,
                    ChunkStep::Done(used) => {
                        *self = State::Head(Vec::new());
                        used
                    }
                    ChunkStep::Invalid => {
                        // hyper reports the bad chunk itself.
                        *self = State::Off;
                        return None;
                    }
                },
            };
            bytes = &bytes[used..];
            offset += used;
        }
        None
    }
}

/// What one step through a chunked body did.
enum ChunkStep {
    /// Consumed this many bytes; the body goes on.
    Used(usize),
    /// Consumed this many bytes; the body ended.
    Done(usize),
    /// Not a valid chunked body.
    Invalid,
}

/// Longest chunk-size or trailer line the guard reads.
const MAX_LINE: usize = 4096;

/// Adds `bytes` up to the first line feed to `line`: `Ok` with the line feed's offset when
/// the line is complete, else the step to return (all used, or too long).
fn collect_line(line: &mut Vec<u8>, bytes: &[u8]) -> Result<usize, ChunkStep> {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(newline) => {
            line.extend_from_slice(&bytes[..newline]);
            Ok(newline)
        }
        None => {
            line.extend_from_slice(bytes);
            Err(if line.len() > MAX_LINE {
                ChunkStep::Invalid
            } else {
                ChunkStep::Used(bytes.len())
            })
        }
    }
}

fn advance_chunk(chunk: &mut Chunk, bytes: &[u8]) -> ChunkStep {
    match chunk {
        Chunk::Size(line) => {
            let newline = match collect_line(line, bytes) {
                Ok(newline) => newline,
                Err(step) => return step,
            };
            let text = String::from_utf8_lossy(line);
            let size_text = text.trim_end_matches('\r').split(';').next().unwrap_or("");
            let Ok(size) = u64::from_str_radix(size_text.trim(), 16) else {
                return ChunkStep::Invalid;
            };
            *chunk = if size == 0 {
                Chunk::Trailer(Vec::new())
            } else {
                Chunk::Data(size)
            };
            ChunkStep::Used(newline + 1)
        }
        Chunk::Data(left) => {
            let used = (*left).min(bytes.len() as u64) as usize;
            *left -= used as u64;
            if *left == 0 {
                *chunk = Chunk::DataEnd(0);
            }
            ChunkStep::Used(used)
        }
        Chunk::DataEnd(seen) => {
            // CRLF (a bare LF is tolerated, as hyper does).
            match (bytes[0], *seen) {
                (b'\r', 0) => {
                    *seen = 1;
                    ChunkStep::Used(1)
                }
                (b'\n', _) => {
                    *chunk = Chunk::Size(Vec::new());
                    ChunkStep::Used(1)
                }
                _ => ChunkStep::Invalid,
            }
        }
        Chunk::Trailer(line) => {
            let newline = match collect_line(line, bytes) {
                Ok(newline) => newline,
                Err(step) => return step,
            };
            let blank = line.is_empty() || line.as_slice() == b"\r";
            line.clear();
            if blank {
                ChunkStep::Done(newline + 1)
            } else {
                ChunkStep::Used(newline + 1)
            }
        }
    }
}

/// The client-side timeouts of HTTP/1 connections, HAProxy's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// A request head must be complete this long after it started (or, for a connection's
    /// first request, after the connection was accepted): else 408.
    pub http_request: Duration,
    /// Between requests (nothing in flight), the next must start within this.
    pub http_keep_alive: Duration,
    /// While a request body is arriving, the client may pause this long at most.
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
    /// A request body stalled.
    Client,
}

/// What the connection and the request path share about one client connection.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Requests whose responses are not finished yet.
    in_flight: AtomicUsize,
    /// When the last response finished (ms since `start`).
    last_done_ms: AtomicU64,
    /// Which timeout ended the connection (0: none; see [`Expired`]).
    expired: AtomicU8,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            expired: AtomicU8::new(0),
        }
    }
}

impl Activity {
    /// Marks a request in flight until the returned guard is dropped (its response done).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
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

    fn set_expired(&self, expired: Expired) {
        let code = match expired {
            Expired::HttpRequest => 1,
            Expired::Silent => 2,
            Expired::KeepAlive => 3,
            Expired::Client => 4,
        };
        self.expired.store(code, Ordering::Relaxed);
    }
}

/// A request in flight; dropping it marks its response done.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = self.0.start.elapsed().as_millis() as u64;
        self.0.last_done_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where the client is, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a head.
    BetweenRequests,
    /// Inside a head.
    InHead,
    /// Inside a body.
    InBody,
    /// Not watched (HTTP/2, upgraded).
    Unwatched,
}

impl State {
    fn phase(&self) -> Phase {
        match self {
            State::Head(collected) if collected.is_empty() => Phase::BetweenRequests,
            State::Head(_) => Phase::InHead,
            State::Body(_) | State::Chunked(_) => Phase::InBody,
            State::Off => Phase::Unwatched,
        }
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

/// A client stream with the guard on its reads.
pub struct HeadGuard<IO> {
    inner: IO,
    state: State,
    timeouts: ClientTimeouts,
    activity: Arc<Activity>,
    timer: Pin<Box<tokio::time::Sleep>>,
    requests: u64,
    marks: Marks,
}

impl<IO> HeadGuard<IO> {
    /// Watches `inner`, which starts with a request head, with `timeouts`; `activity` is
    /// shared with the request path.
    pub fn new(inner: IO, timeouts: ClientTimeouts, activity: Arc<Activity>) -> Self {
        let now = Instant::now();
        HeadGuard {
            inner,
            state: State::Head(Vec::new()),
            timeouts,
            activity,
            timer: Box::pin(tokio::time::sleep_until(now.into())),
            requests: 0,
            marks: Marks {
                accepted: now,
                head_started: now,
                last_byte: now,
            },
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> HeadGuard<IO> {
    /// Called when a read found nothing: arms the timer of the current phase and, when it
    /// has passed, ends the connection as that timeout says.
    fn poll_timeout(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let activity = &self.activity;
        let last_done =
            activity.start + Duration::from_millis(activity.last_done_ms.load(Ordering::Relaxed));
        let Some((at, expired)) = deadline(
            self.state.phase(),
            &self.timeouts,
            activity.in_flight.load(Ordering::Relaxed) > 0,
            self.requests,
            self.marks,
            last_done,
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
        self.state = State::Off;
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
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for HeadGuard<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        match polled {
            Poll::Ready(Ok(())) if self.state != State::Off => {
                let fresh_end = buf.filled().len();
                if fresh_end > before {
                    let now = Instant::now();
                    if self.state.phase() == Phase::BetweenRequests {
                        self.marks.head_started = now;
                    }
                    self.marks.last_byte = now;
                }
                let ambiguous = {
                    let this = &mut *self;
                    let fresh = &buf.filled()[before..fresh_end];
                    this.state.advance(fresh, &mut this.requests)
                };
                if let Some(at) = ambiguous {
                    // A NUL where the head's final line feed was: no parser takes that for
                    // the end of a head, so hyper refuses the request with 400.
                    buf.filled_mut()[before + at] = 0;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.poll_timeout(cx),
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for HeadGuard<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `step` bytes; returns the offsets of broken heads.
    fn feed(stream: &[u8], step: usize) -> Vec<usize> {
        let mut state = State::Head(Vec::new());
        let mut found = Vec::new();
        let mut heads = 0;
        for (i, piece) in stream.chunks(step).enumerate() {
            if let Some(at) = state.advance(piece, &mut heads) {
                found.push(i * step + at);
            }
        }
        found
    }

    #[test]
    fn both_framings_are_caught_in_either_order_and_at_any_read_size() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n"[..],
        ] {
            let end = head_end(raw).expect("a head");
            for step in [1, 2, 7, raw.len()] {
                assert_eq!(feed(raw, step), vec![end - 1], "read size {step}");
            }
        }
    }

    #[test]
    fn bodies_and_pipelined_requests_are_followed() {
        // A Content-Length body that merely contains such headers, then a chunked request
        // with a trailer, then a GET: nothing to refuse.
        let body = b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!(
            "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        stream.extend_from_slice(body);
        stream.extend_from_slice(
            b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n0\r\nX-Trailer: Content-Length: 3\r\n\r\n\
              GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        for step in [1, 3, stream.len()] {
            assert!(feed(&stream, step).is_empty(), "read size {step}");
        }
        // The same, followed by an ambiguous request: caught at its own head's end.
        let good = stream.len();
        let bad = b"POST /d HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        stream.extend_from_slice(bad);
        assert_eq!(feed(&stream, 5), vec![good + bad.len() - 1]);
    }

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
    fn http2_upgrades_and_connect_are_left_alone() {
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12Content-Length: 1\r\nTransfer-Encoding: x\r\n\r\n";
        assert!(feed(h2, 4).is_empty());
        let upgrade =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
                        POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(feed(upgrade, 9).is_empty(), "tunnel bytes are not requests");
        assert_eq!(
            judge(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"),
            Verdict::StopWatching
        );
        assert_eq!(
            judge(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Verdict::Framed(Framing::None)
        );
    }
}
