//! A raw HTTP/2 client for tests that must send what well-behaved clients never do: header
//! lists built field by field (two `host` fields, `:authority` and `host` that disagree,
//! a thousand `cookie` fields that HPACK indexes once and then repeats in one byte each),
//! DATA on a GET, a zero initial window. Frames are written by hand (RFC 9113 section 4);
//! header blocks are encoded as HPACK literals (RFC 7541 section 6.2) without Huffman coding,
//! and the server's header blocks are decoded with `loona-hpack`.
//!
//! Layout: frame constants and [`frame`]; [`HeaderBlock`] (the encoder); [`H2Request`] and
//! [`exchange`] (send requests on one connection, collect each stream's outcome).

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame types (RFC 9113 section 6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Frame flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 section 6.5.2).
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// One frame, ready to send.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS frame with `settings` (identifier, value).
pub fn settings(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &payload)
}

/// An HPACK header block, field by field.
#[derive(Debug, Clone, Default)]
pub struct HeaderBlock(pub Vec<u8>);

impl HeaderBlock {
    /// A literal field that is not indexed (RFC 7541 section 6.2.2), with a literal name.
    pub fn literal(mut self, name: &str, value: &[u8]) -> Self {
        self.0.push(0x00);
        string(&mut self.0, name.as_bytes());
        string(&mut self.0, value);
        self
    }

    /// A literal field added to the dynamic table (RFC 7541 section 6.2.1), with a literal name.
    pub fn indexed_literal(mut self, name: &str, value: &[u8]) -> Self {
        self.0.push(0x40);
        string(&mut self.0, name.as_bytes());
        string(&mut self.0, value);
        self
    }

    /// A field from the tables by index (RFC 7541 section 6.1); 62 is the newest dynamic entry.
    pub fn indexed(mut self, index: u32) -> Self {
        integer(&mut self.0, 0x80, 7, index);
        self
    }

    /// `:method`, `:scheme`, `:path` and, when given, `:authority`.
    pub fn request(method: &str, path: &str, authority: Option<&str>) -> Self {
        let block = HeaderBlock::default()
            .literal(":method", method.as_bytes())
            .literal(":scheme", b"http")
            .literal(":path", path.as_bytes());
        match authority {
            Some(authority) => block.literal(":authority", authority.as_bytes()),
            None => block,
        }
    }
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 section 5.1), `first` holding the bits above it.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: u32) {
    let max = (1u32 << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// An HPACK string literal without Huffman coding (RFC 7541 section 5.2).
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    integer(out, 0, 7, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// One request on its own stream.
#[derive(Debug, Clone)]
pub struct H2Request {
    /// The header block (sent in one HEADERS frame).
    pub block: HeaderBlock,
    /// DATA sent after the headers (the stream ends with it); `None`: END_STREAM on HEADERS.
    pub body: Option<Vec<u8>>,
}

/// What became of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutcome {
    /// A final response with this status.
    Status(u16),
    /// RST_STREAM with this error code before any response.
    Reset(u32),
    /// The connection ended (GOAWAY or close) before any response.
    Gone,
}

/// Sends `requests` on one connection (streams 1, 3, 5, ...), after the preface and a SETTINGS
/// frame with `settings`; returns each stream's outcome and the GOAWAY error code, if any.
/// Waits up to `limit` for all outcomes.
pub async fn exchange(
    addr: SocketAddr,
    settings_sent: &[(u16, u32)],
    requests: &[H2Request],
    limit: Duration,
) -> anyhow::Result<(Vec<StreamOutcome>, Option<u32>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut out = PREFACE.to_vec();
    out.extend_from_slice(&settings(settings_sent));
    for (i, request) in requests.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        let flags = END_HEADERS
            | if request.body.is_none() {
                END_STREAM
            } else {
                0
            };
        out.extend_from_slice(&frame(HEADERS, flags, id, &request.block.0));
        if let Some(body) = &request.body {
            out.extend_from_slice(&frame(DATA, END_STREAM, id, body));
        }
    }
    stream.write_all(&out).await?;
    let mut outcomes: Vec<Option<StreamOutcome>> = vec![None; requests.len()];
    let mut goaway = None;
    let mut decoder = loona_hpack::Decoder::new();
    let mut block: Vec<u8> = Vec::new();
    let mut reader = FrameReader::default();
    let deadline = tokio::time::Instant::now() + limit;
    while outcomes.iter().any(Option::is_none) {
        let Ok(next) = tokio::time::timeout_at(deadline, reader.next(&mut stream)).await else {
            break;
        };
        let Some((kind, flags, id, payload)) = next? else {
            break;
        };
        let slot = (id % 2 == 1 && id > 0)
            .then(|| (id as usize - 1) / 2)
            .filter(|i| *i < outcomes.len());
        match kind {
            SETTINGS if flags & ACK == 0 => stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await?,
            PING if flags & ACK == 0 => stream.write_all(&frame(PING, ACK, 0, &payload)).await?,
            HEADERS | CONTINUATION => {
                let mut fragment = &payload[..];
                if kind == HEADERS {
                    fragment = headers_fragment(flags, fragment)?;
                }
                block.extend_from_slice(fragment);
                if flags & END_HEADERS != 0 {
                    let fields = decoder
                        .decode(&block)
                        .map_err(|e| anyhow::anyhow!("HPACK: {e:?}"))?;
                    block.clear();
                    let status = fields
                        .iter()
                        .find(|(n, _)| n == b":status")
                        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<u16>().ok());
                    if let (Some(status), Some(i)) = (status, slot)
                        && status >= 200
                        && outcomes[i].is_none()
                    {
                        outcomes[i] = Some(StreamOutcome::Status(status));
                    }
                }
            }
            RST_STREAM => {
                if let Some(i) = slot
                    && outcomes[i].is_none()
                {
                    let code = payload
                        .get(..4)
                        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    outcomes[i] = Some(StreamOutcome::Reset(code));
                }
            }
            GOAWAY => {
                goaway = payload
                    .get(4..8)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
            _ => {}
        }
    }
    Ok((
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(StreamOutcome::Gone))
            .collect(),
        goaway,
    ))
}

