//! One direction of one connection (ToxiProxy's ToxicLink): read chunks
//! from the source socket, run them through the direction's toxics in
//! order, write them to the destination. One task drives the whole chain
//! as an event loop: it moves whatever can move, then sleeps until a
//! socket is ready, a toxic's timer is due or the chain changes.
//!
//! Bytes go socket -> pipe -> (pipe -> ...) -> socket with splice(2);
//! only sizes and timestamps live in user space.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::Interest;
use tokio::sync::watch;

use super::chain::{self, Chains, ToxicSpec};
use super::counters::Counters;
use super::queue::Queue;
use super::sock::Sock;
use super::stage::Stage;
use super::timer::Timer;
use super::toxics::Step;
use crate::model::Stream;

/// ToxiProxy reads through io.Copy's 32 KiB buffer: one chunk at most.
const CHUNK_MAX: usize = 32 * 1024;

pub struct Link {
    stream: Stream,
    src: Arc<Sock>,
    dst: Arc<Sock>,
    stages: Vec<Stage>,
    /// Ready for the destination (ToxiProxy's last, unbuffered channel).
    out: Queue,
    /// A read lands here when the first queue is not empty.
    intake: Queue,
    reader_done: bool,
    read_blocked: bool,
    write_blocked: bool,
    timer: Option<Timer>,
    chains: watch::Receiver<Arc<Chains>>,
    counters: Arc<Counters>,
    received: u64,
    sent: u64,
    write_failed: bool,
}

/// What the loop waits for after moving all it could.
struct Wants {
    read: bool,
    write: bool,
    deadline: Option<Instant>,
}

impl Link {
    /// A link with the chain as it is now, toxicities rolled.
    pub fn new(
        stream: Stream,
        src: Arc<Sock>,
        dst: Arc<Sock>,
        specs: &[ToxicSpec],
        chains: watch::Receiver<Arc<Chains>>,
        counters: Arc<Counters>,
    ) -> Link {
        let now = Instant::now();
        Link {
            stream,
            src,
            dst,
            stages: specs.iter().map(|s| Stage::new(s.clone(), now)).collect(),
            out: Queue::default(),
            intake: Queue::default(),
            reader_done: false,
            read_blocked: false,
            write_blocked: false,
            timer: None,
            chains,
            counters,
            received: 0,
            sent: 0,
            write_failed: false,
        }
    }

    /// A reset_peer won its roll at connection start: ToxiProxy then sets
    /// SO_LINGER 0 on both sockets (link.go). It does so whatever the roll
    /// said, so toxicity 0 still resets (Shopify/toxiproxy#603); we only
    /// do it when the toxic really runs on the connection.
    pub fn resets(&self) -> bool {
        self.stages.iter().any(Stage::resets)
    }

    pub async fn run(mut self) {
        if let Err(e) = self.drive().await {
            tracing::debug!(stream = ?self.stream, "link failed: {e}");
        }
        // Go's Close of the destination, whatever ended the link.
        self.dst.close();
        self.counters
            .received(self.stream)
            .fetch_add(self.received, Ordering::Relaxed);
        // ToxiProxy counts what was sent only when the write side ended
        // without an error.
        if !self.write_failed {
            self.counters
                .sent(self.stream)
                .fetch_add(self.sent, Ordering::Relaxed);
        }
    }

    async fn drive(&mut self) -> io::Result<()> {
        // changed() below marks the new chains seen: remember it ourselves.
        let mut chains_changed = false;
        loop {
            if std::mem::take(&mut chains_changed) || self.chains.has_changed().unwrap_or(false) {
                let chains = self.chains.borrow_and_update().clone();
                let specs = chains.get(self.stream);
                chain::reconcile(
                    &mut self.stages,
                    &mut self.out,
                    specs,
                    self.reader_done,
                    Instant::now(),
                )?;
            }
            let Some(wants) = self.pump()? else {
                return Ok(());
            };
            if wants.deadline.is_some() && self.timer.is_none() {
                self.timer = Some(Timer::new()?);
            }
            let (src, dst) = (self.src.clone(), self.dst.clone());
            let chains = &mut self.chains;
            let timer = &mut self.timer;
            tokio::select! {
                changed = chains.changed() => {
                    if changed.is_err() {
                        // The proxy is gone; it aborts us right after.
                        std::future::pending::<()>().await;
                    }
                    chains_changed = true;
                }
                ready = src.readable(), if wants.read => {
                    ready?;
                    self.read_blocked = false;
                }
                ready = dst.writable(), if wants.write => {
                    ready?;
                    self.write_blocked = false;
                }
                fired = async {
                    match (timer.as_mut(), wants.deadline) {
                        (Some(t), Some(at)) => t.sleep_until(at).await,
                        _ => std::future::pending().await,
                    }
                }, if wants.deadline.is_some() => fired?,
            }
        }
    }

