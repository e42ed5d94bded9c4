//! Listen/upstream proxies as ToxiProxy users know them. Bytes move between
//! the accepted and the upstream socket with splice(2) through pipes and
//! never enter userland buffers; toxics act on the timing and size of
//! those splices.
//!
//! Follow a connection: `ListenProxy::start` binds (addr.rs, Go's rules and
//! errors) and accepts; each client gets an upstream dial, then two links
//! (link.rs), one a direction, each running its chain of stages
//! (stage.rs, toxics/) over queues of chunks whose bytes sit in pipes
//! (queue.rs, pipe.rs). `set_toxics` publishes new chains; every link
//! follows them (chain.rs).
//!
//! Kept from ToxiProxy on purpose, quirks included: a link that ends closes
//! its destination fully (no TCP half-close: a client's shutdown(WR) ends
//! the whole connection); removing a timeout toxic closes the connections
//! of its direction whether or not their roll ran it; a reset_peer added to
//! an open connection closes it with a FIN; bandwidth rate 0 stalls.
//!
//! Deliberate differences:
//! - reset_peer's SO_LINGER 0 is set only on connections where the toxic
//!   won its toxicity roll (ToxiProxy sets it whatever the roll, so
//!   toxicity 0 still turns every close into a reset: Shopify/toxiproxy#603).
//! - packet_loss passes the end of stream on (PR #739's toxic returns
//!   without closing, which leaves the connection hanging).
//! - Values that crash ToxiProxy (negative rate, slicer size 0, a variation
//!   not below the size) are refused by the API; if one reached a proxy
//!   anyway it would stall (rate) or be clamped (slicer), never panic.
//! - slicer with size_variation 0 cuts evenly (Go's rand.Intn(0) panics).
//!
//! A kernel fast path (sockmap + sk_skb redirect for links without
//! toxics) would skip even the splices; it needs an eBPF program and is
//! not done here.

mod addr;
mod chain;
mod counters;
mod link;
mod pipe;
mod queue;
mod sock;
mod stage;
mod sys;
mod timer;
mod toxics;

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::ApiError;
use crate::model::{Stream, Toxic};
use chain::Chains;
use counters::Counters;
use link::Link;
use sock::Sock;

pub struct ListenProxy {
    listen: String,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    name: String,
    upstream: String,
    chains: watch::Sender<Arc<Chains>>,
    /// Every connection's tasks; None once stopped.
    tasks: Mutex<Option<JoinSet<()>>>,
    counters: Arc<Counters>,
}

impl ListenProxy {
    /// Binds `listen` with ToxiProxy's address rules and starts accepting.
    /// Errors are Go's raw texts as a 500, as ToxiProxy returns them.
    pub async fn start(
        name: &str,
        listen: &str,
        upstream: &str,
        toxics: &[Toxic],
    ) -> Result<ListenProxy, ApiError> {
        static LIMITS: Once = Once::new();
        LIMITS.call_once(sys::raise_nofile_limit);

        let (listener, listen) = addr::listen(listen).await?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            upstream: upstream.to_string(),
            chains: watch::Sender::new(Arc::new(Chains::from_toxics(toxics))),
            tasks: Mutex::new(Some(JoinSet::new())),
            counters: Arc::default(),
        });
        let accept = tokio::spawn(accept(listener, shared.clone()));
        tracing::info!(proxy = name, %listen, upstream, "proxy started");
        Ok(ListenProxy {
            listen,
            shared,
            accept: Some(accept),
        })
    }

    /// The concrete address listened on, as ToxiProxy rewrites it.
    pub fn listen_addr(&self) -> String {
        self.listen.clone()
    }

    /// Replaces the toxic chains (upstream toxics first, then downstream,
    /// each in insertion order); open connections pick the change up.
    pub fn set_toxics(&self, toxics: &[Toxic]) {
        let chains = Chains::from_toxics(toxics);
        self.shared.chains.send_if_modified(|cur| {
            let changed = **cur != chains;
            if changed {
                *cur = Arc::new(chains);
            }
            changed
        });
    }

    /// Closes the listener and every connection; returns once they are.
    pub async fn stop(mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let tasks = self.shared.tasks.lock().expect("not poisoned").take();
        if let Some(mut tasks) = tasks {
            tasks.shutdown().await;
        }
        tracing::info!(proxy = self.shared.name, "proxy stopped");
    }

    /// (stream, bytes received, bytes sent) of the connections that ended,
    /// as ToxiProxy's proxy metrics count them.
    pub fn byte_counters(&self) -> Vec<(Stream, u64, u64)> {
        self.shared.counters.snapshot()
    }
}

impl Drop for ListenProxy {
    fn drop(&mut self) {
        if let Some(accept) = &self.accept {
            accept.abort();
        }
        // Dropping the set aborts every connection.
        drop(self.shared.tasks.lock().map(|mut t| t.take()));
    }
}

impl Shared {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().expect("not poisoned");
        if let Some(set) = tasks.as_mut() {
            while set.try_join_next().is_some() {}
            set.spawn(task);
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => shared.spawn(connect(client, shared.clone())),
            Err(e) => {
                // Out of fds and the like: ease off instead of spinning.
                tracing::warn!(proxy = shared.name, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// ToxiProxy's order: the client is accepted first, then the upstream is
/// dialled (resolved afresh each time); if that fails the client is
/// closed (it sees EOF).
async fn connect(client: TcpStream, shared: Arc<Shared>) {
    let server = match TcpStream::connect(shared.upstream.as_str()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(proxy = shared.name, upstream = shared.upstream, "dial: {e}");
            return;
        }
    };
    let (client, server) = match (Sock::new(client), Sock::new(server)) {
        (Ok(c), Ok(s)) => (Arc::new(c), Arc::new(s)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(proxy = shared.name, "socket setup: {e}");
            return;
        }
    };
    let mut chains = shared.chains.subscribe();
    let now = chains.borrow_and_update().clone();
    let up = Link::new(
        Stream::Upstream,
        client.clone(),
        server.clone(),
        now.get(Stream::Upstream),
        chains.clone(),
        shared.counters.clone(),
    );
    let down = Link::new(
        Stream::Downstream,
        server.clone(),
        client.clone(),
        now.get(Stream::Downstream),
        chains,
        shared.counters.clone(),
    );
    if up.resets() || down.resets() {
        client.reset_on_close();
        server.reset_on_close();
    }
    shared.spawn(up.run());
    shared.spawn(down.run());
}
