//! Netns lab: the runtime API's guard rails. The socket is 0600 even when the agent starts
//! under umask 000; a user other than root and the agent's may read (`show stat`) but not
//! change state, even through a socket an operator opened to everyone; `lb reload -c FILE`
//! reports the error in FILE itself, and refuses a file the agent does not run with. Needs
//! root.

use std::{os::unix::fs::PermissionsExt as _, os::unix::process::CommandExt as _};

use lb_tests::{
    agent::{RunningAgent, lb_binary, unique_bpf_dir},
    netns::LabSpec,
    require_root,
};

/// A copy of the lb binary any user may run (the build tree may be private to root, as in
/// a CI checkout under a 0700 directory).
fn public_lb() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = dir.path().join("lb");
    std::fs::copy(lb_binary().expect("lb binary"), &copy).expect("copy lb");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (dir, copy)
}

fn run_lb(args: &[&str], uid: Option<u32>) -> (bool, String) {
    let (_dir, binary) = public_lb();
    let mut command = std::process::Command::new(&binary);
    command.args(args);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let output = command.output().expect("run lb");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn the_runtime_api_is_for_root_and_reload_names_the_right_file() {
    require_root();
    // The agent inherits this umask: the socket must not.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let lab = LabSpec::new("admin").host("lb").build().expect("lab");
    let bpf_dir = unique_bpf_dir();
    let config = format!(
        "[global]\nbpf_dir = \"{}\"\n\n[defaults]\nlog = \"none\"\n\n\
         [[listen]]\nname = \"app\"\nbind = [\"127.0.0.1:8080\"]\n\
         servers = [{{ name = \"s1\", addr = \"127.0.0.1:9000\" }}]\n",
        bpf_dir.display()
    );
    let agent = RunningAgent::start(&lab, lab.host("lb"), &config, &bpf_dir, &[]).expect("agent");
    let socket = lb::admin::socket_path(&bpf_dir);
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{}", socket.display());

    // An operator opens the socket to everyone: the credentials still decide.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let dir = bpf_dir.to_string_lossy().into_owned();
    let (_, shown) = run_lb(&["ctl", "--bpf-dir", &dir, "show", "stat"], Some(65534));
    assert!(shown.contains("app/s1"), "show stat is for anyone: {shown}");
    let (ok, refused) = run_lb(
        &["ctl", "--bpf-dir", &dir, "set", "weight", "app/s1", "0"],
        Some(65534),
    );
    assert!(!ok && refused.contains("permission denied"), "{refused}");
    let (ok, refused) = run_lb(&["ctl", "--bpf-dir", &dir, "upgrade", "done"], Some(65534));
    assert!(!ok && refused.contains("permission denied"), "{refused}");
    assert!(
        agent
            .ctl("show stat")
            .expect("show stat")
            .contains("app/s1"),
        "the agent still runs"
    );

    // `lb reload -c` with an error in the file: that error, and nothing reloaded.
    let broken = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    std::fs::write(
        broken.path(),
        format!("[global]\nbpf_dir = \"{dir}\"\n\n[[listen]\nname = 1\n"),
    )
    .expect("write");
    let broken_path = broken.path().to_string_lossy().into_owned();
    let (ok, answer) = run_lb(&["reload", "-c", &broken_path], None);
    assert!(!ok, "{answer}");
    assert!(
        answer.contains(&broken_path) && !answer.contains("is `lb run` running"),
        "the file's own error: {answer}"
    );
    // A valid file the agent does not run with: refused, naming both.
    let other = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    std::fs::write(other.path(), &config).expect("write");
    let other_path = other.path().to_string_lossy().into_owned();
    let (ok, answer) = run_lb(&["reload", "-c", &other_path], None);
    assert!(
        !ok && answer.contains("runs with") && answer.contains(&other_path),
        "{answer}"
    );
    let (ok, answer) = run_lb(&["reload", "--bpf-dir", &dir], None);
    assert!(ok, "its own file reloads: {answer}");
}
