//! The runtime API: a Unix socket taking one command per line, in HAProxy's runtime-API words
//! (`show servers`, `show stat`, `set server web/10.0.2.11:80 state drain`), answered with text ending in a
//! blank line. `lb ctl` is its client.
//!
//! The socket is `/run/lb/<bpf_dir name>.sock`, created mode 0600 whatever the umask (as
//! HAProxy's `stats socket ... mode 600 level admin`); commands that change state (anything
//! but `show ...` and `help`) are taken only from root or the agent's own user, checked with
//! the peer's credentials (SO_PEERCRED), whoever manages to connect.

use std::{
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::watch,
};

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{
    health::{self, Admin, HealthBoard},
    proxy::listeners::ProxyRuntime,
};

/// Requests the runtime API passes to the agent's main loop, each with a channel for the
/// answer.
#[derive(Debug)]
pub enum Control {
    /// Re-read the configuration file and apply what changed (`reload`).
    Reload(oneshot::Sender<String>),
    /// A new agent is taking over (`upgrade`): what it inherits.
    UpgradeState(oneshot::Sender<crate::agent::upgrade::State>),
    /// The new agent runs (`upgrade done`): stop accepting and leave.
    HandOver(oneshot::Sender<String>),
}

/// Where the agent pinning to `bpf_dir` listens.
pub fn socket_path(bpf_dir: &Path) -> PathBuf {
    let name = bpf_dir
        .file_name()
        .map_or_else(|| "lb".into(), |n| n.to_string_lossy().into_owned());
    PathBuf::from("/run/lb").join(format!("{name}.sock"))
}

/// Binds the socket mode 0600 (replacing one left by an agent that died).
pub fn listen(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // Bound under a temporary name, restricted, then moved into place: the socket is never
    // reachable under its real name with the umask's mode.
    let staging = path.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    let listener = UnixListener::bind(&staging)?;
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staging, path)?;
    Ok(listener)
}

/// Whether `command` only reads (anyone who can connect may send it).
fn reads_only(command: &str) -> bool {
    command.starts_with("show ") || command == "help" || command.is_empty()
}

/// Whether a peer with user id `peer` may send `command` to an agent running as `own`.
pub fn allowed(command: &str, peer: Option<u32>, own: u32) -> bool {
    reads_only(command) || peer.is_some_and(|uid| uid == 0 || uid == own)
}

/// Answers commands on `listener` until the task is dropped; `reload` goes to `control`.
/// `config_path` is the file the agent runs with: a `reload FILE` naming another is refused.
pub async fn serve(
    listener: UnixListener,
    board: watch::Sender<HealthBoard>,
    proxy: Arc<ProxyRuntime>,
    control: mpsc::Sender<Control>,
    sync: Arc<crate::sync::SyncCounters>,
    config_path: PathBuf,
) {
    let config_path = Arc::new(config_path);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let board = board.clone();
        let proxy = proxy.clone();
        let control = control.clone();
        let config_path = config_path.clone();
        let sync = sync.clone();
        tokio::spawn(
            async move { session(stream, board, proxy, control, &sync, &config_path).await },
        );
    }
}

