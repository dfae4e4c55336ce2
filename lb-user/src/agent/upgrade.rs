//! Binary upgrade: a new agent (`lb run --upgrade`) takes over from the running one without
//! closing a listening socket or moving a VIP, as HAProxy does with `expose-fd listeners`
//! and `-x`.
//!
//! 1. The new agent connects to the old one's runtime API and sends `upgrade`.
//! 2. The old one answers with one message: a text naming each listening socket's address and
//!    each VRRP instance it is master of, with the sockets' descriptors attached
//!    (SCM_RIGHTS).
//! 3. The new agent adopts the pinned BPF maps and XDP links (the program is swapped in
//!    place), serves on the inherited sockets (both agents accept for a moment), starts the
//!    VRRP instances the old one was master of as master, then sends `upgrade done`.
//! 4. The old one stops accepting, stops its VRRP instances without leaving (no priority 0,
//!    addresses stay), lets its connections finish (each gets `Connection: close` on its next
//!    response) and exits, leaving pins, links and the runtime API to the new agent.
//!
//! If the new agent fails before step 4, the old one never hears `upgrade done` and keeps
//! running as before.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, IoSlice, IoSliceMut, Write as _},
    net::SocketAddr,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    path::Path,
    time::Duration,
};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// First line of the state message: names the format.
const MAGIC: &str = "lb-upgrade 1";
/// Most descriptors one message carries (the kernel's SCM_MAX_FD is 253).
const MAX_FDS: usize = 253;
/// Largest state message, bytes.
const MAX_STATE: usize = 64 * 1024;

/// What the running agent hands to its successor.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Listening sockets by address.
    pub listeners: Vec<(SocketAddr, RawFd)>,
    /// VRRP instances it is master of.
    pub masters: Vec<String>,
}

impl State {
    fn encode(&self) -> String {
        let mut text = format!("{MAGIC}\n");
        for (addr, _) in &self.listeners {
            text.push_str(&format!("listener {addr}\n"));
        }
        for name in &self.masters {
            text.push_str(&format!("master {name}\n"));
        }
        text.push_str("end\n");
        text
    }
}

/// Sends `state` over `stream` (the runtime API connection of the new agent). Blocking on a
/// nonblocking socket is avoided by the caller waiting for writability first.
pub fn send_state(stream: RawFd, state: &State) -> std::io::Result<()> {
    if state.listeners.len() > MAX_FDS {
        return Err(std::io::Error::other(format!(
            "{} listening sockets: more than one message carries ({MAX_FDS})",
            state.listeners.len()
        )));
    }
    let text = state.encode();
    let fds: Vec<RawFd> = state.listeners.iter().map(|(_, fd)| *fd).collect();
    // An agent without listeners (L4 and VRRP only) sends the text alone.
    let control: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    let iov = [IoSlice::new(text.as_bytes())];
    let sent = sendmsg::<()>(stream, &iov, &control, MsgFlags::empty(), None)
        .map_err(std::io::Error::from)?;
    if sent != text.len() {
        return Err(std::io::Error::other("the upgrade state was sent in part"));
    }
    Ok(())
}

/// What the new agent received.
pub struct Inherited {
    /// Listening sockets by address.
    pub listeners: HashMap<SocketAddr, std::net::TcpListener>,
    /// VRRP instances to start as master.
    pub masters: Vec<String>,
    /// The connection to the old agent, to say `upgrade done` on.
    stream: UnixStream,
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inherited")
            .field("listeners", &self.listeners.keys().collect::<Vec<_>>())
            .field("masters", &self.masters)
            .finish()
    }
}

/// Asks the agent listening on `api` for its sockets and state (blocking; start-up only).
pub fn fetch(api: &Path) -> std::io::Result<Inherited> {
    let stream = UnixStream::connect(api).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("no running agent to upgrade from at {}: {e}", api.display()),
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&stream).write_all(b"upgrade\n")?;
    let mut buffer = vec![0u8; MAX_STATE];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (bytes, fds) = {
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        let mut fds = Vec::new();
        for control in message.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(received) = control {
                // SAFETY: the kernel just installed these descriptors in this process; each
                // is owned here once.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (message.bytes, fds)
    };
    let text = String::from_utf8_lossy(&buffer[..bytes]).into_owned();
    let (addrs, masters) = parse_state(&text)?;
    if addrs.len() != fds.len() {
        return Err(std::io::Error::other(format!(
            "the running agent named {} sockets and passed {}",
            addrs.len(),
            fds.len()
        )));
    }
    let listeners = addrs
        .into_iter()
        .zip(fds)
        .map(|(addr, fd)| (addr, std::net::TcpListener::from(fd)))
        .collect();
    Ok(Inherited {
        listeners,
        masters,
        stream,
    })
}

