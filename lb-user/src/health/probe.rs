//! The checks themselves: TCP connect (optionally send/expect), HTTP request with status and
//! body expectations, and an external script. Each returns a [`Outcome`] with a reason worded
//! like HAProxy's, so transition logs read the same.

use std::{net::SocketAddr, path::PathBuf, process::Stdio, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpStream,
    time::{Instant, timeout},
};

use crate::proxy::tls::UpstreamTls;

/// TLS for a check (HAProxy's `check-ssl`): the same settings as TLS to servers.
pub type CheckTls = Option<Arc<UpstreamTls>>;

/// A check, ready to run against one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TCP connect, then optionally send bytes and expect a reply containing others.
    Tcp {
        /// Bytes to send after connecting.
        send: Option<Vec<u8>>,
        /// Bytes the reply must contain.
        expect: Option<Vec<u8>>,
        /// Run over TLS (the handshake must succeed).
        tls: CheckTls,
    },
    /// An HTTP request.
    Http(HttpProbe),
    /// An external program: exit status 0 means up.
    Script {
        /// The program.
        path: PathBuf,
        /// Its arguments.
        args: Vec<String>,
    },
}

/// An HTTP check (`option httpchk` + `http-check expect`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Method (`GET`, `HEAD`, `OPTIONS`, ...).
    pub method: String,
    /// Request target.
    pub path: String,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
    /// Host header, if any (always sent with HTTP/1.1: the backend address if unset).
    pub host: Option<String>,
    /// Extra header lines (`Name: value`).
    pub headers: Vec<String>,
    /// Accepted status ranges, inclusive.
    pub expect_status: Vec<(u16, u16)>,
    /// A substring the body must contain.
    pub expect_body: Option<String>,
    /// Run over TLS.
    pub tls: CheckTls,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Did it pass?
    pub passed: bool,
    /// Why, in HAProxy's words (`Layer4 check passed`, `Layer7 wrong status`, ...).
    pub reason: String,
    /// HTTP status or exit code, when there is one.
    pub code: Option<i32>,
    /// How long the check took.
    pub duration: Duration,
}

fn outcome(start: Instant, passed: bool, reason: impl Into<String>, code: Option<i32>) -> Outcome {
    Outcome {
        passed,
        reason: reason.into(),
        code,
        duration: start.elapsed(),
    }
}

/// A connection a check talks over: plain TCP or TLS.
trait CheckStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> CheckStream for T {}

/// Connects to `target` (and runs the TLS handshake when `tls`); a failure is the check's
/// (failed) outcome, worded as HAProxy words it (Layer4 for TCP, Layer6 for TLS).
async fn connect(
    target: SocketAddr,
    start: Instant,
    tls: &CheckTls,
) -> Result<Box<dyn CheckStream>, Outcome> {
    let stream = TcpStream::connect(target).await.map_err(|e| {
        outcome(
            start,
            false,
            format!("Layer4 connection problem: {e}"),
            None,
        )
    })?;
    match tls {
        None => Ok(Box::new(stream)),
        Some(tls) => match tls.connect_to(stream, target.ip()).await {
            Ok(stream) => Ok(Box::new(stream)),
            Err(e) => Err(outcome(
                start,
                false,
                format!("Layer6 invalid response: {e}"),
                None,
            )),
        },
    }
}

/// Largest response a check reads (headers and the part of the body searched).
const MAX_RESPONSE: usize = 64 * 1024;

impl Probe {
    /// Runs the check against `target` within `limit`.
    pub async fn run(&self, target: SocketAddr, limit: Duration) -> Outcome {
        let start = Instant::now();
        match timeout(limit, self.run_inner(target, start)).await {
            Ok(result) => result,
            Err(_) => match self {
                Probe::Script { .. } => outcome(start, false, "External check timeout", None),
                Probe::Tcp {
                    send: None,
                    tls: None,
                    ..
                } => outcome(start, false, "Layer4 timeout", None),
                Probe::Tcp {
                    send: None,
                    tls: Some(_),
                    ..
                } => outcome(start, false, "Layer6 timeout", None),
                _ => outcome(start, false, "Layer7 timeout", None),
            },
        }
    }

