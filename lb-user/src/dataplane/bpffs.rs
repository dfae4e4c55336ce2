//! Making sure the pin directory lives on a BPF filesystem.

use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

/// `f_type` of a bpffs mount (linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// True if `path` is on a bpffs mount.
fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `statfs` writes only into the zeroed struct we pass; `c_path` is NUL-terminated.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type == BPF_FS_MAGIC)
}

/// Ensures `dir` exists on a bpffs: mounts bpffs on `/sys/fs/bpf` when nothing is mounted
/// there yet (it is not by default on Debian without systemd's mount unit), then creates `dir`.
pub fn ensure_bpffs(dir: &Path) -> io::Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if dir.starts_with(root) && !is_bpffs(root)? {
        tracing::info!("mounting bpffs on {}", root.display());
        let source = CString::new("bpf").expect("no NUL");
        let target = CString::new("/sys/fs/bpf").expect("no NUL");
        // SAFETY: all pointers are valid NUL-terminated strings; data is unused for bpffs.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                source.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    std::fs::create_dir_all(dir)?;
    if !is_bpffs(dir)? {
        return Err(io::Error::other(format!(
            "{} is not on a BPF filesystem: mount one with `mount -t bpf bpf {}`",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}
