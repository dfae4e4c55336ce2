//! `cargo xtask lab box`: the VMs' box, built from Debian's packages alone (Vagrant Cloud is
//! out of reach here, as behind many firewalls): a debootstrap of bookworm with the cloud
//! kernel and everything the lab runs (nginx, keepalived, curl, iproute2, ...), so the VMs
//! need no network at boot. The image is a bare ext4 file system booted by libvirt's direct
//! kernel boot (the kernel and initrd stay beside it, in the box folder). lb itself is built
//! on the host and copied in at `up`.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context as _, bail};

use super::vagrant::BOX_NAME;

/// Packages in the image.
const PACKAGES: &[&str] = &[
    "systemd-sysv",
    "openssh-server",
    "sudo",
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "iputils-ping",
    "procps",
    // sudo resolves the host name, set from the kernel command line, through it.
    "libnss-myhostname",
    "ethtool",
    "kmod",
    "curl",
    "nginx-light",
    "keepalived",
    "linux-image-cloud-amd64",
    "initramfs-tools",
];
/// Where the packages come from.
const MIRROR: &str = "http://deb.debian.org/debian";
/// The image's size (sparse).
const IMAGE_GIB: u64 = 3;
/// Vagrant's well-known public key, which the box's `vagrant` user accepts.
const VAGRANT_KEY: &str = "/usr/share/rubygems-integration/all/gems/vagrant-2.3.4/keys/vagrant.pub";

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn write(root: &Path, path: &str, text: &str) -> anyhow::Result<()> {
    let file = root.join(path.trim_start_matches('/'));
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))
}

