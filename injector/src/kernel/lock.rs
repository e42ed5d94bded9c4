//! Several data planes may live on one host (a daemon, tests beside it);
//! each holds a shared lock on one file for its lifetime. Removing what
//! earlier runs left behind is only safe when no other data plane lives:
//! that takes the exclusive lock, which a live one's shared lock blocks.

use std::{fs::File, io, os::fd::AsRawFd, path::Path};

pub const RUN_DIR: &str = "/run/injector";

fn lock_file() -> io::Result<File> {
    std::fs::create_dir_all(RUN_DIR)?;
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(Path::new(RUN_DIR).join("dataplane.lock"))
}

/// A non-blocking flock: Ok(false) when someone else holds it.
pub(super) fn flock(f: &File, op: i32) -> io::Result<bool> {
    if unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// A data plane's presence on the host.
pub struct Presence {
    file: File,
    /// True while this holder may clean up (no other data plane lives).
    pub alone: bool,
}

impl Presence {
    /// Announces a data plane. `alone` tells whether it is the only one,
    /// i.e. whether leftovers may be removed now.
    pub fn announce() -> io::Result<Presence> {
        let file = lock_file()?;
        let alone = flock(&file, libc::LOCK_EX)?;
        if !alone {
            // The exclusive lock is held only while someone cleans up; wait
            // for that, but never forever (an `injector cleanup` stuck on a
            // hung netlink call must not hang every daemon).
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !flock(&file, libc::LOCK_SH)? {
                if std::time::Instant::now() >= deadline {
                    tracing::warn!(
                        "{RUN_DIR}/dataplane.lock stays exclusively held; going on without it"
                    );
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        Ok(Presence { file, alone })
    }

    /// After cleaning up: let other data planes in.
    pub fn share(&mut self) -> io::Result<()> {
        if self.alone {
            flock(&self.file, libc::LOCK_SH)?;
            self.alone = false;
        }
        Ok(())
    }
}

/// For `injector cleanup`: the exclusive lock, or None if a data plane lives.
pub fn try_exclusive() -> io::Result<Option<File>> {
    let f = lock_file()?;
    Ok(flock(&f, libc::LOCK_EX)?.then_some(f))
}
