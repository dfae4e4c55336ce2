//! Tunnels: after a `101 Switching Protocols` (WebSocket and other `Upgrade`s) both sides
//! are copied to each other until both have finished or nothing moved for `timeout tunnel`.
//! A side that ends its writing (half-close) has that passed on while the other direction
//! keeps going.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

const BUFFER: usize = 16 * 1024;

/// How a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// Both sides closed their writing.
    Closed,
    /// Nothing moved in either direction for the idle timeout.
    Idle,
    /// A read or write failed (reset, broken pipe).
    Error,
}

/// Bytes moved each way and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelStats {
    /// From the first side (the client) to the second.
    pub up: u64,
    /// From the second side to the first.
    pub down: u64,
    /// Why it stopped.
    pub end: TunnelEnd,
}

/// Copies `a` <-> `b` until both directions finish or `idle` passes without a byte moving.
pub async fn run<A, B>(a: A, b: B, idle: Duration) -> TunnelStats
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    let mut up_buf = vec![0u8; BUFFER];
    let mut down_buf = vec![0u8; BUFFER];
    let (mut up, mut down) = (0u64, 0u64);
    let (mut up_open, mut down_open) = (true, true);
    while up_open || down_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                read = a_read.read(&mut up_buf), if up_open => (true, read),
                read = b_read.read(&mut down_buf), if down_open => (false, read),
            }
        })
        .await;
        let Ok((upward, read)) = step else {
            return TunnelStats {
                up,
                down,
                end: TunnelEnd::Idle,
            };
        };
        let written = if upward {
            pass_on(read, &up_buf, &mut b_write, &mut up_open, &mut up).await
        } else {
            pass_on(read, &down_buf, &mut a_write, &mut down_open, &mut down).await
        };
        if written.is_err() {
            return TunnelStats {
                up,
                down,
                end: TunnelEnd::Error,
            };
        }
    }
    TunnelStats {
        up,
        down,
        end: TunnelEnd::Closed,
    }
}

/// Writes what one read returned to the other side; a read of 0 (end of stream) becomes a
/// shutdown of the other side's writing.
async fn pass_on<W: AsyncWrite + Unpin>(
    read: std::io::Result<usize>,
    buf: &[u8],
    writer: &mut W,
    open: &mut bool,
    count: &mut u64,
) -> std::io::Result<()> {
    match read? {
        0 => {
            *open = false;
            writer.shutdown().await
        }
        n => {
            *count += n as u64;
            writer.write_all(&buf[..n]).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each side half-closes in turn: data after the other side's close still arrives.
    #[tokio::test]
    async fn half_close_in_each_direction_keeps_the_other_open() {
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (server, mut server_peer) = tokio::io::duplex(64);
        let tunnel = tokio::spawn(run(client, server, Duration::from_secs(5)));
        client_peer.write_all(b"hello").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        server_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        server_peer.write_all(b"late answer").await.unwrap();
        server_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"late answer");
        let stats = tunnel.await.unwrap();
        assert_eq!(
            (stats.up, stats.down, stats.end),
            (5, 11, TunnelEnd::Closed)
        );
    }

    #[tokio::test]
    async fn an_idle_tunnel_is_closed_after_the_timeout() {
        let (client, _client_peer) = tokio::io::duplex(64);
        let (server, _server_peer) = tokio::io::duplex(64);
        let stats = run(client, server, Duration::from_millis(50)).await;
        assert_eq!(stats.end, TunnelEnd::Idle);
    }
}
