//! A kernel pipe used as a byte buffer that user space never reads: bytes
//! enter it from a socket or another pipe and leave it to a socket,
//! another pipe or /dev/null, all with splice(2).
//!
//! A pipe's capacity counts slots (page references), not bytes, so a run
//! of small chunks can fill it long before its byte size. Moves into a
//! pipe therefore grow it on demand (F_SETPIPE_SZ) up to `MAX_BYTES`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::sys;

/// 32768 slots: enough for ToxiProxy's 1024-chunk latency buffer even
/// when every 32 KiB chunk arrived in 16 fragments. The slot array costs
/// 40 bytes a slot and is only allocated when a stage really holds that
/// much.
const MAX_BYTES: usize = 128 << 20;

pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = sys::pipe()?;
        let size = sys::pipe_size(&write)?;
        Ok(Pipe { read, write, size })
    }

    /// One splice from a socket: up to `max` bytes; Ok(0) is end of file.
    pub fn fill_from(&mut self, socket: RawFd, max: usize) -> io::Result<usize> {
        sys::splice(socket, self.write.as_raw_fd(), max)
    }

    /// One splice to a socket: up to `max` bytes of the pipe's head.
    pub fn drain_to(&mut self, socket: RawFd, max: usize) -> io::Result<usize> {
        sys::splice(self.read.as_raw_fd(), socket, max)
    }

    /// Moves exactly `len` bytes from this pipe's head to `dst`'s tail.
    pub fn move_to(&mut self, dst: &mut Pipe, len: usize) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            match sys::splice(self.read.as_raw_fd(), dst.write.as_raw_fd(), left) {
                Ok(0) => return Err(io::Error::other("pipe shorter than its chunks")),
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => dst.grow()?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Throws away exactly `len` bytes from the head (into /dev/null).
    pub fn discard(&mut self, len: usize) -> io::Result<()> {
        let null = sys::dev_null()?;
        let mut left = len;
        while left > 0 {
            match sys::splice(self.read.as_raw_fd(), null, left)? {
                0 => return Err(io::Error::other("pipe shorter than its chunks")),
                n => left -= n,
            }
        }
        Ok(())
    }

    fn grow(&mut self) -> io::Result<()> {
        if self.size >= MAX_BYTES {
            return Err(io::Error::other("pipe buffer limit reached"));
        }
        self.size = sys::set_pipe_size(&self.write, (self.size * 2).min(MAX_BYTES))?;
        Ok(())
    }
}
