//! HTTP/1 request framing as the proxy decides it, byte by byte over a client's stream: where
//! each head ends, how its body is delimited (RFC 9112 section 6), where the body ends, and
//! what to refuse. This is the one place that decides the framing of client bytes: hyper
//! parses the same bytes after it, and every byte sequence accepted here is framed the same
//! way by hyper (the chunked grammar below is hyper's, except that a bare LF is refused in
//! trailer lines too, where hyper would keep reading); everything hyper might frame
//! differently is refused here first.
//!
//! Layout: [`Limits`] (the frontend's `HeadLimits`); [`judge`] (one complete head -> [`Verdict`]); [`Framer`] (the stream
//! state machine: [`Framer::advance`] over each read, returning a [`Step`]); the chunked-body
//! grammar ([`Chunked`]).

/// How HTTP/2 with prior knowledge starts (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

pub use crate::config::HeadLimits as Limits;

/// Why a request is refused before anything of it is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Both Content-Length and Transfer-Encoding (RFC 9112 section 6.3: smuggling).
    BothFramings,
    /// A Content-Length that is not 1*DIGIT, or lines that disagree.
    BadContentLength,
    /// Transfer-Encoding whose final coding is not chunked, or TE in HTTP/1.0.
    BadTransferEncoding,
    /// A fragment in the request-target (RFC 9112 section 3.2 has none).
    Fragment,
    /// The head does not parse (hyper refuses it too).
    Malformed,
    /// The head is larger than `max_header_size` or has more than `max_headers` fields.
    TooLarge,
    /// The chunked body breaks the grammar (a bare LF, a bad size, data longer than its size).
    BadChunk,
}

/// What [`judge`] found in one complete head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A request whose body follows with this framing; `upgrade` when the connection may
    /// switch protocols after it (an HTTP/1.1 `Upgrade`, or CONNECT): what follows must wait
    /// for the answer.
    Request { framing: Framing, upgrade: bool },
    /// Refused.
    Refused(Refusal),
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

/// Header slots [`judge`] keeps on the stack (the default limit is 100).
const STACK_HEADERS: usize = 128;

