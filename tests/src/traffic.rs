//! Real traffic for lab tests and the demo: a TCP echo server and a client that checks every
//! byte comes back, and a UDP echo pair.

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, ensure};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
};

/// Accepts `connections` connections one after another and echoes each until its client
/// closes its side.
pub async fn tcp_echo_server(listener: TcpListener, connections: usize) -> anyhow::Result<()> {
    for _ in 0..connections {
        let (mut stream, _) = listener.accept().await?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stream.write_all(&buf[..n]).await?;
        }
    }
    Ok(())
}

/// Opens `connections` connections to `server` one after another; on each sends `bytes`
/// bytes of a pattern, half-closes, and checks the echo is identical. Returns bytes echoed.
pub async fn tcp_echo_client(
    server: SocketAddr,
    connections: usize,
    bytes: usize,
) -> anyhow::Result<usize> {
    let pattern: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    let mut echoed = 0;
    for i in 0..connections {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server))
            .await
            .with_context(|| format!("connection {i} to {server} timed out"))??;
        let (mut reader, mut writer) = stream.into_split();
        let send = pattern.clone();
        let writer_task = tokio::spawn(async move {
            writer.write_all(&send).await?;
            writer.shutdown().await?;
            anyhow::Ok(())
        });
        let mut back = Vec::with_capacity(bytes);
        tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut back))
            .await
            .with_context(|| format!("echo on connection {i} timed out"))??;
        writer_task.await??;
        ensure!(
            back == pattern,
            "connection {i}: echoed bytes differ from what was sent"
        );
        echoed += back.len();
    }
    Ok(echoed)
}

/// Echoes `datagrams` UDP datagrams back to their senders.
pub async fn udp_echo_server(socket: UdpSocket, datagrams: usize) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 2048];
    for _ in 0..datagrams {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        socket.send_to(&buf[..n], peer).await?;
    }
    Ok(())
}

/// Sends `datagrams` numbered datagrams to `server`, waiting for each echo. Returns how many
/// came back intact.
pub async fn udp_echo_client(server: SocketAddr, datagrams: usize) -> anyhow::Result<usize> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()?;
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    let mut buf = vec![0u8; 2048];
    let mut echoed = 0;
    for i in 0..datagrams {
        let message = format!("datagram {i}");
        socket.send(message.as_bytes()).await?;
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .with_context(|| format!("no echo for datagram {i}"))??;
        ensure!(
            &buf[..n] == message.as_bytes(),
            "datagram {i} came back altered"
        );
        echoed += 1;
    }
    Ok(echoed)
}