    async fn run_inner(&self, target: SocketAddr, start: Instant) -> Outcome {
        match self {
            Probe::Tcp { send, expect, tls } => {
                let mut stream = match connect(target, start, tls).await {
                    Ok(stream) => stream,
                    Err(failed) => return failed,
                };
                if let Some(bytes) = send
                    && let Err(e) = stream.write_all(bytes).await
                {
                    return outcome(
                        start,
                        false,
                        format!("Layer4 connection problem: {e}"),
                        None,
                    );
                }
                let Some(expected) = expect else {
                    let passed = if tls.is_some() {
                        "Layer6 check passed"
                    } else {
                        "Layer4 check passed"
                    };
                    return outcome(start, true, passed, None);
                };
                let mut reply = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    if reply
                        .windows(expected.len().max(1))
                        .any(|w| w == expected.as_slice())
                    {
                        return outcome(start, true, "Layer7 check passed", None);
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            return outcome(start, false, "Layer7 invalid response", None);
                        }
                        Ok(n) if reply.len() + n <= MAX_RESPONSE => {
                            reply.extend_from_slice(&buf[..n])
                        }
                        Ok(_) => return outcome(start, false, "Layer7 invalid response", None),
                    }
                }
            }
            Probe::Http(http) => http.run(target, start).await,
            Probe::Script { path, args } => {
                let child = tokio::process::Command::new(path)
                    .args(args)
                    .env("LB_REAL_ADDR", target.ip().to_string())
                    .env("LB_REAL_PORT", target.port().to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await;
                match child {
                    Ok(status) if status.success() => {
                        outcome(start, true, "External check passed", Some(0))
                    }
                    Ok(status) => outcome(start, false, "External check error", status.code()),
                    Err(e) => outcome(start, false, format!("External check error: {e}"), None),
                }
            }
        }
    }
}

impl HttpProbe {
    fn request(&self, target: SocketAddr) -> Vec<u8> {
        let mut request = format!("{} {} {}\r\n", self.method, self.path, self.version);
        let host = self
            .host
            .clone()
            .or_else(|| (self.version == "HTTP/1.1").then(|| target.to_string()));
        if let Some(host) = host {
            request.push_str(&format!("Host: {host}\r\n"));
        }
        for header in &self.headers {
            request.push_str(header);
            request.push_str("\r\n");
        }
        // One request per connection, as HAProxy's checks do.
        request.push_str("Connection: close\r\n\r\n");
        request.into_bytes()
    }

    async fn run(&self, target: SocketAddr, start: Instant) -> Outcome {
        let mut stream = match connect(target, start, &self.tls).await {
            Ok(stream) => stream,
            Err(failed) => return failed,
        };
        if let Err(e) = stream.write_all(&self.request(target)).await {
            return outcome(
                start,
                false,
                format!("Layer4 connection problem: {e}"),
                None,
            );
        }
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.len() >= MAX_RESPONSE {
                        break;
                    }
                }
                Err(e) => {
                    return outcome(start, false, format!("Layer7 response error: {e}"), None);
                }
            }
        }
        let Some(code) = status_code(&response) else {
            return outcome(start, false, "Layer7 invalid response", None);
        };
        if !self
            .expect_status
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&code))
        {
            return outcome(start, false, "Layer7 wrong status", Some(i32::from(code)));
        }
        if let Some(needle) = &self.expect_body {
            let body = response
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(&response[..0], |i| &response[i + 4..]);
            if !body
                .windows(needle.len().max(1))
                .any(|w| w == needle.as_bytes())
            {
                return outcome(
                    start,
                    false,
                    "Layer7 content mismatch",
                    Some(i32::from(code)),
                );
            }
        }
        outcome(start, true, "Layer7 check passed", Some(i32::from(code)))
    }
}

/// The status code of an HTTP/1.x status line.
fn status_code(response: &[u8]) -> Option<u16> {
    let line_end = response.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&response[..line_end]).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_parsing() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\nX: y\r\n"),
            Some(503)
        );
        assert_eq!(status_code(b"HTTP/1.1 99 Odd\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 200"), None, "no line end");
    }

    #[test]
    fn http_request_has_host_and_closes() {
        let probe = HttpProbe {
            method: "HEAD".into(),
            path: "/index.jsp".into(),
            version: "HTTP/1.1".into(),
            host: Some("www.example.com".into()),
            headers: vec!["X-Check: lb".into()],
            expect_status: vec![(200, 399)],
            expect_body: None,
            tls: None,
        };
        let request = String::from_utf8(probe.request("10.0.0.1:80".parse().unwrap())).unwrap();
        assert_eq!(
            request,
            "HEAD /index.jsp HTTP/1.1\r\nHost: www.example.com\r\nX-Check: lb\r\nConnection: close\r\n\r\n"
        );
    }
}