/// The header block fragment of a HEADERS frame's payload (padding and priority removed).
fn headers_fragment(flags: u8, payload: &[u8]) -> anyhow::Result<&[u8]> {
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    let mut start = 0;
    let mut end = payload.len();
    if flags & PADDED != 0 {
        let pad = *payload.first().ok_or_else(|| anyhow::anyhow!("empty"))? as usize;
        start = 1;
        end = end
            .checked_sub(pad)
            .ok_or_else(|| anyhow::anyhow!("bad padding"))?;
    }
    if flags & PRIORITY != 0 {
        start += 5;
    }
    payload
        .get(start..end)
        .ok_or_else(|| anyhow::anyhow!("short HEADERS frame"))
}

/// Reads whole frames from a stream.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

impl FrameReader {
    /// The next frame (type, flags, stream, payload), or `None` at the end of the stream.
    pub async fn next(
        &mut self,
        stream: &mut TcpStream,
    ) -> anyhow::Result<Option<(u8, u8, u32, Vec<u8>)>> {
        loop {
            if self.buffer.len() >= 9 {
                let len = u32::from_be_bytes([0, self.buffer[0], self.buffer[1], self.buffer[2]])
                    as usize;
                if self.buffer.len() >= 9 + len {
                    let kind = self.buffer[3];
                    let flags = self.buffer[4];
                    let id = u32::from_be_bytes([
                        self.buffer[5],
                        self.buffer[6],
                        self.buffer[7],
                        self.buffer[8],
                    ]) & 0x7fff_ffff;
                    let payload = self.buffer[9..9 + len].to_vec();
                    self.buffer.drain(..9 + len);
                    return Ok(Some((kind, flags, id, payload)));
                }
            }
            let mut chunk = [0u8; 16384];
            let read = match stream.read(&mut chunk).await {
                Ok(read) => read,
                // A reset after GOAWAY is an end like any other.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
                Err(e) => return Err(e.into()),
            };
            if read == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers_and_literals_follow_rfc_7541() {
        // RFC 7541 C.1.2: 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        integer(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
        // RFC 7541 C.2.2: a literal field without indexing, indexed name `:path` (4)... here
        // with a literal name, as this encoder always writes: decodable by a real decoder.
        let block = HeaderBlock::request("GET", "/sample/path", Some("a.example"))
            .indexed_literal("cookie", b"a")
            .indexed(62)
            .indexed(62);
        let fields = loona_hpack::Decoder::new()
            .decode(&block.0)
            .expect("decodes");
        let names: Vec<&[u8]> = fields.iter().map(|(n, _)| n.as_slice()).collect();
        assert_eq!(
            names,
            [
                &b":method"[..],
                b":scheme",
                b":path",
                b":authority",
                b"cookie",
                b"cookie",
                b"cookie"
            ]
        );
        assert_eq!(fields[2].1, b"/sample/path");
    }
}
