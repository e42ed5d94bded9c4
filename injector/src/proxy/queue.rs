//! The chunks waiting at one point of a link: their sizes and read times
//! here, their bytes in a pipe, in the same order. ToxiProxy's channel of
//! `StreamChunk`s, with the data left in the kernel.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use super::pipe::Pipe;

/// What one splice from the source socket moved (ToxiProxy's StreamChunk),
/// or a piece of it after a toxic cut it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub len: usize,
    /// When it was read; latency moves it forward as it delays the chunk.
    pub ts: Instant,
}

/// The head of a queue as a toxic sees it.
#[derive(Clone, Copy, Debug)]
pub enum Input {
    Chunk(Chunk),
    /// No chunk left and the input is closed.
    Eof,
    /// Nothing yet.
    Empty,
}

/// Chunks in order; their bytes in a chain of pipes (one is enough
/// unless the chunks hold more slots than a pipe may have).
#[derive(Default)]
pub struct Queue {
    pipes: VecDeque<Pipe>,
    chunks: VecDeque<Chunk>,
    /// The input is closed after the queued chunks.
    pub eof: bool,
}

impl Queue {
    pub fn input(&self) -> Input {
        match self.chunks.front() {
            Some(c) => Input::Chunk(*c),
            None if self.eof => Input::Eof,
            None => Input::Empty,
        }
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn head_len(&self) -> usize {
        self.chunks.front().map_or(0, |c| c.len)
    }

    /// The pipe holding the head bytes.
    fn front(&mut self) -> io::Result<&mut Pipe> {
        self.pipes
            .front_mut()
            .ok_or_else(|| io::Error::other("queued chunk without a pipe"))
    }

    /// The pipe new bytes go to.
    fn tail(&mut self) -> io::Result<&mut Pipe> {
        if self.pipes.is_empty() {
            self.pipes.push_back(Pipe::new()?);
        }
        Ok(self.pipes.back_mut().expect("just ensured"))
    }

    /// Drops drained pipes, keeping the last one for what comes next.
    fn tidy(&mut self) {
        while self.pipes.len() > 1 && self.pipes.front().is_some_and(|p| p.bytes == 0) {
            self.pipes.pop_front();
        }
    }

    /// Reads one chunk from `socket` straight into this queue, which must
    /// be empty so that the pipe's free room cannot cut the chunk short:
    /// its size is all the kernel gave (up to `max`). Ok(0) is end of file.
    pub fn read_from(&mut self, socket: RawFd, max: usize) -> io::Result<usize> {
        debug_assert!(self.chunks.is_empty());
        let n = self.tail()?.fill_from(socket, max)?;
        if n > 0 {
            self.chunks.push_back(Chunk {
                len: n,
                ts: Instant::now(),
            });
        }
        Ok(n)
    }

    /// Splices what it can of the head chunk to `socket`.
    pub fn write_to(&mut self, socket: RawFd) -> io::Result<usize> {
        let len = self.head_len();
        if len == 0 {
            return Ok(0);
        }
        let n = self.front()?.drain_to(socket, len)?;
        self.consume(n);
        self.tidy();
        Ok(n)
    }

    /// Moves the first `n` bytes of the head chunk to the tail of `dst` as
    /// a chunk of its own, stamped `ts`.
    pub fn forward(&mut self, dst: &mut Queue, n: usize, ts: Instant) -> io::Result<()> {
        let n = n.min(self.head_len());
        if n == 0 {
            return Ok(());
        }
        self.transfer(dst, n)?;
        dst.chunks.push_back(Chunk { len: n, ts });
        self.consume(n);
        Ok(())
    }

    /// Drops the first `n` bytes of the head chunk.
    pub fn discard(&mut self, n: usize) -> io::Result<()> {
        let mut left = n.min(self.head_len());
        self.consume(left);
        while left > 0 {
            let pipe = self.front()?;
            let k = left.min(pipe.bytes);
            pipe.discard(k)?;
            left -= k;
            self.tidy();
        }
        Ok(())
    }

    /// Appends every chunk (and the end of input) of `self` to `dst`,
    /// keeping sizes and times: a removed toxic hands its buffer on.
    pub fn append_to(&mut self, dst: &mut Queue) -> io::Result<()> {
        let total = self.chunks.iter().map(|c| c.len).sum();
        self.transfer(dst, total)?;
        dst.chunks.extend(self.chunks.drain(..));
        dst.eof |= self.eof;
        Ok(())
    }

    /// Moves `len` head bytes into `dst`'s pipes, growing or chaining them.
    fn transfer(&mut self, dst: &mut Queue, len: usize) -> io::Result<()> {
        let mut left = len;
        while left > 0 {
            let src = self.front()?;
            let want = left.min(src.bytes);
            if want == 0 {
                return Err(io::Error::other("queue shorter than its chunks"));
            }
            let tail = dst.tail()?;
            match src.move_to(tail, want) {
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !tail.grow() {
                        dst.pipes.push_back(Pipe::new()?);
                    }
                }
                Err(e) => return Err(e),
            }
            self.tidy();
        }
        Ok(())
    }

    fn consume(&mut self, n: usize) {
        if let Some(head) = self.chunks.front_mut() {
            head.len -= n;
            if head.len == 0 {
                self.chunks.pop_front();
            }
        }
    }
}
