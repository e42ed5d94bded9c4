//! One data plane per host owns the kernel objects injector creates. The
//! holder of this lock may remove leftovers of earlier runs; a second
//! daemon (or a test running beside one) must not touch them.

use std::{fs::File, io, os::fd::AsRawFd, path::Path};

pub const RUN_DIR: &str = "/run/injector";

/// Takes the host-wide lock without waiting; None when someone holds it.
pub fn try_acquire() -> io::Result<Option<File>> {
    std::fs::create_dir_all(RUN_DIR)?;
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(RUN_DIR).join("dataplane.lock"))?;
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(Some(f))
    } else {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e)
        }
    }
}
