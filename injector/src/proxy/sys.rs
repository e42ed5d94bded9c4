//! The few raw syscalls proxy mode needs and std/tokio do not offer:
//! splice(2), pipe sizing, timerfd and the socket options Go sets.
//! Every function here is a thin, checked wrapper; no policy.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::time::Duration;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A non-blocking pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int array; on success both are new fds we own.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Moves up to `len` bytes from `from` to `to` inside the kernel; one side
/// must be a pipe. Never blocks on the pipe side; the socket side must be
/// non-blocking. Ok(0) is end of file.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain fds and null offsets (both ends are streams).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub fn pipe_size(fd: &OwnedFd) -> io::Result<usize> {
    // SAFETY: fcntl on an fd we own.
    Ok(check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) })? as usize)
}

/// Asks for a pipe of at least `bytes`; returns the size granted.
pub fn set_pipe_size(fd: &OwnedFd, bytes: usize) -> io::Result<usize> {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl on an fd we own.
    Ok(check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) })? as usize)
}

/// /dev/null, opened once: dropped data is spliced into it.
pub fn dev_null() -> io::Result<RawFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd.as_raw_fd());
    }
    let file = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    Ok(NULL.get_or_init(|| file.into()).as_raw_fd())
}

/// A non-blocking CLOCK_MONOTONIC timerfd.
pub fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; on success a new fd we own.
    let fd = check(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    // SAFETY: just created.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms `fd` to expire once, `after` from now (at least 1 ns: zero disarms).
pub fn timerfd_arm(fd: &OwnedFd, after: Duration) -> io::Result<()> {
    let after = after.max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: after.subsec_nanos() as libc::c_long,
        },
    };
    // SAFETY: valid itimerspec; old value not requested.
    check(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
    Ok(())
}

/// Consumes a timerfd expiration (8 bytes of counter, not stream data).
pub fn timerfd_consume(fd: RawFd) -> io::Result<()> {
    let mut ticks = 0u64;
    // SAFETY: reads 8 bytes into a u64.
    let n = unsafe { libc::read(fd, (&mut ticks as *mut u64).cast(), 8) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: T) -> io::Result<()> {
    // SAFETY: `value` lives across the call and its size is passed.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// What Go's net package sets on every TCP connection: no Nagle, and
/// keepalive probes after 15 s idle, every 15 s.
pub fn tune_like_go(fd: RawFd) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1 as libc::c_int)?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1 as libc::c_int)?;
    setsockopt(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, 15 as libc::c_int)?;
    setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_KEEPINTVL,
        15 as libc::c_int,
    )
}

/// SO_LINGER {on, 0}: closing sends RST instead of FIN.
pub fn linger_zero(fd: RawFd) -> io::Result<()> {
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_LINGER,
        libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
}

/// Go listens on the wildcard with one dual-stack IPv6 socket.
pub fn dual_stack(fd: RawFd) -> io::Result<()> {
    setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0 as libc::c_int)
}

/// The FIN half of Go's Close: both directions shut, the fd stays valid
/// for the other link that may still be polling it.
pub fn shutdown(fd: RawFd) {
    // SAFETY: no pointers. ENOTCONN (peer already gone) is fine to ignore.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// The RST half of a lingerless Go Close, without freeing the fd:
/// connect(AF_UNSPEC) runs tcp_disconnect, which resets an open connection.
pub fn reset(fd: RawFd) {
    let addr = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a valid sockaddr of the given length.
    unsafe {
        libc::connect(
            fd,
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
}

/// Go raises the soft open-files limit to the hard one at start; a proxy
/// holding many connections (and their pipes) needs the same.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid rlimit out-pointer, then the same struct in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Go's text for an errno: the C message with a lower-case first letter
/// ("address already in use").
pub fn go_errno_text(err: &io::Error) -> String {
    let Some(code) = err.raw_os_error() else {
        return err.to_string();
    };
    let text = io::Error::from_raw_os_error(code).to_string();
    let text = text
        .strip_suffix(&format!(" (os error {code})"))
        .unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_texts_read_like_go() {
        let e = io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(go_errno_text(&e), "address already in use");
        let e = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        assert_eq!(go_errno_text(&e), "cannot assign requested address");
    }

    #[test]
    fn pipes_grow_on_request() {
        let (r, _w) = pipe().unwrap();
        let before = pipe_size(&r).unwrap();
        let after = set_pipe_size(&r, before * 4).unwrap();
        assert!(after >= before * 4, "{before} -> {after}");
    }
}