/// Reads one complete head (`head` ends with its blank line).
pub fn judge(head: &[u8], limits: &Limits) -> Verdict {
    if head.len() > limits.max_header_size {
        return Verdict::Refused(Refusal::TooLarge);
    }
    // One slot more than allowed, so "too many" is told from "just enough"; on the stack for
    // the usual limits (this runs for every request head), on the heap past them.
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let headers: &mut [httparse::Header<'_>] = if limits.max_headers < STACK_HEADERS {
        &mut on_stack[..=limits.max_headers]
    } else {
        on_heap.resize(limits.max_headers + 1, httparse::EMPTY_HEADER);
        &mut on_heap
    };
    let mut request = httparse::Request::new(headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Verdict::Refused(Refusal::TooLarge),
        _ => return Verdict::Refused(Refusal::Malformed),
    }
    if request.headers.len() > limits.max_headers {
        return Verdict::Refused(Refusal::TooLarge);
    }
    if request.path.is_some_and(|p| p.contains('#')) {
        return Verdict::Refused(Refusal::Fragment);
    }
    let http11 = request.version == Some(1);
    let mut length: Option<u64> = None;
    let mut has_length = false;
    let mut has_te = false;
    let mut chunked = false;
    let mut upgrade = request.method == Some("CONNECT");
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            has_length = true;
            // hyper's reading: one value of digits per line, every line the same.
            let Some(n) = digits(header.value) else {
                return Verdict::Refused(Refusal::BadContentLength);
            };
            if length.is_some_and(|previous| previous != n) {
                return Verdict::Refused(Refusal::BadContentLength);
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            has_te = true;
            // The last line's last coding decides (RFC 9112 section 6.1), as in hyper.
            chunked = std::str::from_utf8(header.value).is_ok_and(|v| {
                v.rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if header.name.eq_ignore_ascii_case("upgrade") && http11 {
            upgrade = true;
        }
    }
    if has_te && has_length {
        return Verdict::Refused(Refusal::BothFramings);
    }
    if has_te && (!chunked || !http11) {
        return Verdict::Refused(Refusal::BadTransferEncoding);
    }
    let framing = match (has_te, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    Verdict::Request { framing, upgrade }
}

/// A Content-Length value: 1*DIGIT, nothing else (not even `+` or spaces inside).
fn digits(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The end of a head in `bytes` (index after its blank line), if there is one. Line ends
/// are LF with or without CR (RFC 9112 section 2.2), as httparse reads them.
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

/// Where the framer is in the client's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting a request head (bytes so far).
    Head(Vec<u8>),
    /// Inside a body of known length: bytes left.
    Body { left: u64, then: After },
    /// Inside a chunked body.
    Chunked { chunk: Chunked, then: After },
    /// The stream is HTTP/2 or switched protocols: not HTTP/1 any more.
    Off,
    /// Refused: nothing more is framed.
    Refused,
}

/// What comes after a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// The next request head.
    NextHead,
    /// The answer to an upgrade request: until it says, the bytes after are not framed.
    Decision,
}

/// What [`Framer::advance`] found in a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Everything is framed; go on.
    Continue,
    /// A complete head at these offsets is refused: `final_lf` is its last byte (a line
    /// feed). Breaking it makes hyper refuse the head itself with 400, in order after the
    /// answers before it; nothing after it may be read.
    RefuseHead { final_lf: usize, why: Refusal },
    /// An unfinished head grew past the limit at this offset: hyper refuses it as well (431),
    /// since its buffer holds at least as much; nothing after it may be read.
    TooLong,
    /// A body breaks its framing at this offset: only the bytes before it may be read.
    RefuseBody { at: usize, why: Refusal },
    /// The message of an upgrade request ended at this offset: the bytes after it wait for
    /// the answer ([`Framer::decided`]).
    Hold { at: usize },
    /// The stream turned out to be HTTP/2 (prior knowledge): nothing more is framed.
    Http2,
}

/// The framing state of one client connection.
#[derive(Debug, Clone)]
pub struct Framer {
    state: State,
    limits: Limits,
    /// Heads completed so far.
    heads: u64,
}

impl Framer {
    /// A framer for a new connection, which starts with a request head (or the HTTP/2
    /// preface).
    pub fn new(limits: Limits) -> Self {
        Framer {
            state: State::Head(Vec::new()),
            limits,
            heads: 0,
        }
    }

    /// Heads completed so far (the first request is number 1).
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Whether nothing is framed any more (HTTP/2, switched protocols or refused).
    pub fn is_off(&self) -> bool {
        matches!(self.state, State::Off | State::Refused)
    }

    /// Whether the framer waits between requests, inside a head, inside a body.
    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Head(collected) if collected.is_empty() => Phase::BetweenRequests,
            State::Head(_) => Phase::InHead,
            State::Body { .. } | State::Chunked { .. } => Phase::InBody,
            State::Off | State::Refused => Phase::Unwatched,
        }
    }

    /// The answer to the upgrade request held at: `upgraded` switches the stream to the
    /// other protocol, else the next head follows.
    pub fn decided(&mut self, upgraded: bool) {
        self.state = if upgraded {
            State::Off
        } else {
            State::Head(Vec::new())
        };
    }

    /// Follows `bytes`, the client's next bytes, up to the first step that is not
    /// [`Step::Continue`] (the caller handles what follows it).
    pub fn advance(&mut self, mut bytes: &[u8]) -> Step {
        let mut offset = 0;
        while !bytes.is_empty() {
            let used = match &mut self.state {
                State::Off | State::Refused => return Step::Continue,
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
                        self.state = State::Off;
                        return Step::Http2;
                    }
                    if H2_PREFACE.starts_with(collected) {
                        // Maybe HTTP/2: wait for the rest of the preface.
                        return Step::Continue;
                    }
                    let Some(end) = head_end(collected) else {
                        if collected.len() >= self.limits.max_header_size {
                            self.state = State::Refused;
                            return Step::TooLong;
                        }
                        return Step::Continue;
                    };
                    let used = end - before;
                    self.heads += 1;
                    match judge(&collected[..end], &self.limits) {
                        Verdict::Refused(why) => {
                            self.state = State::Refused;
                            return Step::RefuseHead {
                                final_lf: offset + used - 1,
                                why,
                            };
                        }
                        Verdict::Request { framing, upgrade } => {
                            let then = if upgrade {
                                After::Decision
                            } else {
                                After::NextHead
                            };
                            self.state = match framing {
                                Framing::None => State::Head(Vec::new()),
                                Framing::Length(left) => State::Body { left, then },
                                Framing::Chunked => State::Chunked {
                                    chunk: Chunked::default(),
                                    then,
                                },
                            };
                            if upgrade && framing == Framing::None {
                                return Step::Hold { at: offset + used };
                            }
                        }
                    }
                    used
                }
                State::Body { left, then } => {
                    let used = (*left).min(bytes.len() as u64) as usize;
                    *left -= used as u64;
                    if *left == 0 {
                        let then = *then;
                        self.state = State::Head(Vec::new());
                        if then == After::Decision {
                            return Step::Hold { at: offset + used };
                        }
                    }
                    used
                }
                State::Chunked { chunk, then } => {
                    match chunk.advance(bytes, self.limits.max_headers) {
                        ChunkStep::Used(used) => used,
                        ChunkStep::Done(used) => {
                            let then = *then;
                            self.state = State::Head(Vec::new());
                            if then == After::Decision {
                                return Step::Hold { at: offset + used };
                            }
                            used
                        }
                        ChunkStep::Invalid(at) => {
                            self.state = State::Refused;
                            return Step::RefuseBody {
                                at: offset + at,
                                why: Refusal::BadChunk,
                            };
                        }
                    }
                }
            };
            bytes = &bytes[used..];
            offset += used;
        }
        Step::Continue
    }
}

