//! A small keep-alive HTTP/1.1 application server for the L7 tests, written on raw sockets so
//! a test sees exactly what reached it: every request head is recorded, connections and
//! requests are counted. Paths: `/login` sets `JSESSIONID=<name>-<n>`, `/slow` answers after
//! 500 ms, `.../head` answers with the request head it got, `/ws` upgrades and then echoes bytes,
//! anything else answers the server's name.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// What reached an [`app_server`].
#[derive(Debug, Default)]
pub struct AppStats {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// Requests read.
    pub requests: AtomicUsize,
    /// Every request head, as received.
    pub heads: Mutex<Vec<String>>,
}

impl AppStats {
    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Serves `listener` for `lifetime`.
pub async fn app_server(
    listener: TcpListener,
    name: String,
    stats: Arc<AppStats>,
    lifetime: Duration,
) {
    crate::traffic::serve_connections(listener, lifetime, |stream| {
        stats.connections.fetch_add(1, Ordering::SeqCst);
        let (name, stats) = (name.clone(), stats.clone());
        async move { serve_connection(stream, &name, &stats).await }
    })
    .await;
}

async fn serve_connection(mut stream: TcpStream, name: &str, stats: &AppStats) {
    let mut buffer = Vec::new();
    loop {
        let Some((head, rest)) = read_head(&mut stream, std::mem::take(&mut buffer)).await else {
            return;
        };
        let n = stats.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut heads) = stats.heads.lock() {
            heads.push(head.clone());
        }
        let lower = head.to_ascii_lowercase();
        let length: usize = header(&lower, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        buffer = rest;
        let chunked = header(&lower, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let consumed = if chunked {
            read_chunked(&mut stream, &mut buffer).await
        } else {
            fill(&mut stream, &mut buffer, length)
                .await
                .then_some(length)
        };
        let Some(consumed) = consumed else {
            return;
        };
        buffer.drain(..consumed);
        let target = head.split_whitespace().nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/").to_string();
        let close = header(&lower, "connection").is_some_and(|v| v.contains("close"));
        let (extra, body) = match path.as_str() {
            "/login" => (
                format!("Set-Cookie: JSESSIONID={name}-{n}; Path=/\r\n"),
                name.to_string(),
            ),
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                (String::new(), name.to_string())
            }
            p if p.ends_with("/head") => (String::new(), head.clone()),
            "/ws" => {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                    )
                    .await;
                let mut chunk = [0u8; 4096];
                while let Ok(read) = stream.read(&mut chunk).await {
                    if read == 0 || stream.write_all(&chunk[..read]).await.is_err() {
                        break;
                    }
                }
                return;
            }
            _ => (String::new(), name.to_string()),
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Server: {name}\r\n{extra}\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

/// Reads until `buffer` holds at least `length` bytes; false if the peer went away.
async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, length: usize) -> bool {
    while buffer.len() < length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    true
}

/// Reads a whole chunked body into `buffer`; returns how many bytes of it the body takes
/// (so the next request starts right after), or `None` if the peer went away.
async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = loop {
            if let Some(end) = buffer[at..].windows(2).position(|w| w == b"\r\n") {
                break at + end;
            }
            let wanted = buffer.len() + 1;
            if !fill(stream, buffer, wanted).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&buffer[at..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            // No trailers in these tests: the blank line ends the body.
            if !fill(stream, buffer, at + 2).await {
                return None;
            }
            return Some(at + 2);
        }
        if !fill(stream, buffer, at + size + 2).await {
            return None;
        }
        at += size + 2;
    }
}

fn header<'a>(lower_head: &'a str, name: &str) -> Option<&'a str> {
    lower_head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        (n.trim() == name).then(|| v.trim())
    })
}

/// Reads up to the end of a request head; returns it and the bytes read past it.
async fn read_head(stream: &mut TcpStream, mut buffer: Vec<u8>) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
}

/// A response as a client read it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Answer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `requests` one after another over one connection (keep-alive) and reads each
/// answer (Content-Length framed, or chunked, or up to the close).
pub async fn keepalive_exchange(
    addr: std::net::SocketAddr,
    requests: &[Vec<u8>],
) -> anyhow::Result<Vec<Answer>> {
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
    let mut answers = Vec::new();
    let mut buffer = Vec::new();
    for request in requests {
        stream.write_all(request).await?;
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            read_answer(&mut stream, &mut buffer),
        )
        .await
        .map_err(|_| anyhow::anyhow!("answer timed out"))??;
        answers.push(answer);
    }
    Ok(answers)
}

async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<Answer> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let read = stream.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "connection closed before an answer");
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no status in `{head}`"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(length) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buffer.len() < length {
            let read = stream.read(&mut chunk).await?;
            anyhow::ensure!(read > 0, "connection closed inside a body");
            buffer.extend_from_slice(&chunk[..read]);
        }
        buffer.drain(..length).collect::<Vec<u8>>()
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(end) = buffer.windows(2).position(|w| w == b"\r\n") {
                    break end;
                }
                let read = stream.read(&mut chunk).await?;
                anyhow::ensure!(read > 0, "connection closed inside a chunk");
                buffer.extend_from_slice(&chunk[..read]);
            };
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&buffer[..line_end])
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim(),
                16,
            )?;
            buffer.drain(..line_end + 2);
            while buffer.len() < size + 2 {
                let read = stream.read(&mut chunk).await?;
                anyhow::ensure!(read > 0, "connection closed inside a chunk");
                buffer.extend_from_slice(&chunk[..read]);
            }
            body.extend(buffer.drain(..size));
            buffer.drain(..2);
            if size == 0 {
                break body;
            }
        }
    } else if status == 101 || status == 204 || status == 304 {
        Vec::new()
    } else {
        let mut body = std::mem::take(buffer);
        stream.read_to_end(&mut body).await?;
        body
    };
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A GET request for `path` with extra header lines (each ending in `\r\n`).
pub fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\n{extra}\r\n").into_bytes()
}

/// Starts an app server on `realN:80` for each N in `reals`.
pub fn spawn_apps(lab: &crate::netns::Lab, reals: &[usize]) -> Vec<Arc<AppStats>> {
    reals
        .iter()
        .map(|&i| {
            let stats = Arc::new(AppStats::default());
            let shared = stats.clone();
            lab.host(&format!("real{i}"))
                .spawn(move || async move {
                    let listener = TcpListener::bind("0.0.0.0:80").await.expect("bind");
                    app_server(
                        listener,
                        format!("real{i}"),
                        shared,
                        Duration::from_secs(120),
                    )
                    .await;
                })
                .expect("app server");
            stats
        })
        .collect()
}
