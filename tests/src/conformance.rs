//! The request-path conformance table: raw requests in, the statuses the client must get and
//! the exact bytes the server behind the proxy must see. Each row is built from RFC 9112 (HTTP/1.1
//! framing), RFC 9113 (HTTP/2) or public desync research, and names the defect it guards against
//! when it has one. The lab test `lab_conformance` runs the table against lb; `cargo xtask bench
//! conformance` runs it against lb, HAProxy and nginx side by side so their differences show.
//!
//! Layout: [`Recorder`] (the server behind the proxy: records every byte, answers each request it
//! can frame); [`h1_exchange`] (raw bytes over one connection, the statuses of the answers);
//! [`vectors`] (the table); [`run_vector`] (one row against one proxy).

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::h2raw::{self, H2Request, HeaderBlock, StreamOutcome};

/// The server behind the proxy: records the bytes of every connection, in arrival order, and
/// answers each request it can frame with `200` and body `ok`. Paths with a behaviour of their
/// own: `/big` answers 4 MiB; `/resp-cl-te` answers with both Content-Length and
/// Transfer-Encoding; `/ws-noaccept` answers 101 without `Sec-WebSocket-Accept`.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    /// Serves `listener` for `lifetime`.
    pub async fn serve(self, listener: TcpListener, lifetime: Duration) {
        crate::traffic::serve_connections(listener, lifetime, move |stream| {
            let recorder = self.clone();
            async move { recorder.serve_connection(stream).await }
        })
        .await;
    }

    /// Everything received since the last call.
    pub fn take(&self) -> Vec<u8> {
        self.seen
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen))
            .unwrap_or_default()
    }

    async fn serve_connection(&self, mut stream: TcpStream) {
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            // One whole request in `buffer`, else read more.
            let framed = frame_request(&buffer);
            let (end, path, head) = match framed {
                Framed::Whole { end, path, head } => (end, path, head),
                Framed::Broken => return,
                Framed::Partial => {
                    let mut chunk = [0u8; 65536];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => {
                            if let Ok(mut seen) = self.seen.lock() {
                                seen.extend_from_slice(&chunk[..read]);
                            }
                            buffer.extend_from_slice(&chunk[..read]);
                            continue;
                        }
                    }
                }
            };
            buffer.drain(..end);
            let response: Vec<u8> = match path.as_str() {
                "/big" => {
                    let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n")
                        .into_bytes();
                    r.resize(r.len() + BIG, b'x');
                    r
                }
                "/resp-cl-te" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(),
                "/ws-noaccept" => {
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec()
                }
                _ if head => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n".to_vec(),
                _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            };
            if stream.write_all(&response).await.is_err() {
                return;
            }
        }
    }
}

/// Size of the `/big` answer.
pub const BIG: usize = 4 << 20;

/// What [`frame_request`] found at the start of a buffer.
enum Framed {
    /// A whole request ends at `end`; its path, and whether it is a HEAD.
    Whole {
        end: usize,
        path: String,
        head: bool,
    },
    /// More bytes needed.
    Partial,
    /// Not a request this server can frame: it closes the connection.
    Broken,
}

/// Frames one request (head, then a Content-Length or chunked body) at the start of `buffer`.
fn frame_request(buffer: &[u8]) -> Framed {
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Framed::Partial,
        Err(_) => return Framed::Broken,
    };
    let path = request
        .path
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let head = request.method == Some("HEAD");
    let mut length = 0usize;
    let mut chunked = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => length = n,
                None => return Framed::Broken,
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    let body = &buffer[head_len..];
    let body_len = if chunked {
        match chunked_length(body) {
            Some(Ok(n)) => n,
            Some(Err(())) => return Framed::Broken,
            None => return Framed::Partial,
        }
    } else if body.len() >= length {
        length
    } else {
        return Framed::Partial;
    };
    Framed::Whole {
        end: head_len + body_len,
        path,
        head,
    }
}

