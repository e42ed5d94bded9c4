//! Bytes a proxy moved, per direction, for /metrics. As ToxiProxy, a
//! link adds its counts when it ends (so a long-lived connection shows
//! nothing until it closes), and "sent" only if its writes never failed.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Stream;

#[derive(Default)]
pub struct Counters {
    up_received: AtomicU64,
    up_sent: AtomicU64,
    down_received: AtomicU64,
    down_sent: AtomicU64,
}

impl Counters {
    pub fn received(&self, stream: Stream) -> &AtomicU64 {
        match stream {
            Stream::Upstream => &self.up_received,
            Stream::Downstream => &self.down_received,
        }
    }

    pub fn sent(&self, stream: Stream) -> &AtomicU64 {
        match stream {
            Stream::Upstream => &self.up_sent,
            Stream::Downstream => &self.down_sent,
        }
    }

    pub fn snapshot(&self) -> Vec<(Stream, u64, u64)> {
        [Stream::Upstream, Stream::Downstream]
            .into_iter()
            .map(|s| {
                (
                    s,
                    self.received(s).load(Ordering::Relaxed),
                    self.sent(s).load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}
