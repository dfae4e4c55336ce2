//! Zero-copy TCP tunnels for TCP mode: bytes go from one socket to the other through a pipe
//! with splice(2), so they never enter this process (HAProxy does the same with
//! `option splice-auto`). Each direction has its own pipe; a direction's end (FIN) is passed
//! on as a half-close while the other keeps going; the tunnel ends when both are done, when
//! nothing moved either way for the idle timeout, or on an error.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::{io::Interest, net::TcpStream, time::Instant};

use super::tunnel::{TunnelEnd, TunnelStats};

/// Most bytes one splice call moves (the default pipe holds 64 KiB).
const CHUNK: usize = 64 * 1024;

/// A pipe for one direction.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded; each descriptor is owned once here.
        Ok(unsafe {
            Pipe {
                read: OwnedFd::from_raw_fd(fds[0]),
                write: OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }
}

/// splice(2) without offsets, nonblocking.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors and null offsets, as splice between a socket and a pipe takes.
    let moved = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if moved < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(moved as usize)
    }
}

/// How one direction ended, with the bytes it moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Closed(u64),
    Idle(u64),
    Error(u64),
}

impl Way {
    fn bytes(self) -> u64 {
        match self {
            Way::Closed(n) | Way::Idle(n) | Way::Error(n) => n,
        }
    }
}

/// When either direction last moved a byte (milliseconds since the tunnel started).
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long until the tunnel has been quiet for `idle` (zero: it has).
    fn left(&self, idle: Duration) -> Duration {
        let quiet = self
            .start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
        idle.saturating_sub(quiet)
    }
}

/// Waits until `stream` is ready for `interest`, or the tunnel has been idle too long.
async fn ready(
    stream: &TcpStream,
    interest: Interest,
    activity: &Activity,
    idle: Duration,
) -> Result<(), Way> {
    loop {
        let left = activity.left(idle);
        if left.is_zero() {
            return Err(Way::Idle(0));
        }
        match tokio::time::timeout(left, stream.ready(interest)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) => return Err(Way::Error(0)),
            // The other direction may have moved meanwhile: look again.
            Err(_) => continue,
        }
    }
}

/// Moves bytes `from` -> `to` until `from` ends (then `to` is half-closed), an error, or
/// the tunnel is idle.
async fn one_way(from: &TcpStream, to: &TcpStream, activity: &Activity, idle: Duration) -> Way {
    let Ok(pipe) = Pipe::new() else {
        return Way::Error(0);
    };
    let mut moved = 0u64;
    loop {
        if let Err(end) = ready(from, Interest::READABLE, activity, idle).await {
            return with_bytes(end, moved);
        }
        let read = from.try_io(Interest::READABLE, || {
            splice(from.as_raw_fd(), pipe.write.as_raw_fd(), CHUNK)
        });
        let n = match read {
            Ok(0) => {
                // The sender ended its side: pass the half-close on.
                let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
                return Way::Closed(moved);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return Way::Error(moved),
        };
        let mut left = n;
        while left > 0 {
            if let Err(end) = ready(to, Interest::WRITABLE, activity, idle).await {
                return with_bytes(end, moved);
            }
            let written = to.try_io(Interest::WRITABLE, || {
                splice(pipe.read.as_raw_fd(), to.as_raw_fd(), left)
            });
            match written {
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Way::Error(moved),
            }
        }
        moved += n as u64;
        activity.touch();
    }
}

fn with_bytes(end: Way, moved: u64) -> Way {
    match end {
        Way::Closed(_) => Way::Closed(moved),
        Way::Idle(_) => Way::Idle(moved),
        Way::Error(_) => Way::Error(moved),
    }
}

/// Copies `client` <-> `server` with splice until both directions end, `idle` passes with
/// nothing moving, or an error.
pub async fn run(client: &TcpStream, server: &TcpStream, idle: Duration) -> TunnelStats {
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let up = one_way(client, server, &activity, idle);
    let down = one_way(server, client, &activity, idle);
    tokio::pin!(up, down);
    let (mut up_end, mut down_end) = (None, None);
    loop {
        tokio::select! {
            end = &mut up, if up_end.is_none() => up_end = Some(end),
            end = &mut down, if down_end.is_none() => down_end = Some(end),
        }
        let end = match (up_end, down_end) {
            (Some(Way::Error(_)), _) | (_, Some(Way::Error(_))) => TunnelEnd::Error,
            (Some(Way::Idle(_)), _) | (_, Some(Way::Idle(_))) => TunnelEnd::Idle,
            (Some(Way::Closed(_)), Some(Way::Closed(_))) => TunnelEnd::Closed,
            _ => continue,
        };
        return TunnelStats {
            up: up_end.map_or(0, Way::bytes),
            down: down_end.map_or(0, Way::bytes),
            end,
        };
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        net::TcpListener,
    };

    use super::*;

    /// A connected pair of sockets: (the side the tunnel holds, the peer's).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (connected, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (accepted.unwrap().0, connected.unwrap())
    }

    #[tokio::test]
    async fn bytes_and_half_closes_pass_in_each_direction() {
        let (client, mut client_peer) = pair().await;
        let (server, mut server_peer) = pair().await;
        let tunnel =
            tokio::spawn(async move { run(&client, &server, Duration::from_secs(5)).await });
        // 1 MiB up, then the client ends its side; the server still answers.
        let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        client_peer.write_all(&payload).await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        server_peer.read_to_end(&mut got).await.unwrap();
        assert!(got == payload, "the bytes arrived unchanged");
        server_peer.write_all(b"late answer").await.unwrap();
        server_peer.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"late answer");
        let stats = tunnel.await.unwrap();
        assert_eq!(
            (stats.up, stats.down, stats.end),
            (1 << 20, 11, TunnelEnd::Closed)
        );
    }

    #[tokio::test]
    async fn an_idle_tunnel_ends_after_the_timeout() {
        let (client, _client_peer) = pair().await;
        let (server, _server_peer) = pair().await;
        let started = std::time::Instant::now();
        let stats = run(&client, &server, Duration::from_millis(100)).await;
        assert_eq!(stats.end, TunnelEnd::Idle);
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}
