//! Real daemons from Debian as lab peers: nginx as an application server, keepalived as a
//! VRRP peer.

use std::{path::Path, process::Stdio};

use anyhow::Context as _;

use crate::netns::Lab;

/// Starts nginx on lab host `host`, listening on `listen` (`address:port`), answering `/`
/// with `text` and `/64k` with 64 KiB; files and logs under `dir`. `single` runs one process
/// without a master (so SIGKILL of the returned pid stops it all), else two workers. With
/// `tls`, a PEM file holding a certificate and its key, it serves HTTPS.
/// Returns the pid.
pub fn nginx_backend(
    lab: &Lab,
    host: &str,
    listen: &str,
    text: &str,
    dir: &Path,
    single: bool,
    tls: Option<&Path>,
) -> anyhow::Result<u32> {
    let dir = dir.join(format!("nginx-{host}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("64k"), vec![b'x'; 65536])?;
    let processes = if single {
        "worker_processes 1;\nmaster_process off;"
    } else {
        "worker_processes 2;"
    };
    let listen = match tls {
        Some(pem) => format!(
            "{listen} ssl;\n  ssl_certificate {pem};\n  ssl_certificate_key {pem}",
            pem = pem.display()
        ),
        None => listen.to_string(),
    };
    let config = format!(
        "{processes}\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n access_log off;\n keepalive_requests 1000000;\n keepalive_timeout 60s;\n\
         client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};\n\
         uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
         server {{\n  listen {listen};\n  location = / {{ return 200 \"{text}\"; }}\n\
         location = /64k {{ root {dir}; }}\n }}\n}}\n",
        dir = dir.display()
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, config)?;
    let mut command = lab.host(host).command("nginx")?;
    command
        .args(["-g", "daemon off;", "-c"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.start(command)
        .context("starting nginx (run `cargo xtask setup`)")
}

/// Starts keepalived (VRRP only, in the foreground) on lab host `host` with `config` (a
/// keepalived.conf), its files under `dir`. Returns the pid.
pub fn keepalived(lab: &Lab, host: &str, config: &str, dir: &Path) -> anyhow::Result<u32> {
    let file = dir.join("keepalived.conf");
    std::fs::write(&file, config)?;
    let mut command = lab.host(host).command("keepalived")?;
    command
        .args([
            "--dont-fork",
            "--log-console",
            "--log-detail",
            "--no-syslog",
            "--vrrp",
            "-f",
        ])
        .arg(&file)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.start(command)
        .context("starting keepalived (run `cargo xtask setup`)")
}