/// Turns a debootstrapped tree into a vagrant-libvirt guest.
fn configure(rootfs: &Path) -> anyhow::Result<()> {
    let chroot = |args: &[&str]| run(Command::new("chroot").arg(rootfs).args(args));
    write(rootfs, "/etc/hostname", "lb-lab\n")?;
    write(
        rootfs,
        "/etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tlb-lab\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    )?;
    write(
        rootfs,
        "/etc/fstab",
        "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n",
    )?;
    // `auto`, not `allow-hotplug`: Vagrant's hostname step would take eth0 down otherwise.
    write(
        rootfs,
        "/etc/network/interfaces",
        "source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n\n\
         # Vagrant's management network.\nauto eth0\niface eth0 inet dhcp\n",
    )?;
    // debootstrap copied the host's; the DHCP client writes its own.
    write(rootfs, "/etc/resolv.conf", "")?;
    // Empty: each VM makes its own machine id (and DHCP client id) at first boot.
    write(rootfs, "/etc/machine-id", "")?;
    let _ = std::fs::remove_file(rootfs.join("var/lib/dbus/machine-id"));
    chroot(&[
        "useradd",
        "--create-home",
        "--shell",
        "/bin/bash",
        "--user-group",
        "vagrant",
    ])?;
    let key = std::fs::read_to_string(VAGRANT_KEY)
        .with_context(|| format!("reading Vagrant's public key {VAGRANT_KEY}"))?;
    write(rootfs, "/home/vagrant/.ssh/authorized_keys", &key)?;
    chroot(&["chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh"])?;
    chroot(&["chmod", "700", "/home/vagrant/.ssh"])?;
    chroot(&["chmod", "600", "/home/vagrant/.ssh/authorized_keys"])?;
    write(
        rootfs,
        "/etc/sudoers.d/vagrant",
        "vagrant ALL=(ALL) NOPASSWD:ALL\n",
    )?;
    chroot(&["chmod", "440", "/etc/sudoers.d/vagrant"])?;
    write(
        rootfs,
        "/etc/profile.d/sbin-path.sh",
        "case \":$PATH:\" in *:/usr/sbin:*) ;; *) PATH=\"$PATH:/usr/local/sbin:/usr/sbin:/sbin\" ;; esac\n",
    )?;
    write(rootfs, "/etc/default/locale", "LANG=C.UTF-8\n")?;
    // No resolver on the lab: no reverse look-ups of ssh clients.
    write(rootfs, "/etc/ssh/sshd_config.d/lab.conf", "UseDNS no\n")?;
    // The lab starts nginx and keepalived where a node's role wants them; nothing is
    // fetched offline; ifupdown-pre only waits for udev (10 s under software emulation), and
    // the initramfs has loaded virtio_net already.
    chroot(&[
        "systemctl",
        "disable",
        "nginx.service",
        "keepalived.service",
    ])?;
    chroot(&[
        "systemctl",
        "mask",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "ifupdown-pre.service",
    ])?;
    chroot(&["apt-get", "clean"])?;
    let _ = std::fs::remove_dir_all(rootfs.join("var/lib/apt/lists"));
    Ok(())
}

/// Builds the box in `dir` and adds it to Vagrant as [`BOX_NAME`].
pub fn build(dir: &Path) -> anyhow::Result<()> {
    let rootfs = dir.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs)?;
    }
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    println!("box: debootstrap of bookworm ({} packages)", PACKAGES.len());
    let cache = dir.join("debcache");
    std::fs::create_dir_all(&cache)?;
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--cache-dir={}", cache.display()))
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg("bookworm")
        .arg(&rootfs)
        .arg(MIRROR))
    .context("debootstrap (run `cargo xtask setup`)")?;
    println!("box: debootstrap took {:?}", started.elapsed());

    configure(&rootfs)?;

    // Direct kernel boot: kernel and initrd beside the image (followed from the links
    // Debian keeps at the root of the tree), readable by libvirt's qemu user.
    for name in ["vmlinuz", "initrd.img"] {
        std::fs::copy(rootfs.join(name), dir.join(name))
            .with_context(|| format!("copying the box's {name}"))?;
    }

    let raw = dir.join("rootfs.raw");
    let _ = std::fs::remove_file(&raw);
    std::fs::File::create(&raw)?.set_len(IMAGE_GIB << 30)?;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "root", "-d"])
        .arg(&rootfs)
        .arg(&raw))?;
    let image = dir.join("box.img");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&image))?;
    std::fs::remove_file(&raw)?;
    std::fs::remove_dir_all(&rootfs)?;
    std::fs::write(
        dir.join("metadata.json"),
        format!("{{\"provider\":\"libvirt\",\"format\":\"qcow2\",\"virtual_size\":{IMAGE_GIB}}}\n"),
    )?;
    std::fs::write(
        dir.join("Vagrantfile"),
        "Vagrant.configure(\"2\") do |config|\n  config.vm.synced_folder \".\", \"/vagrant\", disabled: true\n  \
         config.ssh.insert_key = false\n  config.vm.provider :libvirt do |libvirt|\n    \
         libvirt.driver = \"qemu\"\n    libvirt.disk_bus = \"virtio\"\n    libvirt.graphics_type = \"none\"\n  end\nend\n",
    )?;
    // A rebuilt box gets a new base volume in libvirt's pool; the old ones would stay.
    let volumes = Command::new("virsh")
        .args(["vol-list", "default"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for volume in volumes
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| v.starts_with("lb-lab-VAGRANTSLASH-bookworm_vagrant_box_image"))
    {
        let _ = Command::new("virsh")
            .args(["vol-delete", "--pool", "default", volume])
            .output();
    }
    let file = dir.join("lb-lab.box");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&file)
        .arg("-C")
        .arg(dir)
        .args(["metadata.json", "Vagrantfile", "box.img"]))?;
    run(Command::new("vagrant")
        .args(["box", "add", "--force", "--name", BOX_NAME])
        .arg(&file))?;
    // Vagrant keeps its own copy.
    std::fs::remove_file(&file)?;
    std::fs::remove_file(&image)?;
    println!("box: {BOX_NAME} added ({:?} in all)", started.elapsed());
    Ok(())
}