/// Reads the text part of the state message.
fn parse_state(text: &str) -> std::io::Result<(Vec<SocketAddr>, Vec<String>)> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        let first = text.lines().next().unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "the running agent does not speak this upgrade protocol (it said `{first}`)"
        )));
    }
    let mut addrs = Vec::new();
    let mut masters = Vec::new();
    for line in lines {
        match line.split_once(' ') {
            Some(("listener", addr)) => addrs.push(addr.parse().map_err(|_| {
                std::io::Error::other(format!(
                    "bad listener address `{addr}` in the upgrade state"
                ))
            })?),
            Some(("master", name)) => masters.push(name.to_string()),
            None if line == "end" => return Ok((addrs, masters)),
            _ => {
                return Err(std::io::Error::other(format!(
                    "unexpected line `{line}` in the upgrade state"
                )));
            }
        }
    }
    Err(std::io::Error::other("the upgrade state was cut short"))
}

impl Inherited {
    /// Tells the old agent to stop accepting and leave; returns its answer.
    pub fn finish(self) -> std::io::Result<String> {
        (&self.stream).write_all(b"upgrade done\n")?;
        let mut answer = String::new();
        BufReader::new(&self.stream).read_line(&mut answer)?;
        Ok(answer.trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_text_round_trips_and_bad_text_is_refused() {
        let state = State {
            listeners: vec![
                ("10.0.1.1:80".parse().unwrap(), 7),
                ("[2001:db8::1]:443".parse().unwrap(), 8),
            ],
            masters: vec!["VI_1".into()],
        };
        let (addrs, masters) = parse_state(&state.encode()).expect("parses");
        assert_eq!(
            addrs,
            vec![
                "10.0.1.1:80".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:443".parse().unwrap()
            ]
        );
        assert_eq!(masters, vec!["VI_1".to_string()]);
        assert!(parse_state("lb-upgrade 2\nend\n").is_err(), "other version");
        assert!(
            parse_state(&format!("{MAGIC}\nlistener 10.0.1.1:80\n")).is_err(),
            "cut short"
        );
        assert!(parse_state(&format!("{MAGIC}\nlistener nowhere\nend\n")).is_err());
        assert!(parse_state(&format!("{MAGIC}\nsomething else\nend\n")).is_err());
    }

    #[test]
    fn a_state_without_listeners_travels_too() {
        let (old, new) = UnixStream::pair().expect("pair");
        let state = State {
            listeners: vec![],
            masters: vec!["VI_1".into()],
        };
        send_state(old.as_raw_fd(), &state).expect("send");
        let mut buffer = vec![0u8; MAX_STATE];
        let n = std::io::Read::read(&mut &new, &mut buffer).expect("read");
        let (addrs, masters) = parse_state(&String::from_utf8_lossy(&buffer[..n])).expect("parses");
        assert!(addrs.is_empty());
        assert_eq!(masters, vec!["VI_1".to_string()]);
    }

    #[test]
    fn descriptors_travel_with_the_state() {
        let (old, new) = UnixStream::pair().expect("pair");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = State {
            listeners: vec![(addr, listener.as_raw_fd())],
            masters: vec![],
        };
        // The new side's request line is not read here: send the answer at once.
        send_state(old.as_raw_fd(), &state).expect("send");
        let mut buffer = vec![0u8; MAX_STATE];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            new.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("recv");
        let fds: Vec<RawFd> = message
            .cmsgs()
            .expect("cmsgs")
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(fds.len(), 1);
        // SAFETY: received just now, owned here once.
        let copy = std::net::TcpListener::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        assert_eq!(copy.local_addr().expect("addr"), addr, "the same socket");
        // A connection to the address is accepted on the passed copy.
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        copy.set_nonblocking(false).expect("blocking");
        assert!(copy.accept().is_ok());
    }
}
