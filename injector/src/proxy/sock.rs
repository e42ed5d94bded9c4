//! One side of a proxied connection, shared by the two links that use it
//! (one reads it, the other writes it), with Go's close semantics.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::sys;

pub struct Sock {
    stream: TcpStream,
    closed: AtomicBool,
    resets: AtomicBool,
}

impl Sock {
    pub fn new(stream: TcpStream) -> io::Result<Sock> {
        sys::tune_like_go(stream.as_raw_fd())?;
        Ok(Sock {
            stream,
            closed: AtomicBool::new(false),
            resets: AtomicBool::new(false),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Runs a non-blocking syscall for `interest`; a WouldBlock clears
    /// tokio's readiness so that the next wait is a real one.
    pub fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        self.stream.try_io(interest, f)
    }

    pub async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }

    pub async fn writable(&self) -> io::Result<()> {
        self.stream.writable().await
    }

    /// Closing resets the connection from now on (SO_LINGER 0), also when
    /// the proxy stops and the fd is simply dropped.
    pub fn reset_on_close(&self) {
        if sys::linger_zero(self.fd()).is_ok() {
            self.resets.store(true, Ordering::Release);
        }
    }

    /// Go's Close while the other link may still poll the fd: the peer
    /// gets a FIN (or a RST when resetting), our reader sees the end.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.resets.load(Ordering::Acquire) {
            sys::reset(self.fd());
        } else {
            sys::shutdown(self.fd());
        }
    }

    /// Closed by a link: reading it is over, as a read on a closed Go conn.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
