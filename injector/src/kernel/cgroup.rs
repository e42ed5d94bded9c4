//! cgroup v2: where it is mounted and how a path becomes the id the BPF
//! helpers report (the id is the inode number of the cgroup directory).

use std::{
    fs::{self, File},
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The cgroup2 mount point, read from /proc/self/mountinfo (hybrid hosts
/// mount it at /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup).
pub fn v2_mount() -> io::Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    parse_mountinfo(&info).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 filesystem is mounted (cgroup v2 is needed for cgroup targets)",
        )
    })
}

fn parse_mountinfo(info: &str) -> Option<PathBuf> {
    info.lines().find_map(|line| {
        // fields: id parent major:minor root mount-point options ... - fstype source
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// A resolved cgroup: its directory and id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub path: PathBuf,
    pub id: u64,
}

/// Accepts a path relative to the v2 mount ("/docker/abc" or "docker/abc")
/// or an absolute path inside it.
pub fn resolve(spec: &str) -> io::Result<Cgroup> {
    let mount = v2_mount()?;
    let p = Path::new(spec);
    let path = if p.starts_with(&mount) {
        p.to_path_buf()
    } else {
        mount.join(spec.trim_start_matches('/'))
    };
    let meta = fs::metadata(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("cgroup {}: {e}", path.display())))?;
    if !meta.is_dir() || !path.join("cgroup.procs").exists() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a cgroup v2 directory", path.display()),
        ));
    }
    Ok(Cgroup {
        id: meta.ino(),
        path,
    })
}

/// The v2 cgroup of a process (the "0::" line of /proc/PID/cgroup).
pub fn of_pid(pid: u32) -> io::Result<Cgroup> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "process has no cgroup v2 entry"))?;
    resolve(rel)
}

impl Cgroup {
    pub fn open(&self) -> io::Result<File> {
        File::open(&self.path)
    }

    /// The root cgroup holds every process of the host.
    pub fn is_root(&self) -> bool {
        v2_mount().map(|m| m == self.path).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_among_v1_ones() {
        let info = "\
25 1 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu";
        assert_eq!(
            parse_mountinfo(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(parse_mountinfo("1 2 3:4 / / rw - ext4 /dev/vda rw"), None);
    }
}