/// The length of a whole chunked body at the start of `body` (trailers included): `None` when
/// incomplete, `Err` when malformed.
fn chunked_length(body: &[u8]) -> Option<Result<usize, ()>> {
    let mut at = 0;
    loop {
        let line_end = body[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let line = std::str::from_utf8(&body[at..line_end]).ok();
        let Some(size) = line
            .and_then(|l| l.split(';').next())
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
        else {
            return Some(Err(()));
        };
        at = line_end + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let end = body[at..].windows(2).position(|w| w == b"\r\n")? + at;
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Some(Ok(at));
                }
            }
        }
        if body.len() < at + size + 2 {
            return None;
        }
        if &body[at + size..at + size + 2] != b"\r\n" {
            return Some(Err(()));
        }
        at += size + 2;
    }
}

/// Sends `raw` on a new connection to `addr` and reads answers until `expected` final ones
/// came (then a short grace for any extra one), the connection closed, or `limit` passed.
/// `head_requests` lists which answers (by position) answer HEAD and so have no body.
/// Returns the statuses of the final answers, in order.
pub async fn h1_exchange(
    addr: SocketAddr,
    raw: &[u8],
    expected: usize,
    head_requests: &[usize],
    limit: Duration,
) -> anyhow::Result<Vec<u16>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(raw).await?;
    let mut buffer = Vec::new();
    let mut statuses = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // Take every whole answer in the buffer.
        while let Some((status, used)) =
            parse_response(&buffer, head_requests.contains(&statuses.len()))
        {
            buffer.drain(..used);
            if status >= 200 || status == 101 {
                statuses.push(status);
            }
            if status == 101 {
                return Ok(statuses);
            }
        }
        let wait_until = if statuses.len() >= expected {
            // Enough: a short grace shows an answer too many.
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(150))
        } else {
            deadline
        };
        let mut chunk = [0u8; 65536];
        match tokio::time::timeout_at(wait_until, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    // An answer delimited by the close.
    if let Some((status, _)) = parse_head_status(&buffer) {
        statuses.push(status);
    }
    Ok(statuses)
}

/// One whole response at the start of `buffer`: (status, bytes used).
fn parse_response(buffer: &[u8], to_head: bool) -> Option<(u16, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(buffer).ok()? else {
        return None;
    };
    let status = response.code?;
    if to_head || status < 200 || status == 204 || status == 304 {
        return Some((status, head_len));
    }
    let mut length = None;
    let mut chunked = false;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value).ok()?.trim().parse().ok();
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    let body = &buffer[head_len..];
    if chunked {
        let Ok(n) = chunked_length(body)? else {
            return None;
        };
        return Some((status, head_len + n));
    }
    let length: usize = length?;
    (body.len() >= length).then_some((status, head_len + length))
}

/// The status of a response head at the start of `buffer`, whatever follows.
fn parse_head_status(buffer: &[u8]) -> Option<(u16, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buffer).ok()? {
        httparse::Status::Complete(len) => Some((response.code?, len)),
        httparse::Status::Partial => None,
    }
}

/// What a row sends.
#[derive(Debug, Clone)]
pub enum Send {
    /// Raw HTTP/1 bytes on one connection; the positions of HEAD requests among the answers.
    H1(Vec<u8>, Vec<usize>),
    /// HTTP/2 requests on one connection, after a SETTINGS frame with these settings.
    H2(Vec<(u16, u32)>, Vec<H2Request>),
}

/// What the server behind the proxy must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// A prefix of these bytes (the proxy may stop sending anywhere, as when the client's
    /// body turns out broken after its start was forwarded), nothing more.
    PrefixOf(Vec<u8>),
}

impl Forwarded {
    /// Nothing at all.
    pub fn nothing() -> Self {
        Forwarded::Exact(Vec::new())
    }

