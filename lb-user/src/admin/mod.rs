//! The runtime API: a Unix socket taking one command per line, in HAProxy's runtime-API words
//! (`show servers`, `show stat`, `set server web/10.0.2.11:80 state drain`), answered with text ending in a
//! blank line. `lb ctl` is its client.

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

/// Binds the socket (replacing one left by an agent that died) and serves it until dropped.
pub fn listen(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path)
}

/// Answers commands on `listener` until the task is dropped; `reload` goes to `control`.
pub async fn serve(
    listener: UnixListener,
    board: watch::Sender<HealthBoard>,
    proxy: Arc<ProxyRuntime>,
    control: mpsc::Sender<Control>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let board = board.clone();
        let proxy = proxy.clone();
        let control = control.clone();
        tokio::spawn(async move { session(stream, board, proxy, control).await });
    }
}

async fn session(
    stream: UnixStream,
    board: watch::Sender<HealthBoard>,
    proxy: Arc<ProxyRuntime>,
    control: mpsc::Sender<Control>,
) {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match line.trim() {
            "show stat" => {
                let proxy = proxy.current();
                if proxy.frontend_count() == 0 {
                    "no frontends\n".to_string()
                } else {
                    proxy.render_stats()
                }
            }
            "reload" => {
                let (answer, answered) = oneshot::channel();
                if control.send(Control::Reload(answer)).await.is_err() {
                    "error: the agent is shutting down\n".to_string()
                } else {
                    answered
                        .await
                        .unwrap_or_else(|_| "error: the agent is shutting down\n".to_string())
                }
            }
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