    /// Moves everything that can move now. None when the link is over.
    fn pump(&mut self) -> io::Result<Option<Wants>> {
        loop {
            let now = Instant::now();
            let mut progress = false;
            let mut deadline: Option<Instant> = None;

            match self.write()? {
                Some(moved) => progress |= moved,
                None => return Ok(None),
            }
            for i in (0..self.stages.len()).rev() {
                let (moved, due) = self.run_stage(i, now)?;
                progress |= moved;
                if let Some(due) = due {
                    deadline = Some(deadline.map_or(due, |d| d.min(due)));
                }
            }
            progress |= self.read()?;

            if !progress {
                return Ok(Some(Wants {
                    read: self.read_blocked && self.wants_read(),
                    write: self.write_blocked && !self.out.is_empty(),
                    deadline,
                }));
            }
        }
    }

    /// Writes the head of `out`. Some(moved), or None once the end of
    /// stream (or a write error) reached the destination.
    fn write(&mut self) -> io::Result<Option<bool>> {
        if self.out.is_empty() {
            return Ok(if self.out.eof { None } else { Some(false) });
        }
        if self.write_blocked {
            return Ok(Some(false));
        }
        let fd = self.dst.fd();
        let out = &mut self.out;
        match self.dst.try_io(Interest::WRITABLE, || out.write_to(fd)) {
            Ok(n) => {
                self.sent += n as u64;
                Ok(Some(n > 0))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.write_blocked = true;
                Ok(Some(false))
            }
            Err(e) => {
                tracing::debug!(stream = ?self.stream, "write: {e}");
                self.write_failed = true;
                Ok(None)
            }
        }
    }

    fn wants_read(&self) -> bool {
        !self.reader_done
            && match self.stages.first() {
                Some(st) => st.has_room(),
                None => self.out.is_empty(),
            }
    }

    /// Reads one chunk into the first queue if it has room.
    fn read(&mut self) -> io::Result<bool> {
        if self.read_blocked || !self.wants_read() {
            return Ok(false);
        }
        let first = match self.stages.first_mut() {
            Some(st) => &mut st.queue,
            None => &mut self.out,
        };
        if self.src.is_closed() {
            // The other link closed our source: Go's read fails, io.Copy
            // ends and the input closes.
            first.eof = true;
            self.reader_done = true;
            return Ok(true);
        }
        let fd = self.src.fd();
        // A chunk is what one splice gives; it must land in an empty pipe
        // so that the pipe's free room cannot cut it short.
        let direct = first.is_empty();
        let target = if direct {
            &mut *first
        } else {
            &mut self.intake
        };
        match self
            .src
            .try_io(Interest::READABLE, || target.read_from(fd, CHUNK_MAX))
        {
            Ok(0) => {
                first.eof = true;
                self.reader_done = true;
            }
            Ok(n) => {
                self.received += n as u64;
                if !direct {
                    self.intake.append_to(first)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.read_blocked = true;
                return Ok(false);
            }
            Err(e) => {
                // A reset or a failed read ends the input, as in Go.
                tracing::debug!(stream = ?self.stream, "read: {e}");
                first.eof = true;
                self.reader_done = true;
            }
        }
        Ok(true)
    }

    /// Runs stage `i` until it waits. Returns (moved anything, due time).
    fn run_stage(&mut self, i: usize, now: Instant) -> io::Result<(bool, Option<Instant>)> {
        let mut moved = false;
        loop {
            let step = self.stages[i].step(now);
            let (stage, rest) = self.stages[i..].split_first_mut().expect("stage i exists");
            let (next, next_room) = match rest.first_mut() {
                Some(n) => {
                    let room = n.has_room();
                    (&mut n.queue, room)
                }
                None => {
                    let room = self.out.is_empty();
                    (&mut self.out, room)
                }
            };
            let head_len = stage.queue.head_len();
            if head_len == 0 && matches!(step, Step::Forward { .. } | Step::Drop { .. }) {
                // A toxic never asks this without a chunk; never spin on it.
                return Ok((moved, None));
            }
            match step {
                Step::Forward { n, ts } => {
                    if !next_room {
                        return Ok((moved, None));
                    }
                    stage.queue.forward(next, n.clamp(1, head_len), ts)?;
                }
                Step::Drop { n } => stage.queue.discard(n.clamp(1, head_len))?,
                Step::Close => {
                    stage.closed = true;
                    next.eof = true;
                    return Ok((true, None));
                }
                Step::Wait(at) => return Ok((moved, Some(at))),
                Step::Idle => return Ok((moved, None)),
            }
            stage.done(step, head_len, now);
            moved = true;
        }
    }
}
