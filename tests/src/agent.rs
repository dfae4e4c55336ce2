//! Running the real `lb` binary inside a lab host.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use lb_common::counters::Counter;

use crate::netns::{Host, Lab};

/// Path of the `lb` binary: `$LB_BIN`, or `lb` in the same target profile directory as the
/// running executable
/// (`cargo xtask test` builds it first).
pub fn lb_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("LB_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // Test executables sit in target/<profile>/deps, binaries in target/<profile>.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("lb"))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        anyhow!(
            "no lb binary at {}: build it with `cargo build -p lb-user` (cargo xtask test does)",
            candidates[0].display()
        )
    })
}

/// A unique bpffs directory for one agent in a test, removed (with everything pinned in it)
/// when dropped. An agent killed with SIGKILL leaves its maps pinned by design (the next
/// agent adopts them); without this, every such test would leak tens of MB of kernel memory.
pub struct BpfDir(PathBuf);

impl std::ops::Deref for BpfDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for BpfDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for BpfDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for BpfDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_file(lb::agent::health_status_path(&self.0));
        let _ = std::fs::remove_file(lb::admin::socket_path(&self.0));
    }
}

/// A fresh [`BpfDir`]. The first call also removes directories left by test processes that
/// were killed before they could clean up.
pub fn unique_bpf_dir() -> BpfDir {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(remove_stale_bpf_dirs);
    BpfDir(PathBuf::from(format!(
        "/sys/fs/bpf/lb-test-{}-agent{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )))
}

fn remove_stale_bpf_dirs() {
    let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("lb-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// An `lb run` process in a lab host.
pub struct RunningAgent {
    pid: u32,
    bpf_dir: PathBuf,
    _config: tempfile::NamedTempFile,
}

impl RunningAgent {
    /// Writes `config` to a file and runs `lb run -c FILE` (plus `extra_args`) in `host`; waits
    /// (up to 20 s) until the agent logs that it runs. The lab kills it on drop.
    pub fn start(
        lab: &Lab,
        host: &Host,
        config: &str,
        bpf_dir: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut file = tempfile::Builder::new()
            .prefix("lb-test-")
            .suffix(".toml")
            .tempfile()?;
        std::io::Write::write_all(&mut file, config.as_bytes())?;
        let mut args: Vec<std::ffi::OsString> = vec!["run".into(), "-c".into(), file.path().into()];
        args.extend(extra_args.iter().map(Into::into));
        let pid = spawn_lb(lab, host, &args, "lb running")?;
        Ok(RunningAgent {
            pid,
            bpf_dir: bpf_dir.to_path_buf(),
            _config: file,
        })
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Replaces the agent's configuration file with `config` (nothing is reloaded yet).
    pub fn rewrite_config(&self, config: &str) -> anyhow::Result<()> {
        std::fs::write(self._config.path(), config).context("writing the agent's config")
    }

    /// Writes `config` and runs `lb reload`: the agent's answer (`ok: ...`), or an error
    /// carrying it when the agent refused.
    pub fn reload(&self, config: &str) -> anyhow::Result<String> {
        self.rewrite_config(config)?;
        let output = std::process::Command::new(lb_binary()?)
            .arg("reload")
            .arg("--bpf-dir")
            .arg(&self.bpf_dir)
            .output()
            .context("running lb reload")?;
        let answer = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "lb reload failed: {answer}{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(answer)
    }

    /// Sends one line to the agent's runtime API (`lb ctl`) and returns the answer.
    pub fn ctl(&self, command: &str) -> anyhow::Result<String> {
        let output = std::process::Command::new(lb_binary()?)
            .arg("ctl")
            .arg("--bpf-dir")
            .arg(&self.bpf_dir)
            .args(command.split_whitespace())
            .output()
            .context("running lb ctl")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The counters as `lb stats --bpf-dir DIR` prints them.
    pub fn stats(&self) -> anyhow::Result<Vec<(Counter, u64)>> {
        parse_stats(&self.stats_text()?)
    }

    /// The text `lb stats --bpf-dir DIR` prints.
    pub fn stats_text(&self) -> anyhow::Result<String> {
        let output = std::process::Command::new(lb_binary()?)
            .arg("stats")
            .arg("--bpf-dir")
            .arg(&self.bpf_dir)
            .output()
            .context("running lb stats")?;
        if !output.status.success() {
            bail!(
                "lb stats failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Runs `lb decap --iface IFACE --vip VIP...` in `host` until the lab drops; waits until it
/// runs. Returns its process id.
pub fn start_decap(
    lab: &Lab,
    host: &Host,
    iface: &str,
    vips: &[&str],
    bpf_dir: &Path,
) -> anyhow::Result<u32> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "decap".into(),
        "--iface".into(),
        iface.into(),
        "--bpf-dir".into(),
        bpf_dir.into(),
    ];
    for vip in vips {
        args.push("--vip".into());
        args.push(vip.into());
    }
    spawn_lb(lab, host, &args, "lb decap running")
}

/// Starts the `lb` binary with `args` in `host`, forwards its log to the test's stderr, and
/// waits up to 20 s for a log line containing `ready`. The lab owns (and kills) the process.
fn spawn_lb(
    lab: &Lab,
    host: &Host,
    args: &[std::ffi::OsString],
    ready: &'static str,
) -> anyhow::Result<u32> {
    let mut command = host.command(lb_binary()?)?;
    command
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("LB_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("starting lb")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let pid = child.id();
    // The lab owns the process from here, so it is killed even if we bail out below.
    lab.adopt(child)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[lb {pid}] {line}");
            if line.contains(ready) {
                let _ = ready_tx.send(Ok(()));
            } else if line.contains("error") {
                let _ = ready_tx.send(Err(line));
            }
        }
    });
    match ready_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(())) => Ok(pid),
        Ok(Err(line)) => bail!("lb failed: {line}"),
        Err(_) => bail!("lb did not log `{ready}` within 20 s"),
    }
}

/// Parses the `name value` lines `lb stats` prints.
pub fn parse_stats(text: &str) -> anyhow::Result<Vec<(Counter, u64)>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut fields = line.split_whitespace();
            let (Some(name), Some(value), None) = (fields.next(), fields.next(), fields.next())
            else {
                bail!("unexpected lb stats line `{line}`");
            };
            let counter =
                Counter::from_name(name).ok_or_else(|| anyhow!("unknown counter `{name}`"))?;
            Ok((
                counter,
                value.parse().with_context(|| format!("value of {name}"))?,
            ))
        })
        .collect()
}

/// The value of `counter` in parsed stats.
pub fn stat(stats: &[(Counter, u64)], counter: Counter) -> u64 {
    stats
        .iter()
        .find(|(c, _)| *c == counter)
        .map_or(0, |(_, v)| *v)
}

/// The state column (`UP`, `DOWN`, `DRAIN`, `MAINT`) of `server` in an agent's health status
/// file, if the server is listed.
pub fn health_state(status: &Path, server: &str) -> Option<String> {
    let text = std::fs::read_to_string(status).ok()?;
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(server))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

/// Polls the status file until `server` is UP with at least one check behind it (every
/// backend starts UP before its first check).
pub fn wait_for_checked_up(status: &Path, server: &str, limit: Duration) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        let text = std::fs::read_to_string(status).unwrap_or_default();
        let checked_up = text.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1) == Some(&server)
                && fields.get(2) == Some(&"UP")
                && !l.contains("none yet")
        });
        if checked_up {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!(
        "{server} was not checked and UP within {limit:?}: {:?}",
        std::fs::read_to_string(status)
    )
}

/// Polls the status file until `server` shows `wanted`; returns how long that took, or an
/// error (with the file's contents) after `limit`.
pub fn wait_for_health(
    status: &Path,
    server: &str,
    wanted: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if health_state(status, server).as_deref() == Some(wanted) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!(
        "{server} did not become {wanted} within {limit:?}: {:?}",
        std::fs::read_to_string(status)
    )
}
