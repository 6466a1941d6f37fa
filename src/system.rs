//! What the process asks of the operating system: open-file limit, resident memory, free
//! disk space. Invariant: Linux-specific readings degrade to `None`, never panic.

use std::path::Path;

/// Raises the soft open-file limit to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Resident set size of a process in bytes (`/proc/<pid>/statm`); `None` off Linux.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// CPU time (user + system) a process has used so far, in seconds; `None` off Linux.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((utime + stime) as f64 / if hz > 0 { hz as f64 } else { 100.0 })
}

/// Bytes a process has written so far: `(through write calls, to the storage layer)`, from
/// `/proc/<pid>/io` (`wchar`, `write_bytes`); `None` off Linux.
pub fn written_bytes(pid: u32) -> Option<(u64, u64)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let field = |name: &str| -> Option<u64> {
        io.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    Some((field("wchar:")?, field("write_bytes:")?))
}

/// Resident set size of this process in bytes.
pub fn self_rss_bytes() -> Option<u64> {
    rss_bytes(std::process::id())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn free_disk_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is writable for one statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible() {
        assert!(self_rss_bytes().unwrap() > 100_000);
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {}
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.03);
        let before = written_bytes(std::process::id()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), vec![7u8; 100_000]).unwrap();
        assert!(written_bytes(std::process::id()).unwrap().0 >= before.0 + 100_000);
        assert!(free_disk_bytes(Path::new(".")).unwrap() > 0);
        assert!(raise_fd_limit() >= 256);
    }
}
