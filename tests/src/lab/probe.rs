//! HTTP/1.1 through the VIP as the lab's client sees it: one GET on a fresh connection, and
//! keep-alive flows that send a GET every few milliseconds and report whether they broke.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};

pub use crate::ha::Flow;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::TcpStream,
};

/// Reads one response from `reader`: its status and body (by Content-Length).
async fn read_response<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> anyhow::Result<(u16, String)> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).await? == 0 {
        bail!("connection closed");
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            bail!("connection closed in the head");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().context("content-length")?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok((status, String::from_utf8_lossy(&body).trim().to_string()))
}

/// One GET / on a new connection to `addr` (bounded by `limit`): status and body.
pub async fn get(addr: SocketAddr, limit: Duration) -> anyhow::Result<(u16, String)> {
    tokio::time::timeout(limit, async {
        let stream = TcpStream::connect(addr).await?;
        let (reader, mut writer) = stream.into_split();
        writer
            .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            .await?;
        read_response(&mut BufReader::new(reader)).await
    })
    .await
    .context("timed out")?
}

/// A keep-alive connection to `addr` sending a GET every `interval` until `stop`.
pub async fn flow(addr: SocketAddr, interval: Duration, stop: Arc<AtomicBool>) -> Flow {
    // `failure`: an error, a timeout, a status other than 200, or another real answering.
    let mut report = Flow {
        real: String::new(),
        exchanges: 0,
        failure: None,
    };
    let connected = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await;
    let stream = match connected {
        Ok(Ok(stream)) => stream,
        other => {
            report.failure = Some(format!("connect: {other:?}"));
            return report;
        }
    };
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    while !stop.load(Ordering::Relaxed) {
        let exchange = async {
            writer
                .write_all(b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")
                .await?;
            read_response(&mut reader).await
        };
        match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Ok(Ok((200, real))) => {
                if report.real.is_empty() {
                    report.real = real;
                } else if report.real != real {
                    report.failure = Some(format!("moved from {} to {real}", report.real));
                    return report;
                }
            }
            other => {
                report.failure = Some(format!("after {} requests: {other:?}", report.exchanges));
                return report;
            }
        }
        report.exchanges += 1;
        tokio::time::sleep(interval).await;
    }
    report
}
