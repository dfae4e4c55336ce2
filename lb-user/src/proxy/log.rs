//! Access log in HAProxy's `httplog` (and for TCP mode `tcplog`) format, written by a task of its own: the request path
//! only formats a line and hands it over without waiting (a full queue drops the line and
//! counts it, it never slows a request).

use std::{
    io::Write as _,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::sync::mpsc;

use crate::config::LogTarget;

/// Lines waiting to be written at most.
const QUEUE: usize = 8192;

/// One request as the log line describes it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Client address.
    pub client: SocketAddr,
    /// When the request's first byte was accepted.
    pub accepted: SystemTime,
    /// Frontend name.
    pub frontend: String,
    /// Backend name (`<NOSRV>` style placeholders are the caller's).
    pub backend: String,
    /// Server name, or `<NOSRV>`.
    pub server: String,
    /// Time to receive the request head (TR), ms.
    pub t_request: i64,
    /// Time waiting in the queue (Tw), ms, -1 if never reached.
    pub t_queue: i64,
    /// Time to connect (Tc), ms, -1 if never reached.
    pub t_connect: i64,
    /// Time for the server's response head (Tr), ms, -1 if none.
    pub t_response: i64,
    /// Total time (Ta), ms.
    pub t_total: i64,
    /// Status sent to the client.
    pub status: u16,
    /// Response bytes sent to the client.
    pub bytes: u64,
    /// Termination state (four characters, HAProxy's codes).
    pub termination: [u8; 4],
    /// Retries made.
    pub retries: u32,
    /// Request line (method, target, version).
    pub request_line: String,
}

/// Formats `entry` as HAProxy's httplog does (without the syslog header).
pub fn format_httplog(entry: &Entry) -> String {
    let accepted = httplog_date(entry.accepted);
    format!(
        "{}:{} [{accepted}] {} {}/{} {}/{}/{}/{}/{} {} {} - - {} 0/0/0/0/{} 0/0 \"{}\"",
        entry.client.ip(),
        entry.client.port(),
        entry.frontend,
        entry.backend,
        entry.server,
        entry.t_request,
        entry.t_queue,
        entry.t_connect,
        entry.t_response,
        entry.t_total,
        // HAProxy prints -1 for a connection that never got a status.
        if entry.status == 0 {
            -1
        } else {
            i32::from(entry.status)
        },
        entry.bytes,
        String::from_utf8_lossy(&entry.termination),
        entry.retries,
        entry.request_line.escape_debug(),
    )
}

/// One TCP-mode connection as HAProxy's `tcplog` line describes it.
#[derive(Debug, Clone)]
pub struct TcpEntry {
    /// Client address.
    pub client: SocketAddr,
    /// When the connection was accepted.
    pub accepted: SystemTime,
    /// Frontend name.
    pub frontend: String,
    /// Backend name.
    pub backend: String,
    /// Server name, or `<NOSRV>`.
    pub server: String,
    /// Time in the queue (Tw), ms, -1 if never reached.
    pub t_queue: i64,
    /// Time to connect (Tc), ms, -1 if never reached.
    pub t_connect: i64,
    /// Whole session (Tt), ms.
    pub t_total: i64,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// Termination state (two characters).
    pub termination: [u8; 2],
    /// Retries made.
    pub retries: u32,
}

/// Formats `entry` as HAProxy's tcplog does (without the syslog header).
pub fn format_tcplog(entry: &TcpEntry) -> String {
    format!(
        "{}:{} [{}] {} {}/{} {}/{}/{} {} {} 0/0/0/0/{} 0/0",
        entry.client.ip(),
        entry.client.port(),
        httplog_date(entry.accepted),
        entry.frontend,
        entry.backend,
        entry.server,
        entry.t_queue,
        entry.t_connect,
        entry.t_total,
        entry.bytes,
        String::from_utf8_lossy(&entry.termination),
        entry.retries,
    )
}

/// `06/Feb/2009:12:14:14.655`, UTC.
fn httplog_date(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{day:02}/{}/{year}:{:02}:{:02}:{:02}.{:03}",
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Hands log lines to the writer task.
#[derive(Clone)]
pub struct Logger {
    sender: Option<mpsc::Sender<String>>,
    /// Lines dropped because the writer fell behind.
    pub dropped: Arc<AtomicU64>,
}

impl Logger {
    /// Starts a writer for `target`.
    pub fn start(target: &LogTarget) -> std::io::Result<Logger> {
        let (sender, mut receiver) = mpsc::channel::<String>(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut sink: Box<dyn FnMut(&str) + Send> = match target {
            LogTarget::None => {
                return Ok(Logger {
                    sender: None,
                    dropped,
                });
            }
            LogTarget::Stdout => Box::new(|line| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
            }),
            LogTarget::File(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                Box::new(move |line| {
                    // One write per line: with O_APPEND, lines of another writer of the same
                    // file (the agent before a binary upgrade) never land inside ours.
                    let _ = file.write_all(format!("{line}\n").as_bytes());
                })
            }
            LogTarget::Syslog(path) => {
                let socket = std::os::unix::net::UnixDatagram::unbound()?;
                let path = path.clone();
                Box::new(move |line| {
                    // <134> = facility local0 (16) * 8 + severity info (6).
                    let _ = socket.send_to(format!("<134>lb: {line}").as_bytes(), &path);
                })
            }
        };
        // A blocking thread: file and socket writes must not stall the proxy's workers.
        std::thread::Builder::new()
            .name("lb-log".into())
            .spawn(move || {
                while let Some(line) = receiver.blocking_recv() {
                    sink(&line);
                }
            })?;
        Ok(Logger {
            sender: Some(sender),
            dropped,
        })
    }

    /// Queues a line without waiting.
    pub fn log(&self, line: String) {
        if let Some(sender) = &self.sender
            && sender.try_send(line).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True if lines go nowhere (skip formatting them).
    pub fn is_off(&self) -> bool {
        self.sender.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn httplog_line_has_haproxy_fields() {
        let entry = Entry {
            client: "10.0.1.2:33317".parse().unwrap(),
            accepted: SystemTime::UNIX_EPOCH + Duration::from_millis(1_233_922_454_655),
            frontend: "http-in".into(),
            backend: "static".into(),
            server: "srv1".into(),
            t_request: 10,
            t_queue: 0,
            t_connect: 30,
            t_response: 69,
            t_total: 109,
            status: 200,
            bytes: 2750,
            termination: *b"----",
            retries: 0,
            request_line: "GET /index.html HTTP/1.1".into(),
        };
        assert_eq!(
            format_httplog(&entry),
            "10.0.1.2:33317 [06/Feb/2009:12:14:14.655] http-in static/srv1 10/0/30/69/109 200 2750 - - ---- 0/0/0/0/0 0/0 \"GET /index.html HTTP/1.1\""
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
    }
}