/// Where a client is between and inside requests, for its timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first byte of a head.
    BetweenRequests,
    /// Inside a head.
    InHead,
    /// Inside a body.
    InBody,
    /// Not watched (HTTP/2, upgraded, refused).
    Unwatched,
}

/// Position inside a chunked body: hyper's grammar (RFC 9112 section 7.1), byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Chunked {
    /// The first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// More hex digits (the size so far).
    Size(u64),
    /// Blanks after the size.
    SizeBlank(u64),
    /// A chunk extension, up to CR.
    Extension(u64),
    /// The LF of the size line.
    SizeLf(u64),
    /// Chunk data: bytes left.
    Data(u64),
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// At the start of a trailer line or the final blank line (trailer lines so far).
    LineStart(usize),
    /// Inside a trailer line.
    Trailer(usize),
    /// The LF of a trailer line.
    TrailerLf(usize),
    /// The LF of the final blank line.
    EndLf,
}

/// What one step through a chunked body did.
enum ChunkStep {
    /// Consumed this many bytes; the body goes on.
    Used(usize),
    /// Consumed this many bytes; the body ended.
    Done(usize),
    /// The byte at this offset breaks the grammar.
    Invalid(usize),
}

impl Chunked {
    fn advance(&mut self, bytes: &[u8], max_trailers: usize) -> ChunkStep {
        for (i, &byte) in bytes.iter().enumerate() {
            let next = match (*self, byte) {
                (Chunked::Data(left), _) => {
                    // Skip the data in one go.
                    let take = left.min((bytes.len() - i) as u64);
                    *self = if take == left {
                        Chunked::DataCr
                    } else {
                        Chunked::Data(left - take)
                    };
                    if take as usize + i >= bytes.len() {
                        return ChunkStep::Used(bytes.len());
                    }
                    return match self.advance(&bytes[i + take as usize..], max_trailers) {
                        ChunkStep::Used(n) => ChunkStep::Used(i + take as usize + n),
                        ChunkStep::Done(n) => ChunkStep::Done(i + take as usize + n),
                        ChunkStep::Invalid(n) => ChunkStep::Invalid(i + take as usize + n),
                    };
                }
                (Chunked::SizeStart, b) if b.is_ascii_hexdigit() => Chunked::Size(hex(b)),
                (Chunked::Size(size), b) if b.is_ascii_hexdigit() => {
                    match size.checked_mul(16).and_then(|s| s.checked_add(hex(b))) {
                        Some(size) => Chunked::Size(size),
                        None => return ChunkStep::Invalid(i),
                    }
                }
                (Chunked::Size(size) | Chunked::SizeBlank(size), b' ' | b'\t') => {
                    Chunked::SizeBlank(size)
                }
                (
                    Chunked::Size(size) | Chunked::SizeBlank(size) | Chunked::Extension(size),
                    b';',
                ) => Chunked::Extension(size),
                (
                    Chunked::Size(size) | Chunked::SizeBlank(size) | Chunked::Extension(size),
                    b'\r',
                ) => Chunked::SizeLf(size),
                (Chunked::Extension(_), b'\n') => return ChunkStep::Invalid(i),
                (Chunked::Extension(size), _) => Chunked::Extension(size),
                (Chunked::SizeLf(0), b'\n') => Chunked::LineStart(0),
                (Chunked::SizeLf(size), b'\n') => Chunked::Data(size),
                (Chunked::DataCr, b'\r') => Chunked::DataLf,
                (Chunked::DataLf, b'\n') => Chunked::SizeStart,
                (Chunked::LineStart(_), b'\r') => Chunked::EndLf,
                (Chunked::LineStart(lines), b) if b != b'\n' => {
                    if lines >= max_trailers {
                        return ChunkStep::Invalid(i);
                    }
                    Chunked::Trailer(lines)
                }
                (Chunked::Trailer(lines), b'\r') => Chunked::TrailerLf(lines),
                // hyper keeps a bare LF inside a trailer line and reads on into the next
                // request: refused here, so the two never disagree.
                (Chunked::Trailer(_), b'\n') => return ChunkStep::Invalid(i),
                (Chunked::Trailer(lines), _) => Chunked::Trailer(lines),
                (Chunked::TrailerLf(lines), b'\n') => Chunked::LineStart(lines + 1),
                (Chunked::EndLf, b'\n') => {
                    *self = Chunked::SizeStart;
                    return ChunkStep::Done(i + 1);
                }
                _ => return ChunkStep::Invalid(i),
            };
            *self = next;
        }
        ChunkStep::Used(bytes.len())
    }
}

