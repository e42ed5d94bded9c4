//! A link's timer: a timerfd, so that waits have microsecond precision
//! (slicer delays are in µs; tokio's timer wheel ticks in milliseconds).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use super::sys;

pub struct Timer {
    fd: AsyncFd<OwnedFd>,
    armed: Option<Instant>,
}

impl Timer {
    pub fn new() -> io::Result<Timer> {
        let fd = sys::timerfd()?;
        // SAFETY: the OwnedFd is valid and only closed when the AsyncFd
        // (which owns it) is dropped.
        let fd = unsafe { AsyncFd::register(fd)? };
        Ok(Timer { fd, armed: None })
    }

    /// Returns at `at` (at once if it passed). Cancel-safe: dropping the
    /// future keeps the timer armed for the next call with the same time.
    pub async fn sleep_until(&mut self, at: Instant) -> io::Result<()> {
        let now = Instant::now();
        if at <= now {
            return Ok(());
        }
        if self.armed != Some(at) {
            sys::timerfd_arm(self.fd.get_ref(), at - now)?;
            self.armed = Some(at);
        }
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| sys::timerfd_consume(fd.get_ref().as_raw_fd())) {
                Ok(result) => {
                    result?;
                    self.armed = None;
                    return Ok(());
                }
                Err(_would_block) => continue,
            }
        }
    }
}