    /// Whether `seen` is what this expects.
    pub fn accepts(&self, seen: &[u8]) -> bool {
        match self {
            Forwarded::Exact(bytes) => seen == bytes.as_slice(),
            Forwarded::PrefixOf(bytes) => bytes.starts_with(seen),
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Vector {
    /// What the row tries.
    pub name: &'static str,
    /// The defect of the attack run (issue 13) it reproduces; 0 for the rest.
    pub defect: u8,
    /// Why the expectation is right: the RFC section, and where HAProxy or nginx differ.
    pub why: &'static str,
    /// The request bytes.
    pub send: Send,
    /// The statuses the client must get, in order; for HTTP/2, 0 stands for a stream reset
    /// or ended without a response.
    pub statuses: Vec<u16>,
    /// What the server must see.
    pub forwarded: Forwarded,
}

/// The frontend and backend lb runs the table with (`h1` plain HTTP/1.1, `h2` h2c with prior
/// knowledge), in lb's TOML. HAProxy's and nginx's equivalents are in the bench.
pub fn lb_config(h1: SocketAddr, h2: SocketAddr, recorder: SocketAddr) -> String {
    format!(
        "[defaults]\nlog = \"none\"\n\n\
         [[frontend]]\nname = \"conform\"\nbind = [\"{h1}\", \"{h2} proto h2\"]\n\
         acls = [\"is_adm path_beg /adm\", \"good_host hdr(host) -i public.example\", \"tenant hdr(x-tenant) blue\"]\n\
         http_request = [\"deny if is_adm !good_host\"]\n\
         use_backend = [\"tenants if tenant\"]\n\
         default_backend = \"rec\"\n\n\
         [[backend]]\nname = \"rec\"\nservers = [{{ name = \"r\", addr = \"{recorder}\" }}]\n\n\
         [[backend]]\nname = \"tenants\"\nservers = [{{ name = \"t\", addr = \"{recorder}\" }}]\n"
    )
}

/// The outcome of one row against one proxy.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Statuses the client got (0: an HTTP/2 stream reset or ended without a response).
    pub statuses: Vec<u16>,
    /// Bytes the server saw.
    pub seen: Vec<u8>,
}

impl Outcome {
    /// Whether this is what `vector` expects.
    pub fn matches(&self, vector: &Vector) -> bool {
        self.statuses == vector.statuses && vector.forwarded.accepts(&self.seen)
    }

    /// The request lines the server saw, `;`-separated (for a side-by-side table).
    pub fn request_lines(&self) -> String {
        let text = String::from_utf8_lossy(&self.seen);
        text.split("\r\n")
            .filter(|l| {
                ["GET ", "POST ", "HEAD ", "CONNECT ", "PUT "]
                    .iter()
                    .any(|m| l.starts_with(m))
            })
            .map(|l| l.rsplit_once(' ').map_or(l, |(start, _)| start))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Runs `vector` against the proxy at `h1` / `h2`, with `recorder` behind it.
pub async fn run_vector(
    vector: &Vector,
    h1: SocketAddr,
    h2: SocketAddr,
    recorder: &Recorder,
) -> anyhow::Result<Outcome> {
    recorder.take();
    let limit = Duration::from_secs(3);
    let statuses = match &vector.send {
        Send::H1(raw, heads) => h1_exchange(h1, raw, vector.statuses.len(), heads, limit).await?,
        Send::H2(settings, requests) => {
            let (outcomes, _) = h2raw::exchange(h2, settings, requests, limit).await?;
            outcomes
                .into_iter()
                .map(|o| match o {
                    StreamOutcome::Status(status) => status,
                    StreamOutcome::Reset(_) | StreamOutcome::Gone => 0,
                })
                .collect()
        }
    };
    // Whatever the proxy still sends after answering arrives within this.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Outcome {
        statuses,
        seen: recorder.take(),
    })
}

/// `bytes` escaped for a message, cut after 300 characters.
pub fn shown_bytes(bytes: &[u8]) -> String {
    let text = format!("{:?}", String::from_utf8_lossy(bytes));
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], bytes.len()),
        None => text,
    }
}

fn h1(raw: &[u8]) -> Send {
    Send::H1(raw.to_vec(), Vec::new())
}

fn exact(raw: &[u8]) -> Forwarded {
    Forwarded::Exact(raw.to_vec())
}

fn h2(requests: Vec<H2Request>) -> Send {
    Send::H2(Vec::new(), requests)
}

fn get(block: HeaderBlock) -> H2Request {
    H2Request { block, body: None }
}

