//! A kernel pipe used as a byte buffer that user space never reads: bytes
//! enter it from a socket or another pipe and leave it to a socket,
//! another pipe or /dev/null, all with splice(2).
//!
//! A pipe's capacity counts slots (page references), not bytes, so a run
//! of small chunks can fill it long before its byte size. A pipe grows on
//! request up to `MAX_BYTES`: the default `fs.pipe-max-size`, the most an
//! unprivileged process (or one without CAP_SYS_RESOURCE) may ask for.
//! Beyond that, queue.rs chains more pipes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::sys;

const MAX_BYTES: usize = 1 << 20;

pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
    /// Bytes in it.
    pub bytes: usize,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let (read, write) = sys::pipe()?;
        let size = sys::pipe_size(&write)?;
        Ok(Pipe {
            read,
            write,
            size,
            bytes: 0,
        })
    }

    /// One splice from a socket: up to `max` bytes; Ok(0) is end of file.
    pub fn fill_from(&mut self, socket: RawFd, max: usize) -> io::Result<usize> {
        let n = sys::splice(socket, self.write.as_raw_fd(), max)?;
        self.bytes += n;
        Ok(n)
    }

    /// One splice to a socket: up to `max` bytes of the pipe's head.
    pub fn drain_to(&mut self, socket: RawFd, max: usize) -> io::Result<usize> {
        let n = sys::splice(self.read.as_raw_fd(), socket, max.min(self.bytes))?;
        self.bytes -= n;
        Ok(n)
    }

    /// One splice of up to `max` bytes from this pipe's head to `dst`'s
    /// tail; WouldBlock when `dst` is full.
    pub fn move_to(&mut self, dst: &mut Pipe, max: usize) -> io::Result<usize> {
        let n = sys::splice(
            self.read.as_raw_fd(),
            dst.write.as_raw_fd(),
            max.min(self.bytes),
        )?;
        if n == 0 {
            return Err(io::Error::other("pipe shorter than its count"));
        }
        self.bytes -= n;
        dst.bytes += n;
        Ok(n)
    }

    /// Throws away exactly `len` bytes from the head (into /dev/null).
    pub fn discard(&mut self, len: usize) -> io::Result<()> {
        let null = sys::dev_null()?;
        let mut left = len.min(self.bytes);
        while left > 0 {
            match sys::splice(self.read.as_raw_fd(), null, left)? {
                0 => return Err(io::Error::other("pipe shorter than its count")),
                n => {
                    left -= n;
                    self.bytes -= n;
                }
            }
        }
        Ok(())
    }

    /// Doubles the pipe if allowed; false when it may not grow further.
    pub fn grow(&mut self) -> bool {
        if self.size >= MAX_BYTES {
            return false;
        }
        match sys::set_pipe_size(&self.write, (self.size * 2).min(MAX_BYTES)) {
            Ok(size) if size > self.size => {
                self.size = size;
                true
            }
            _ => {
                self.size = MAX_BYTES;
                false
            }
        }
    }
}
