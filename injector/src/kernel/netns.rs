//! Network namespaces. setns(2) changes only the calling thread, so work
//! inside another namespace runs on a short-lived OS thread that joins it
//! and ends; no thread of the runtime ever leaves the host namespace.

use std::{
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

/// Where `ip netns` keeps named namespaces.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Resolves a user-given namespace: a name under /var/run/netns or a path
/// (e.g. /proc/PID/ns/net).
pub fn path_of(spec: &str) -> PathBuf {
    if spec.contains('/') {
        PathBuf::from(spec)
    } else {
        Path::new(NETNS_RUN_DIR).join(spec)
    }
}

/// Runs `f` on a new thread that has joined the namespace `ns`.
pub fn run_in<T: Send + 'static>(
    ns: &File,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let fd = ns.try_clone()?;
    std::thread::spawn(move || {
        if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("namespace worker panicked"))?
}

/// Runs the synchronous `f` with the calling thread inside `ns`, then puts
/// the thread back where it was. `f` must not block or yield: the thread
/// may be a runtime worker. Used where a socket must be created in `ns` but
/// registered with the caller's runtime.
pub fn with_thread_in<T>(ns: &File, f: impl FnOnce() -> T) -> io::Result<T> {
    let home = File::open("/proc/thread-self/ns/net")?;
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let out = f();
    if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        // A runtime thread left in a foreign namespace would act there.
        panic!(
            "cannot return to the original network namespace: {}",
            io::Error::last_os_error()
        );
    }
    Ok(out)
}

/// Identity of a namespace (device, inode) to compare two handles.
pub fn identity(ns: &File) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = ns.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// The namespace this process was started in.
pub fn host() -> io::Result<File> {
    File::open("/proc/self/ns/net")
}