async fn session(
    stream: UnixStream,
    board: watch::Sender<HealthBoard>,
    proxy: Arc<ProxyRuntime>,
    control: mpsc::Sender<Control>,
    sync: &crate::sync::SyncCounters,
    config_path: &Path,
) {
    let peer = stream.peer_cred().ok().map(|c| c.uid());
    // SAFETY: geteuid has no preconditions.
    let own = unsafe { libc::geteuid() };
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let command = line.trim();
        if !allowed(command, peer, own) {
            let reply = format!(
                "error: permission denied: `{command}` changes the agent's state and needs root or uid {own} (this client: {})\n\n",
                peer.map_or_else(|| "unknown".into(), |u| u.to_string())
            );
            if writer.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let reply = match command {
            "show sync" => sync.render(),
            reload if reload.starts_with("reload ") => {
                let named = Path::new(reload["reload ".len()..].trim());
                let same = std::fs::canonicalize(named).ok().as_deref() == Some(config_path)
                    || named == config_path;
                if same {
                    reload_now(&control).await
                } else {
                    format!(
                        "error: this agent runs with {} and reload re-reads that file, not {}\n",
                        config_path.display(),
                        named.display()
                    )
                }
            }
            "show stat" => {
                let proxy = proxy.current();
                if proxy.frontend_count() == 0 {
                    "no frontends\n".to_string()
                } else {
                    proxy.render_stats()
                }
            }
            "reload" => reload_now(&control).await,
            "upgrade" => {
                let (answer, answered) = oneshot::channel();
                let state = match control.send(Control::UpgradeState(answer)).await {
                    Ok(()) => answered.await.ok(),
                    Err(_) => None,
                };
                let Some(state) = state else {
                    return;
                };
                // The descriptors travel with the message; the socket is nonblocking.
                let stream: &UnixStream = writer.as_ref();
                if stream.writable().await.is_err() {
                    return;
                }
                if let Err(error) = crate::agent::upgrade::send_state(stream.as_raw_fd(), &state) {
                    tracing::error!(%error, "sending the upgrade state");
                    return;
                }
                tracing::info!(
                    listeners = state.listeners.len(),
                    masters = ?state.masters,
                    "a new agent is taking over"
                );
                continue;
            }
            "upgrade done" => {
                let (answer, answered) = oneshot::channel();
                if control.send(Control::HandOver(answer)).await.is_err() {
                    return;
                }
                answered
                    .await
                    .unwrap_or_else(|_| "error: already stopping\n".to_string())
            }
            command if command.starts_with("set weight ") => set_weight(command, &proxy),
            command => execute(command, &board),
        };
        if writer
            .write_all(format!("{reply}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Asks the agent to reload; its answer.
async fn reload_now(control: &mpsc::Sender<Control>) -> String {
    let (answer, answered) = oneshot::channel();
    if control.send(Control::Reload(answer)).await.is_err() {
        return "error: the agent is shutting down\n".to_string();
    }
    answered
        .await
        .unwrap_or_else(|_| "error: the agent is shutting down\n".to_string())
}

/// `set weight <backend>/<server> <0-256>`.
fn set_weight(command: &str, proxy: &ProxyRuntime) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    let ["set", "weight", name, weight] = words.as_slice() else {
        return "error: expected set weight <backend>/<server> <0-256>\n".into();
    };
    let Some((backend, server)) = name.split_once('/') else {
        return format!("error: expected <backend>/<server>, found `{name}`\n");
    };
    let Some(weight) = weight.parse::<u32>().ok().filter(|w| *w <= 256) else {
        return format!("error: a weight is 0 to 256, found `{weight}`\n");
    };
    if proxy.current().set_weight(backend, server, weight) {
        "ok\n".into()
    } else {
        format!("error: no server `{server}` in backend `{backend}`\n")
    }
}

/// Runs one command and returns its answer (without the final blank line).
pub fn execute(command: &str, board: &watch::Sender<HealthBoard>) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["show", "servers"] => health::render(&board.borrow()),
        ["set", "server", name, "state", state] => {
            let admin = match *state {
                "ready" => Admin::Ready,
                "drain" => Admin::Drain,
                "maint" => Admin::Maint,
                other => {
                    return format!("error: expected ready, drain or maint, found `{other}`\n");
                }
            };
            let Some((service, server)) = name.split_once('/') else {
                return format!("error: expected <service>/<server>, found `{name}`\n");
            };
            if health::set_admin(board, service, server, admin) {
                "ok\n".into()
            } else {
                format!("error: no server `{server}` with a check in service `{service}`\n")
            }
        }
        ["help"] | [] => {
            "commands:\n  show servers\n  show stat\n  reload\n  set server <service>/<server> state <ready|drain|maint>\n  set weight <backend>/<server> <0-256>\n"
                .into()
        }
        _ => format!("error: unknown command `{command}` (try `help`)\n"),
    }
}

/// `lb ctl`: sends `command` to the agent listening on `path` and returns its answer.
pub async fn request(path: &Path, command: &str) -> std::io::Result<String> {
    let stream = UnixStream::connect(path).await?;
    let (reader, mut writer) = stream.into_split();
    writer.write_all(format!("{command}\n").as_bytes()).await?;
    writer.shutdown().await?;
    let mut answer = String::new();
    let mut lines = BufReader::new(reader).lines();
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            break;
        }
        answer.push_str(&line);
        answer.push('\n');
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

    use super::*;
    use crate::health::{BackendState, threshold::Verdict};

    fn board() -> watch::Sender<HealthBoard> {
        let state = BackendState {
            service: "web".into(),
            server: "10.0.2.11:80".into(),
            verdict: Verdict::Up,
            last: None,
            since: SystemTime::now(),
            checks: 0,
            transitions: 0,
            admin: Admin::Ready,
        };
        watch::channel(Arc::new(BTreeMap::from([((0, 0), state)]))).0
    }

    #[test]
    fn set_server_state_changes_the_board() {
        let board = board();
        assert_eq!(
            execute("set server web/10.0.2.11:80 state drain", &board),
            "ok\n"
        );
        let state = board.borrow()[&(0, 0)].clone();
        assert_eq!(state.admin, Admin::Drain);
        assert!(!state.in_service());
        assert!(execute("show servers", &board).contains("DRAIN"));
        assert!(
            execute("set server web/10.0.2.99:80 state maint", &board)
                .starts_with("error: no server")
        );
        assert!(
            execute("set server web/10.0.2.11:80 state off", &board)
                .starts_with("error: expected ready")
        );
        assert!(execute("frobnicate", &board).starts_with("error: unknown command"));
    }
}

#[cfg(test)]
mod access_tests {
    use super::*;

    #[test]
    fn only_root_and_the_agents_user_may_change_state() {
        for command in ["show stat", "show servers", "help"] {
            assert!(allowed(command, Some(1000), 0), "{command} is read-only");
        }
        for command in [
            "set server web/s1 state maint",
            "set weight app/s1 0",
            "reload",
            "upgrade done",
        ] {
            assert!(!allowed(command, Some(1000), 0), "{command} from uid 1000");
            assert!(!allowed(command, None, 0), "{command} from an unknown peer");
            assert!(allowed(command, Some(0), 0), "{command} from root");
            assert!(
                allowed(command, Some(1000), 1000),
                "{command} from the agent's user"
            );
        }
    }

    #[test]
    fn the_socket_is_0600_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        // nextest runs each test in a process of its own: the umask is this test's.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let dir = std::env::temp_dir().join(format!("lb-admin-test-{}", std::process::id()));
        let path = dir.join("t.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mode = runtime.block_on(async {
            let _listener = listen(&path).expect("listen");
            std::fs::metadata(&path)
                .expect("socket")
                .permissions()
                .mode()
                & 0o777
        });
        nix::sys::stat::umask(old);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(mode, 0o600);
    }
}