fn hex(b: u8) -> u64 {
    match b {
        b'0'..=b'9' => u64::from(b - b'0'),
        b'a'..=b'f' => u64::from(b - b'a' + 10),
        _ => u64::from(b - b'A' + 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `step` bytes; returns the first step that is not
    /// Continue, with its offsets made absolute.
    fn feed(stream: &[u8], step: usize) -> Step {
        let mut framer = Framer::new(Limits::default());
        for (i, piece) in stream.chunks(step).enumerate() {
            let base = i * step;
            match framer.advance(piece) {
                Step::Continue => {}
                Step::RefuseHead { final_lf, why } => {
                    return Step::RefuseHead {
                        final_lf: base + final_lf,
                        why,
                    };
                }
                Step::RefuseBody { at, why } => return Step::RefuseBody { at: base + at, why },
                Step::Hold { at } => return Step::Hold { at: base + at },
                other => return other,
            }
        }
        Step::Continue
    }

    #[test]
    fn both_framings_are_refused_in_either_order_and_at_any_read_size() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n"[..],
        ] {
            let end = head_end(raw).expect("a head");
            for step in [1, 2, 7, raw.len()] {
                assert_eq!(
                    feed(raw, step),
                    Step::RefuseHead {
                        final_lf: end - 1,
                        why: Refusal::BothFramings
                    },
                    "read size {step}"
                );
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
            assert_eq!(feed(&stream, step), Step::Continue, "read size {step}");
        }
        // The same, followed by an ambiguous request: caught at its own head's end.
        let good = stream.len();
        let bad = b"POST /d HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n";
        stream.extend_from_slice(bad);
        assert_eq!(
            feed(&stream, 5),
            Step::RefuseHead {
                final_lf: good + bad.len() - 1,
                why: Refusal::BothFramings
            }
        );
    }

    #[test]
    fn a_bare_lf_in_chunked_framing_is_refused_where_it_stands() {
        let head = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        for (body, bad_at) in [
            // A trailer line ended by a bare LF: hyper would read the next request as trailers.
            (
                &b"5\r\nhello\r\n0\r\nX: y\n\r\nGET /s HTTP/1.1\r\n\r\n"[..],
                17,
            ),
            (&b"5\nhello\r\n0\r\n\r\n"[..], 1),
            (&b"5\r\nhello\n0\r\n\r\n"[..], 8),
            (&b"5;a\nhello\r\n0\r\n\r\n"[..], 3),
            (&b"0x5\r\nhello\r\n0\r\n\r\n"[..], 1),
            (&b"10000000000000005\r\n"[..], 16),
            (&b"5\r\nhello!!\r\n"[..], 8),
        ] {
            let mut raw = head.to_vec();
            raw.extend_from_slice(body);
            for step in [1, 4, raw.len()] {
                assert_eq!(
                    feed(&raw, step),
                    Step::RefuseBody {
                        at: head.len() + bad_at,
                        why: Refusal::BadChunk
                    },
                    "{:?} read size {step}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }

    #[test]
    fn heads_are_judged_as_hyper_frames_them() {
        let limits = Limits::default();
        let framed = |raw: &[u8]| judge(raw, &limits);
        assert_eq!(
            framed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Verdict::Request {
                framing: Framing::None,
                upgrade: false
            }
        );
        assert_eq!(
            framed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
            Verdict::Request {
                framing: Framing::Length(5),
                upgrade: false
            }
        );
        for (raw, why) in [
            (
                &b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"[..],
                Refusal::BadContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
                Refusal::BadContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                Refusal::BadContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                Refusal::BadTransferEncoding,
            ),
            (
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::BadTransferEncoding,
            ),
            (b"GET /a#b HTTP/1.1\r\n\r\n", Refusal::Fragment),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
                Refusal::Malformed,
            ),
            (b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", Refusal::Malformed),
        ] {
            assert_eq!(
                framed(raw),
                Verdict::Refused(why),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=limits.max_headers {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(framed(&many), Verdict::Refused(Refusal::TooLarge));
    }

    #[test]
    fn an_upgrade_holds_what_follows_until_the_answer() {
        let first =
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        let mut raw = first.to_vec();
        raw.extend_from_slice(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let mut framer = Framer::new(Limits::default());
        assert_eq!(framer.advance(&raw), Step::Hold { at: first.len() });
        // Not upgraded: the held bytes are the next head, judged as usual.
        framer.decided(false);
        assert!(matches!(
            framer.advance(&raw[first.len()..]),
            Step::RefuseHead {
                why: Refusal::BothFramings,
                ..
            }
        ));
        // Upgraded: they are the other protocol's.
        let mut framer = Framer::new(Limits::default());
        assert_eq!(framer.advance(&raw), Step::Hold { at: first.len() });
        framer.decided(true);
        assert_eq!(framer.advance(&raw[first.len()..]), Step::Continue);
        // A CONNECT holds too; HTTP/2's preface switches framing off.
        let mut framer = Framer::new(Limits::default());
        let connect = b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n";
        assert_eq!(framer.advance(connect), Step::Hold { at: connect.len() });
        let mut framer = Framer::new(Limits::default());
        assert_eq!(
            framer.advance(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Step::Http2
        );
    }

    #[test]
    fn a_head_past_the_limit_is_refused_before_it_ends() {
        let mut framer = Framer::new(Limits {
            max_header_size: 100,
            max_headers: 10,
        });
        assert_eq!(framer.advance(b"GET / HTTP/1.1\r\nX: "), Step::Continue);
        assert_eq!(framer.advance(&[b'a'; 200]), Step::TooLong);
        assert!(framer.is_off());
    }
}
