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

#[derive(Default)]
pub struct Queue {
    pipe: Option<Pipe>,
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

    fn pipe(&mut self) -> io::Result<&mut Pipe> {
        if self.pipe.is_none() {
            self.pipe = Some(Pipe::new()?);
        }
        Ok(self.pipe.as_mut().expect("just created"))
    }

    /// Reads one chunk from `socket` straight into this queue's pipe, which
    /// must be empty so that the chunk's size is all the kernel gave
    /// (up to `max`). Ok(0) is end of file.
    pub fn read_from(&mut self, socket: RawFd, max: usize) -> io::Result<usize> {
        debug_assert!(self.chunks.is_empty());
        let n = self.pipe()?.fill_from(socket, max)?;
        if n > 0 {
            self.chunks.push_back(Chunk {
                len: n,
                ts: Instant::now(),
            });
        }
        Ok(n)
    }

    /// Splices up to `max` bytes of the head chunk to `socket`.
    pub fn write_to(&mut self, socket: RawFd) -> io::Result<usize> {
        let len = self.head_len();
        let n = match &mut self.pipe {
            Some(p) if len > 0 => p.drain_to(socket, len)?,
            _ => 0,
        };
        self.consume(n);
        Ok(n)
    }

    /// Moves the first `n` bytes of the head chunk to the tail of `dst` as
    /// a chunk of its own, stamped `ts`.
    pub fn forward(&mut self, dst: &mut Queue, n: usize, ts: Instant) -> io::Result<()> {
        let n = n.min(self.head_len());
        if n == 0 {
            return Ok(());
        }
        let src = self.pipe.as_mut().expect("a queued chunk has a pipe");
        src.move_to(dst.pipe()?, n)?;
        dst.chunks.push_back(Chunk { len: n, ts });
        self.consume(n);
        Ok(())
    }

    /// Drops the first `n` bytes of the head chunk.
    pub fn discard(&mut self, n: usize) -> io::Result<()> {
        let n = n.min(self.head_len());
        if n == 0 {
            return Ok(());
        }
        self.pipe
            .as_mut()
            .expect("a queued chunk has a pipe")
            .discard(n)?;
        self.consume(n);
        Ok(())
    }

    /// Appends every chunk (and the end of input) of `self` to `dst`,
    /// keeping sizes and times: a removed toxic hands its buffer on.
    pub fn append_to(&mut self, dst: &mut Queue) -> io::Result<()> {
        let total: usize = self.chunks.iter().map(|c| c.len).sum();
        if total > 0 {
            let src = self.pipe.as_mut().expect("a queued chunk has a pipe");
            src.move_to(dst.pipe()?, total)?;
        }
        dst.chunks.extend(self.chunks.drain(..));
        dst.eof |= self.eof;
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