/// A head of `count` headers of `size` bytes each.
fn big_head(count: usize, size: usize) -> Vec<u8> {
    let mut raw = b"GET /big-head HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..count {
        raw.extend_from_slice(format!("X-Pad-{i}: ").as_bytes());
        raw.resize(raw.len() + size, b'a');
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    raw
}

/// The table.
pub fn vectors() -> Vec<Vector> {
    let plain_get = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    vec![
        Vector {
            name: "plain GET",
            defect: 0,
            why: "the baseline: forwarded as origin-form HTTP/1.1",
            send: h1(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![200],
            forwarded: exact(plain_get),
        },
        Vector {
            name: "three pipelined GETs",
            defect: 0,
            why: "RFC 9112 9.3.2: pipelined requests are answered in order",
            send: h1(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![200, 200, 200],
            forwarded: exact(b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\nGET /3 HTTP/1.1\r\nhost: x\r\n\r\n"),
        },
        Vector {
            name: "bare LF line ends in a head",
            defect: 0,
            why: "RFC 9112 2.2: a recipient MAY take a bare LF for the end of a start-line or field line; lb, HAProxy and nginx do",
            send: h1(b"GET / HTTP/1.1\nHost: x\n\n"),
            statuses: vec![200],
            forwarded: exact(plain_get),
        },
        // Defect 3: Host.
        Vector {
            name: "two Host lines pass a host ACL",
            defect: 3,
            why: "RFC 9112 3.2: a server MUST answer 400 to more than one Host field line",
            send: h1(b"GET /adm HTTP/1.1\r\nHost: public.example\r\nHost: admin.internal\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "the host ACL itself",
            defect: 3,
            why: "deny if is_adm !good_host: a foreign Host on /adm is refused with 403",
            send: h1(b"GET /adm HTTP/1.1\r\nHost: admin.internal\r\n\r\n"),
            statuses: vec![403],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "HTTP/1.1 without Host",
            defect: 3,
            why: "RFC 9112 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host",
            send: h1(b"GET / HTTP/1.1\r\nX: y\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "Host with an invalid value",
            defect: 3,
            why: "RFC 9112 3.2: 400 to a Host field with an invalid value",
            send: h1(b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "HTTP/2: two host fields, no :authority",
            defect: 3,
            why: "RFC 9112 3.2 via RFC 9113 8.3.1: the host is ambiguous: 400",
            send: h2(vec![get(
                HeaderBlock::request("GET", "/adm", None)
                    .literal("host", b"public.example")
                    .literal("host", b"admin.internal"),
            )]),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        // Defect 4: Connection options.
        Vector {
            name: "Connection names Host and X-Auth",
            defect: 4,
            why: "RFC 9110 7.6.1: a proxy removes the fields a Connection option names (X-Auth goes), but Host is for every recipient and is what lb routed on: it stays",
            send: h1(b"GET /hbh HTTP/1.1\r\nHost: x\r\nX-Auth: secret\r\nConnection: close, Host, X-Auth\r\n\r\n"),
            statuses: vec![200],
            forwarded: exact(b"GET /hbh HTTP/1.1\r\nhost: x\r\n\r\n"),
        },
        Vector {
            name: "Connection names a header an ACL routed on",
            defect: 4,
            why: "a client must not remove what lb chose the backend by: X-Tenant reaches the tenants backend's server",
            send: h1(b"GET /t HTTP/1.1\r\nHost: x\r\nX-Tenant: blue\r\nConnection: X-Tenant\r\n\r\n"),
            statuses: vec![200],
            forwarded: exact(b"GET /t HTTP/1.1\r\nhost: x\r\nx-tenant: blue\r\n\r\n"),
        },
        Vector {
            name: "Connection names Content-Length",
            defect: 4,
            why: "framing fields are the proxy's, not the client's to remove: the body is forwarded with its length",
            send: h1(b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\nhello"),
            statuses: vec![200],
            forwarded: exact(b"POST /cl HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"),
        },
        // Defect 5: head size and field count.
        Vector {
            name: "60 headers of 5,000 bytes",
            defect: 5,
            why: "max_header_size (16 KiB, HAProxy's tune.bufsize less its reserve; nginx 8 KiB per line): 431 (RFC 6585 5)",
            send: h1(&big_head(60, 5000)),
            statuses: vec![431],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "120 small headers",
            defect: 5,
            why: "max_headers (100, HAProxy's tune.http.maxhdr is 101): 431",
            send: h1(&big_head(120, 2)),
            statuses: vec![431],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "a 70 kB head, then CL+TE",
            defect: 7,
            why: "a long head no longer switches the framing guard off: the head is refused and nothing after it is read",
            send: h1(&{
                let mut raw = big_head(14, 5000);
                raw.extend_from_slice(b"POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
                raw
            }),
            statuses: vec![431],
            forwarded: Forwarded::nothing(),
        },
        // Defect 6: one parser decides the framing.
        Vector {
            name: "bare LF ends a chunked trailer line, then a pipelined GET",
            defect: 6,
            why: "RFC 9112 7.1.2: trailer lines end with CRLF; 2.2 lets a recipient take a bare LF, and HAProxy and nginx do, but hyper (lb's parser) would then read the next request as trailers: lb refuses the body (400) and reads nothing after it, so /smuggled can neither vanish nor reach the server",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::PrefixOf(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
        },
        Vector {
            name: "bare LF after chunk data",
            defect: 6,
            why: "RFC 9112 7.1: chunk data ends with CRLF",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::PrefixOf(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
        },
        Vector {
            name: "bare LF ends a chunk-size line",
            defect: 6,
            why: "RFC 9112 7.1: chunk-size lines end with CRLF",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::PrefixOf(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()),
        },
        Vector {
            name: "chunked body with a proper trailer, then a GET",
            defect: 6,
            why: "RFC 9112 7.1.2: a trailer ending in CRLF CRLF; both requests answered",
            send: h1(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![200, 200],
            forwarded: exact(b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n"),
        },
        // Defect 7: the CL+TE refusal cannot be switched off.
        Vector {
            name: "an Upgrade that is not upgraded, then CL+TE",
            defect: 7,
            why: "RFC 9112 6.3: a request with both framings is refused; the server answered the Upgrade with 200, so the connection stays HTTP/1.1 and the next head is judged",
            send: h1(b"GET /u HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\nPOST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            statuses: vec![200, 400],
            forwarded: exact(b"GET /u HTTP/1.1\r\nhost: x\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\n"),
        },
        Vector {
            name: "Upgrade without Connection: upgrade, then CL+TE",
            defect: 7,
            why: "not an upgrade request at all (RFC 9110 7.8 needs the Connection option): the next head is judged",
            send: h1(b"GET /u HTTP/1.1\r\nHost: x\r\nUpgrade: foo\r\n\r\nPOST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            statuses: vec![200, 400],
            forwarded: exact(b"GET /u HTTP/1.1\r\nhost: x\r\n\r\n"),
        },
        Vector {
            name: "Content-Length and Transfer-Encoding",
            defect: 7,
            why: "RFC 9112 6.3: both framings: 400, nothing forwarded (HAProxy 2.6 forwards with TE)",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        // Classic desync vectors.
        Vector {
            name: "Transfer-Encoding: xchunked",
            defect: 0,
            why: "RFC 9112 6.3: a request whose final coding is not chunked has no reliable length: 400",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "Transfer-Encoding: chunked, identity",
            defect: 0,
            why: "RFC 9112 6.3: chunked must be the final coding: 400",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "space before the colon of Transfer-Encoding",
            defect: 0,
            why: "RFC 9112 5.1: a server MUST reject whitespace between a field name and its colon with 400",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "Content-Length: +5",
            defect: 0,
            why: "RFC 9110 8.6: Content-Length is 1*DIGIT: 400",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "two different Content-Length lines",
            defect: 0,
            why: "RFC 9112 6.3: differing lengths are unrecoverable: 400",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "Transfer-Encoding in an HTTP/1.0 request",
            defect: 0,
            why: "RFC 9112 6.1: a server MUST treat TE in an HTTP/1.0 request as faulty framing (400, close)",
            send: h1(b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "obsolete line folding",
            defect: 0,
            why: "RFC 9112 5.2: a server MUST reject obs-fold with 400 (or unfold it); lb rejects",
            send: h1(b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "chunk size 0x5",
            defect: 0,
            why: "RFC 9112 7.1: chunk-size is 1*HEXDIG, no prefix: 400",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::PrefixOf(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()),
        },
        Vector {
            name: "chunk size past 64 bits",
            defect: 0,
            why: "an overflowing chunk size must not wrap: 400",
            send: h1(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::PrefixOf(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()),
        },
        // Defect 8: bodies on GET and HEAD.
        Vector {
            name: "GET with a chunked body",
            defect: 8,
            why: "RFC 9110 9.3.1: a GET body has no defined meaning but is part of the message: forwarded, never dropped",
            send: h1(b"GET /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            statuses: vec![200],
            forwarded: exact(b"GET /g HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        },
        Vector {
            name: "HEAD with a chunked body",
            defect: 8,
            why: "as for GET (RFC 9110 9.3.2)",
            send: Send::H1(b"HEAD /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), vec![0]),
            statuses: vec![200],
            forwarded: exact(b"HEAD /h HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        },
        Vector {
            name: "GET with a Content-Length body",
            defect: 8,
            why: "as above, with a length",
            send: h1(b"GET /g HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
            statuses: vec![200],
            forwarded: exact(b"GET /g HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"),
        },
        Vector {
            name: "HTTP/2 GET with DATA and no content-length",
            defect: 8,
            why: "RFC 9113 8.1: the DATA frames are the body: forwarded chunked to the HTTP/1.1 server",
            send: h2(vec![H2Request {
                block: HeaderBlock::request("GET", "/g", Some("x")),
                body: Some(b"hello".to_vec()),
            }]),
            statuses: vec![200],
            forwarded: exact(b"GET /g HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        },
        // Defect 9: a client's broken body is the client's fault.
        Vector {
            name: "a bad chunk after the first",
            defect: 9,
            why: "the client's body is malformed: 400 and counted against the client (HAProxy: CH--), not 502",
            send: h1(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::PrefixOf(b"POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
        },
        Vector {
            name: "chunk data longer than its size",
            defect: 9,
            why: "RFC 9112 7.1: the CRLF after 5 bytes is missing: 400",
            send: h1(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!!\r\n0\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::PrefixOf(b"POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n".to_vec()),
        },
        // Defect 10: the authority.
        Vector {
            name: "absolute-form target with another Host",
            defect: 10,
            why: "RFC 9112 3.2.2: the target's authority wins and replaces Host: routed and refused as admin.internal",
            send: h1(b"GET http://admin.internal/adm HTTP/1.1\r\nHost: public.example\r\n\r\n"),
            statuses: vec![403],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "absolute-form target forwarded in origin-form",
            defect: 10,
            why: "RFC 9112 3.2.2: Host becomes the target's authority; RFC 9112 3.2.1: origin-form to the server",
            send: h1(b"GET http://a.example/x?q=1 HTTP/1.1\r\nHost: b.example\r\n\r\n"),
            statuses: vec![200],
            forwarded: exact(b"GET /x?q=1 HTTP/1.1\r\nhost: a.example\r\n\r\n"),
        },
        Vector {
            name: "userinfo in the target",
            defect: 10,
            why: "RFC 9110 4.2.4: userinfo is deprecated in http URIs and a recipient SHOULD treat it as an error (HAProxy: 400)",
            send: h1(b"GET http://user:pw@a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "a fragment in the target",
            defect: 10,
            why: "RFC 9112 3.2: request-target has no fragment (HAProxy: 400)",
            send: h1(b"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "HTTP/2 :authority and a different host",
            defect: 10,
            why: "RFC 9113 8.3.1: a server SHOULD treat a Host that differs from :authority as malformed: 400",
            send: h2(vec![get(
                HeaderBlock::request("GET", "/adm", Some("a.example")).literal("host", b"b.example"),
            )]),
            statuses: vec![400],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "HTTP/2 :authority routed and forwarded as Host",
            defect: 10,
            why: "RFC 9113 8.3.1: :authority is the target's authority; a matching host field is fine",
            send: h2(vec![get(
                HeaderBlock::request("GET", "/adm", Some("public.example")).literal("host", b"public.example"),
            )]),
            statuses: vec![200],
            forwarded: exact(b"GET /adm HTTP/1.1\r\nhost: public.example\r\n\r\n"),
        },
        // Defect 11: HTTP/2 cookies.
        Vector {
            name: "HTTP/2 cookie fields",
            defect: 11,
            why: "RFC 9113 8.2.3: cookie fields are joined with \"; \" for HTTP/1.1",
            send: h2(vec![get(
                HeaderBlock::request("GET", "/c", Some("x"))
                    .literal("cookie", b"a=1")
                    .literal("cookie", b"b=2"),
            )]),
            statuses: vec![200],
            forwarded: exact(b"GET /c HTTP/1.1\r\nhost: x\r\ncookie: a=1; b=2\r\n\r\n"),
        },
        // Defect 14: the HTTP/2 bomb shape.
        Vector {
            name: "HTTP/2: 1,000 one-byte cookie fields, HPACK-indexed",
            defect: 14,
            why: "each field costs its size plus 32 (RFC 9113 6.5.2, SETTINGS_MAX_HEADER_LIST_SIZE): refused, nothing forwarded",
            send: h2(vec![get(bomb_block(1000))]),
            statuses: vec![431],
            forwarded: Forwarded::nothing(),
        },
        Vector {
            name: "HTTP/2: 150 one-byte cookie fields",
            defect: 14,
            why: "within the size limit but past max_headers (fields are counted as received, before cookies are joined): 431",
            send: h2(vec![get(bomb_block(150))]),
            statuses: vec![431],
            forwarded: Forwarded::nothing(),
        },
        // Also noticed in the attack run.
        Vector {
            name: "CONNECT, then a GET",
            defect: 0,
            why: "lb is a gateway, not a forward proxy: CONNECT is refused with 405 (RFC 9110 15.5.6; nginx: 400) and the connection goes on",
            send: h1(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![405, 200],
            forwarded: exact(plain_get),
        },
        Vector {
            name: "a server answer with Content-Length and Transfer-Encoding",
            defect: 0,
            why: "RFC 9112 6.3: such a response ought to be handled as an error: 502",
            send: h1(b"GET /resp-cl-te HTTP/1.1\r\nHost: x\r\n\r\n"),
            statuses: vec![502],
            forwarded: exact(b"GET /resp-cl-te HTTP/1.1\r\nhost: x\r\n\r\n"),
        },
        Vector {
            name: "WebSocket 101 without Sec-WebSocket-Accept",
            defect: 0,
            why: "RFC 6455 4.1: the handshake is incomplete; a proxy must not open the tunnel (HAProxy: 502)",
            send: h1(b"GET /ws-noaccept HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
            statuses: vec![502],
            forwarded: exact(b"GET /ws-noaccept HTTP/1.1\r\nhost: x\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"),
        },
        Vector {
            name: "HTTP/2: a malformed field on one stream, a good request on another",
            defect: 0,
            why: "RFC 9113 8.1.1: a malformed request is a stream error: its sibling is served",
            send: h2(vec![
                get(HeaderBlock::request("GET", "/bad", Some("x")).literal("connection", b"keep-alive")),
                get(HeaderBlock::request("GET", "/good", Some("x"))),
            ]),
            statuses: vec![0, 200],
            forwarded: exact(b"GET /good HTTP/1.1\r\nhost: x\r\n\r\n"),
        },
    ]
}

/// A GET whose header block carries `count` `cookie: a` fields: the first added to the HPACK
/// dynamic table, the rest one-byte references to it (the HTTP/2 bomb shape).
pub fn bomb_block(count: usize) -> HeaderBlock {
    let mut block = HeaderBlock::request("GET", "/bomb", Some("x")).indexed_literal("cookie", b"a");
    for _ in 1..count {
        block = block.indexed(62);
    }
    block
}
