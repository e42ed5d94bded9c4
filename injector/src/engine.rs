//! The single owner of desired state: proxies, their toxics, and the runtime
//! that makes each proxy real (a `ListenProxy` for listen/upstream proxies,
//! a `KernelProxy` for kernel-native ones).
//!
//! Every change runs validate -> apply to the runtime -> commit, under one
//! lock. If the runtime refuses (a bind fails, a kernel feature is missing)
//! the state is left as it was and the error goes back to the client, so no
//! fault is ever half applied. The ToxiProxy semantics kept here (defaults,
//! validation order, update and populate rules) are those of
//! ../shared/toxiproxy-api.md; the wire forms live in api/.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv6Addr},
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use serde_json::{Map, Value};
use tokio::sync::{Mutex, broadcast};

use crate::{
    ApiError,
    faults::Attributes,
    kernel::{DataPlane, KernelProxy, native::ToxicRules, partition::Partitions},
    model::{Stream, Target, Toxic},
    proxy::ListenProxy,
};

/// A proxy as a client asks for it (POST /proxies, /populate, --config).
#[derive(Clone, Debug, PartialEq)]
pub struct ProxySpec {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub target: Option<Target>,
}

/// POST|PATCH /proxies/{p}: absent fields keep the current value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyPatch {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
    pub target: Option<Target>,
}

/// POST /proxies/{p}/toxics after the wrapper fields were decoded; the
/// attributes wait for the type to be known (ToxiProxy's second pass).
#[derive(Clone, Debug, PartialEq)]
pub struct ToxicSpec {
    /// "" = `<type>_<stream>`.
    pub name: String,
    pub kind: String,
    /// As sent ("downstream" when omitted); parsed case-insensitively.
    pub stream: String,
    pub toxicity: f32,
    pub attributes: Option<Map<String, Value>>,
    pub ttl_ms: Option<u64>,
}

impl ToxicSpec {
    /// ToxiProxy's defaults: downstream, toxicity 1, no attributes.
    pub fn new(kind: &str) -> Self {
        ToxicSpec {
            name: String::new(),
            kind: kind.into(),
            stream: "downstream".into(),
            toxicity: 1.0,
            attributes: None,
            ttl_ms: None,
        }
    }
}

/// A proxy as listed: the wire form is built from this in api/.
#[derive(Clone, Debug, PartialEq)]
pub struct ProxyView {
    pub name: String,
    /// Concrete once started; "" for kernel-native proxies.
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub target: Option<Target>,
    /// Upstream chain first, then downstream, each in insertion order.
    pub toxics: Vec<Toxic>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Added,
    Updated,
    Removed,
    Expired,
    /// A toxic acted in the last interval (see activity.rs).
    Fired,
}

/// One change of the faults in force. `toxic` is None when the event is
/// about the proxy itself (created, enabled/disabled or moved, deleted).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Event {
    pub kind: EventKind,
    pub proxy: String,
    pub toxic: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Fired events: what the toxic's kernel rules did per second over the
    /// last interval (packets and bytes acted on, packets matched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_per_s: Option<f64>,
}

/// Bytes one proxy moved in one direction while it listened on `listener`
/// with `upstream` (ToxiProxy's proxy metrics labels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ByteCount {
    pub proxy: String,
    pub listener: String,
    pub upstream: String,
    pub direction: Stream,
    pub received: u64,
    pub sent: u64,
}

type CounterKey = (String, String, String, &'static str);

fn direction_label(s: Stream) -> &'static str {
    match s {
        Stream::Upstream => "upstream",
        Stream::Downstream => "downstream",
    }
}

/// Startup options that shape the engine.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Caps every toxic's lifetime, and gives one to toxics without a ttl.
    pub max_fault_duration: Option<Duration>,
}

enum Runtime {
    /// A listen proxy that is disabled (or never started).
    Stopped,
    Listen(ListenProxy),
    Kernel(Box<KernelProxy>),
}

impl Runtime {
    async fn set_toxics(&mut self, toxics: &[Toxic]) -> Result<(), ApiError> {
        match self {
            Runtime::Stopped => Ok(()),
            Runtime::Listen(p) => {
                p.set_toxics(toxics);
                Ok(())
            }
            Runtime::Kernel(k) => k.set_toxics(toxics).await,
        }
    }

    async fn stop(self) {
        match self {
            Runtime::Stopped => {}
            Runtime::Listen(p) => p.stop().await,
            Runtime::Kernel(k) => (*k).stop().await,
        }
    }
}

struct Slot {
    /// Tells a toxic from a later one of the same name (expiry timers).
    id: u64,
    toxic: Toxic,
}

struct Entry {
    listen: String,
    upstream: String,
    enabled: bool,
    target: Option<Target>,
    toxics: Vec<Slot>,
    runtime: Runtime,
}

impl Entry {
    fn listing(&self) -> Vec<Toxic> {
        let chain = |s: Stream| {
            self.toxics
                .iter()
                .filter(move |t| t.toxic.stream == s)
                .map(|t| t.toxic.clone())
        };
        chain(Stream::Upstream)
            .chain(chain(Stream::Downstream))
            .collect()
    }

    fn view(&self, name: &str) -> ProxyView {
        ProxyView {
            name: name.into(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled,
            target: self.target.clone(),
            toxics: self.listing(),
        }
    }

    fn find(&self, toxic: &str) -> Option<usize> {
        self.toxics.iter().position(|t| t.toxic.name == toxic)
    }
}

/// The listing order of a candidate toxic list (what runtimes receive).
fn ordered(toxics: impl IntoIterator<Item = Toxic>) -> Vec<Toxic> {
    let (mut up, down): (Vec<_>, Vec<_>) = toxics
        .into_iter()
        .partition(|t| t.stream == Stream::Upstream);
    up.extend(down);
    up
}

pub struct Engine {
    proxies: Mutex<BTreeMap<String, Entry>>,
    /// Bytes of listen runtimes that were stopped (counters only grow, as
    /// ToxiProxy's Prometheus counters do).
    retired: std::sync::Mutex<BTreeMap<CounterKey, (u64, u64)>>,
    dataplane: Result<Arc<DataPlane>, ApiError>,
    /// Partitions in force (kernel/partition.rs).
    pub partitions: Partitions,
    events: broadcast::Sender<Event>,
    options: EngineOptions,
    next_id: AtomicU64,
    started: Instant,
    this: Weak<Engine>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    /// `dataplane` is the result of `DataPlane::load()`: when it failed,
    /// listen proxies still work and kernel-native ones get its error.
    pub fn new(dataplane: Result<Arc<DataPlane>, ApiError>, options: EngineOptions) -> Arc<Engine> {
        let (events, _) = broadcast::channel(1024);
        let engine = Arc::new_cyclic(|this| Engine {
            proxies: Mutex::new(BTreeMap::new()),
            retired: std::sync::Mutex::new(BTreeMap::new()),
            dataplane,
            partitions: Partitions::default(),
            events,
            options,
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            this: this.clone(),
        });
        crate::activity::spawn(&engine);
        engine
    }

    /// Fault events as they happen (a slow reader misses the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, kind: EventKind, proxy: &str, toxic: Option<&str>) {
        // No subscriber is not an error.
        let _ = self.events.send(Event {
            kind,
            proxy: proxy.into(),
            toxic: toxic.map(str::to_string),
            at_ms: now_ms(),
            packets_per_s: None,
            bytes_per_s: None,
            matched_per_s: None,
        });
    }

    /// Sends an event built elsewhere (fired activity).
    pub(crate) fn send(&self, ev: Event) {
        let _ = self.events.send(ev);
    }

    /// Subscribers of /events right now.
    pub(crate) fn listeners(&self) -> usize {
        self.events.receiver_count()
    }

    /// Time since the engine was made (the daemon's uptime).
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The kernel data plane, when it loaded.
    pub fn data_plane(&self) -> Option<&Arc<DataPlane>> {
        self.dataplane.as_ref().ok()
    }

    /// (proxy, its toxic's rules) for every toxic of kernel-native proxies.
    pub async fn kernel_toxics(&self) -> Vec<(String, ToxicRules)> {
        let proxies = self.proxies.lock().await;
        let mut out = Vec::new();
        for (name, e) in proxies.iter() {
            if let Runtime::Kernel(k) = &e.runtime {
                for t in k.toxic_rules() {
                    out.push((name.clone(), t));
                }
            }
        }
        out
    }

    fn dataplane(&self) -> Result<&Arc<DataPlane>, ApiError> {
        self.dataplane.as_ref().map_err(Clone::clone)
    }

    pub async fn list(&self) -> Vec<ProxyView> {
        let proxies = self.proxies.lock().await;
        proxies.iter().map(|(n, e)| e.view(n)).collect()
    }

    pub async fn get(&self, name: &str) -> Result<ProxyView, ApiError> {
        let proxies = self.proxies.lock().await;
        proxies
            .get(name)
            .map(|e| e.view(name))
            .ok_or_else(ApiError::proxy_not_found)
    }

    /// Stops a runtime, keeping the bytes it moved for /metrics. Links
    /// still open at this moment are counted as far as they got.
    async fn retire(&self, proxy: &str, e: (&str, &str), runtime: Runtime) {
        if let Runtime::Listen(p) = &runtime {
            let mut retired = self.retired.lock().expect("not poisoned");
            for (stream, received, sent) in p.byte_counters() {
                let key = (
                    proxy.to_string(),
                    e.0.to_string(),
                    e.1.to_string(),
                    direction_label(stream),
                );
                let slot = retired.entry(key).or_default();
                slot.0 += received;
                slot.1 += sent;
            }
        }
        runtime.stop().await;
    }

    /// ToxiProxy's byte counters: every (proxy, listener, upstream,
    /// direction) that moved bytes, live and stopped runtimes together.
    pub async fn byte_counters(&self) -> Vec<ByteCount> {
        let mut all = self.retired.lock().expect("not poisoned").clone();
        let proxies = self.proxies.lock().await;
        for (name, e) in proxies.iter() {
            if let Runtime::Listen(p) = &e.runtime {
                for (stream, received, sent) in p.byte_counters() {
                    let key = (
                        name.clone(),
                        e.listen.clone(),
                        e.upstream.clone(),
                        direction_label(stream),
                    );
                    let slot = all.entry(key).or_default();
                    slot.0 += received;
                    slot.1 += sent;
                }
            }
        }
        all.into_iter()
            .filter(|(_, (r, s))| *r > 0 || *s > 0)
            .map(
                |((proxy, listener, upstream, dir), (received, sent))| ByteCount {
                    proxy,
                    listener,
                    upstream,
                    direction: if dir == "upstream" {
                        Stream::Upstream
                    } else {
                        Stream::Downstream
                    },
                    received,
                    sent,
                },
            )
            .collect()
    }

    /// Counts for /metrics: (proxies, toxics).
    pub async fn counts(&self) -> (usize, usize) {
        let proxies = self.proxies.lock().await;
        (
            proxies.len(),
            proxies.values().map(|e| e.toxics.len()).sum(),
        )
    }

    /// POST /proxies. Checks in ToxiProxy's order: name, upstream, 409,
    /// then the bind (or the kernel set-up).
    pub async fn create(&self, spec: ProxySpec) -> Result<ProxyView, ApiError> {
        check_spec(&spec, "")?;
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(&spec.name) {
            return Err(ApiError::proxy_exists());
        }
        let entry = self.start_entry(&spec).await?;
        let view = entry.view(&spec.name);
        proxies.insert(spec.name.clone(), entry);
        self.emit(EventKind::Added, &spec.name, None);
        Ok(view)
    }

    /// A fresh entry with its runtime running as the spec asks.
    async fn start_entry(&self, spec: &ProxySpec) -> Result<Entry, ApiError> {
        let mut entry = Entry {
            listen: spec.listen.clone(),
            upstream: spec.upstream.clone(),
            enabled: spec.enabled,
            target: spec.target.clone(),
            toxics: Vec::new(),
            runtime: Runtime::Stopped,
        };
        if let Some(target) = &spec.target {
            entry.listen = String::new();
            let k = self
                .start_kernel(&spec.name, &spec.upstream, target, &[], spec.enabled)
                .await?;
            entry.runtime = Runtime::Kernel(Box::new(k));
        } else if spec.enabled {
            let p = ListenProxy::start(&spec.name, &spec.listen, &spec.upstream, &[]).await?;
            entry.listen = p.listen_addr();
            entry.runtime = Runtime::Listen(p);
        }
        Ok(entry)
    }

    /// A kernel proxy holding `toxics`, enabled or not; nothing is left
    /// installed if any step fails.
    async fn start_kernel(
        &self,
        name: &str,
        upstream: &str,
        target: &Target,
        toxics: &[Toxic],
        enabled: bool,
    ) -> Result<KernelProxy, ApiError> {
        let dp = self.dataplane()?;
        let mut k = KernelProxy::start(dp, name, upstream, target).await?;
        let mut result = Ok(());
        if !toxics.is_empty() {
            result = k.set_toxics(toxics).await;
        }
        if result.is_ok() && !enabled {
            result = k.set_enabled(false).await;
        }
        match result {
            Ok(()) => Ok(k),
            Err(e) => {
                k.stop().await;
                Err(e)
            }
        }
    }

    /// POST|PATCH /proxies/{p}: ToxiProxy's update rules (§3.2) for listen
    /// proxies; kernel-native proxies move to a new upstream or target
    /// atomically (the new rules are installed before the old go).
    pub async fn update(&self, name: &str, patch: ProxyPatch) -> Result<ProxyView, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies
            .get_mut(name)
            .ok_or_else(ApiError::proxy_not_found)?;
        if entry.target.is_some() {
            self.update_kernel(name, entry, patch).await?;
        } else {
            if patch.target.is_some() {
                return Err(ApiError::bad_request(
                    "a listen proxy cannot become kernel-native; delete it and create it again with a target",
                ));
            }
            self.update_listen(name, entry, patch).await?;
        }
        self.emit(EventKind::Updated, name, None);
        Ok(entry.view(name))
    }

    async fn update_listen(
        &self,
        name: &str,
        entry: &mut Entry,
        patch: ProxyPatch,
    ) -> Result<(), ApiError> {
        let listen = patch.listen.unwrap_or_else(|| entry.listen.clone());
        let upstream = patch.upstream.unwrap_or_else(|| entry.upstream.clone());
        let enabled = patch.enabled.unwrap_or(entry.enabled);
        let resolved = resolve_tcp_addr(&listen)
            .await
            .map_err(ApiError::internal)?;
        if entry.listen != resolved || entry.upstream != upstream {
            // ToxiProxy stops the proxy (dropping its connections) and
            // stores the raw address; the start below binds it again.
            let old = std::mem::replace(&mut entry.runtime, Runtime::Stopped);
            self.retire(name, (&entry.listen, &entry.upstream), old)
                .await;
            entry.enabled = false;
            entry.listen = listen;
            entry.upstream = upstream;
        }
        if enabled != entry.enabled {
            if enabled {
                // On failure ToxiProxy leaves the proxy disabled with the new
                // address stored: so do we.
                self.start_listen(name, entry).await?;
            } else {
                let old = std::mem::replace(&mut entry.runtime, Runtime::Stopped);
                self.retire(name, (&entry.listen, &entry.upstream), old)
                    .await;
                entry.enabled = false;
            }
        }
        Ok(())
    }

    /// Binds a stopped listen proxy on its stored address, with its toxics.
    async fn start_listen(&self, name: &str, entry: &mut Entry) -> Result<(), ApiError> {
        let p = ListenProxy::start(name, &entry.listen, &entry.upstream, &entry.listing()).await?;
        entry.listen = p.listen_addr();
        entry.runtime = Runtime::Listen(p);
        entry.enabled = true;
        Ok(())
    }

    async fn update_kernel(
        &self,
        name: &str,
        entry: &mut Entry,
        patch: ProxyPatch,
    ) -> Result<(), ApiError> {
        let upstream = patch.upstream.unwrap_or_else(|| entry.upstream.clone());
        let target = patch
            .target
            .or_else(|| entry.target.clone())
            .expect("kernel proxy");
        let enabled = patch.enabled.unwrap_or(entry.enabled);
        if upstream != entry.upstream || Some(&target) != entry.target.as_ref() {
            let fresh = self
                .start_kernel(name, &upstream, &target, &entry.listing(), enabled)
                .await?;
            std::mem::replace(&mut entry.runtime, Runtime::Kernel(Box::new(fresh)))
                .stop()
                .await;
            entry.upstream = upstream;
            entry.target = Some(target);
            entry.enabled = enabled;
        } else if enabled != entry.enabled {
            if let Runtime::Kernel(k) = &mut entry.runtime {
                k.set_enabled(enabled).await?;
            }
            entry.enabled = enabled;
        }
        Ok(())
    }

    /// DELETE /proxies/{p}: closes everything the proxy holds.
    pub async fn delete(&self, name: &str) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies.remove(name).ok_or_else(ApiError::proxy_not_found)?;
        self.retire(name, (&entry.listen, &entry.upstream), entry.runtime)
            .await;
        self.emit(EventKind::Removed, name, None);
        Ok(())
    }

    /// POST /populate (and --config): all specs are checked for name and
    /// upstream first; then each is added, kept (same addresses: its toxics
    /// and enabled state stay) or replaced, in order, stopping at the first
    /// failure. Returns what was done and the error that stopped it.
    pub async fn populate(&self, specs: Vec<ProxySpec>) -> (Vec<ProxyView>, Option<ApiError>) {
        for (i, spec) in specs.iter().enumerate() {
            if let Err(e) = check_spec(spec, &format!(" at proxy {}", i + 1)) {
                return (Vec::new(), Some(e));
            }
        }
        let mut proxies = self.proxies.lock().await;
        let mut done = Vec::new();
        for spec in specs {
            if let Some(existing) = proxies.get_mut(&spec.name) {
                match differs(existing, &spec).await {
                    Err(e) => return (done, Some(e)),
                    Ok(false) => {
                        done.push(existing.view(&spec.name));
                        continue;
                    }
                    Ok(true) if existing.target.is_some() => {
                        // Kernel rules can overlap: the new proxy is set up
                        // first, and a failure leaves the old one untouched.
                        let fresh = match self.start_entry(&spec).await {
                            Ok(fresh) => fresh,
                            Err(e) => return (done, Some(e)),
                        };
                        let old = std::mem::replace(existing, fresh);
                        old.runtime.stop().await;
                        self.emit_replaced(&spec.name, &old.toxics);
                        done.push(existing.view(&spec.name));
                        continue;
                    }
                    Ok(true) => {
                        // The new listener may need the old one's port:
                        // ToxiProxy stops the old proxy first, and if the new
                        // one cannot start, the old stays, disabled.
                        let old = std::mem::replace(&mut existing.runtime, Runtime::Stopped);
                        self.retire(&spec.name, (&existing.listen, &existing.upstream), old)
                            .await;
                        existing.enabled = false;
                    }
                }
            }
            match self.start_entry(&spec).await {
                Ok(entry) => {
                    done.push(entry.view(&spec.name));
                    if let Some(old) = proxies.insert(spec.name.clone(), entry) {
                        self.emit_replaced(&spec.name, &old.toxics);
                    } else {
                        self.emit(EventKind::Added, &spec.name, None);
                    }
                }
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    fn emit_replaced(&self, proxy: &str, old_toxics: &[Slot]) {
        for slot in old_toxics {
            self.emit(EventKind::Removed, proxy, Some(&slot.toxic.name));
        }
        self.emit(EventKind::Updated, proxy, None);
    }

    /// POST /reset: every proxy enabled again and stripped of its toxics.
    /// A start failure stops the walk (ToxiProxy's raw 500).
    pub async fn reset(&self) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        for (name, entry) in proxies.iter_mut() {
            if !entry.enabled {
                match &mut entry.runtime {
                    Runtime::Kernel(k) => k.set_enabled(true).await?,
                    _ => {
                        let p =
                            ListenProxy::start(name, &entry.listen, &entry.upstream, &[]).await?;
                        entry.listen = p.listen_addr();
                        entry.runtime = Runtime::Listen(p);
                    }
                }
                entry.enabled = true;
                self.emit(EventKind::Updated, name, None);
            }
            if !entry.toxics.is_empty() {
                entry.runtime.set_toxics(&[]).await?;
                for slot in std::mem::take(&mut entry.toxics) {
                    self.emit(EventKind::Removed, name, Some(&slot.toxic.name));
                }
            }
        }
        // Partitions are faults too: a reset heals them.
        if let Ok(dp) = &self.dataplane {
            self.partitions.heal_all(dp).await;
        }
        Ok(())
    }

    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ApiError> {
        let proxies = self.proxies.lock().await;
        let entry = proxies.get(proxy).ok_or_else(ApiError::proxy_not_found)?;
        Ok(entry.listing())
    }

    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<Toxic, ApiError> {
        let proxies = self.proxies.lock().await;
        let entry = proxies.get(proxy).ok_or_else(ApiError::proxy_not_found)?;
        let i = entry.find(name).ok_or_else(ApiError::toxic_not_found)?;
        Ok(entry.toxics[i].toxic.clone())
    }

    /// POST /proxies/{p}/toxics, in ToxiProxy's validation order: stream,
    /// default name, type, 409 across both streams, attributes; then ours:
    /// values that would crash ToxiProxy, and the proxy kind.
    pub async fn add_toxic(&self, proxy: &str, spec: ToxicSpec) -> Result<Toxic, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies
            .get_mut(proxy)
            .ok_or_else(ApiError::proxy_not_found)?;
        let stream = Stream::parse(&spec.stream).ok_or_else(ApiError::invalid_stream)?;
        let name = if spec.name.is_empty() {
            format!("{}_{}", spec.kind, spec.stream)
        } else {
            spec.name
        };
        let mut attributes =
            Attributes::new(&spec.kind).ok_or_else(ApiError::invalid_toxic_type)?;
        if entry.target.is_none() && !attributes.works_in_proxy() {
            return Err(ApiError::bad_request(format!(
                "toxic type {} needs a kernel-native proxy (create it with a target)",
                spec.kind
            )));
        }
        if entry.find(&name).is_some() {
            return Err(ApiError::toxic_exists());
        }
        if let Some(map) = &spec.attributes {
            attributes.merge(map).map_err(ApiError::bad_body)?;
        }
        check_attributes(&attributes, entry.target.is_some())?;
        let ttl_ms = self.effective_ttl(spec.ttl_ms);
        let toxic = Toxic {
            name,
            stream,
            stream_raw: spec.stream,
            toxicity: spec.toxicity,
            attributes,
            ttl_ms,
            expires_at: ttl_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
        };
        let candidate = ordered(
            entry
                .toxics
                .iter()
                .map(|s| s.toxic.clone())
                .chain([toxic.clone()]),
        );
        entry.runtime.set_toxics(&candidate).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        entry.toxics.push(Slot {
            id,
            toxic: toxic.clone(),
        });
        if let Some(at) = toxic.expires_at {
            self.schedule_expiry(proxy, &toxic.name, id, at);
        }
        self.emit(EventKind::Added, proxy, Some(&toxic.name));
        Ok(toxic)
    }

    /// `ttl_ms` 0 or absent = no expiry, unless --max-fault-duration caps it.
    pub fn effective_ttl(&self, ttl_ms: Option<u64>) -> Option<u64> {
        let asked = ttl_ms.filter(|ms| *ms > 0);
        match self.options.max_fault_duration {
            None => asked,
            Some(max) => {
                let max = max.as_millis().min(u64::MAX as u128) as u64;
                Some(asked.map_or(max, |ms| ms.min(max)))
            }
        }
    }

    /// POST|PATCH /proxies/{p}/toxics/{t}. `decode` applies the request to a
    /// copy of the toxic's (attributes, toxicity); it runs only once both
    /// the proxy and the toxic are found (ToxiProxy's 404 order). Nothing
    /// changes unless it succeeds and the runtime takes the result.
    pub async fn update_toxic(
        &self,
        proxy: &str,
        name: &str,
        decode: impl FnOnce(&Toxic) -> Result<(Attributes, f32), ApiError>,
    ) -> Result<Toxic, ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies
            .get_mut(proxy)
            .ok_or_else(ApiError::proxy_not_found)?;
        let i = entry.find(name).ok_or_else(ApiError::toxic_not_found)?;
        let (attributes, toxicity) = decode(&entry.toxics[i].toxic)?;
        check_attributes(&attributes, entry.target.is_some())?;
        let mut updated = entry.toxics[i].toxic.clone();
        updated.attributes = attributes;
        updated.toxicity = toxicity;
        let candidate = ordered(entry.toxics.iter().enumerate().map(|(j, s)| {
            if j == i {
                updated.clone()
            } else {
                s.toxic.clone()
            }
        }));
        entry.runtime.set_toxics(&candidate).await?;
        entry.toxics[i].toxic = updated.clone();
        self.emit(EventKind::Updated, proxy, Some(name));
        Ok(updated)
    }

    /// DELETE /proxies/{p}/toxics/{t}.
    pub async fn remove_toxic(&self, proxy: &str, name: &str) -> Result<(), ApiError> {
        self.remove_toxic_if(proxy, name, None, EventKind::Removed)
            .await
    }

    async fn remove_toxic_if(
        &self,
        proxy: &str,
        name: &str,
        id: Option<u64>,
        kind: EventKind,
    ) -> Result<(), ApiError> {
        let mut proxies = self.proxies.lock().await;
        let entry = proxies
            .get_mut(proxy)
            .ok_or_else(ApiError::proxy_not_found)?;
        let i = entry.find(name).ok_or_else(ApiError::toxic_not_found)?;
        if id.is_some_and(|id| entry.toxics[i].id != id) {
            // The toxic that expired was deleted and a new one took its name.
            return Ok(());
        }
        let candidate = ordered(
            entry
                .toxics
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, s)| s.toxic.clone()),
        );
        entry.runtime.set_toxics(&candidate).await?;
        entry.toxics.remove(i);
        self.emit(kind, proxy, Some(name));
        Ok(())
    }

    fn schedule_expiry(&self, proxy: &str, name: &str, id: u64, at: Instant) {
        let engine = self.this.clone();
        let (proxy, name) = (proxy.to_string(), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            match engine
                .remove_toxic_if(&proxy, &name, Some(id), EventKind::Expired)
                .await
            {
                Ok(()) => tracing::info!(proxy, toxic = name, "toxic expired"),
                // Already deleted, or its proxy is gone: nothing to do.
                Err(e) if e.status == 404 => {}
                Err(e) => tracing::warn!(proxy, toxic = name, error = %e, "toxic expiry failed"),
            }
        });
    }

    /// The kernel data plane, or why there is none.
    pub fn kernel(&self) -> Result<&Arc<DataPlane>, ApiError> {
        self.dataplane()
    }

    /// Runs `change` on the zones unless a toxic in force uses zone `name`:
    /// its rules hold the zone's addresses as they were, so a changed or
    /// deleted zone would silently differ from what the kernel does (409).
    pub async fn change_zone<T>(
        &self,
        name: &str,
        change: impl FnOnce(&DataPlane) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let dp = self.dataplane()?;
        let proxies = self.proxies.lock().await;
        let users: Vec<String> = proxies
            .iter()
            .flat_map(|(p, e)| {
                e.toxics
                    .iter()
                    .filter(|s| s.toxic.attributes.zones().iter().any(|z| z == name))
                    .map(move |s| format!("{p}/{}", s.toxic.name))
            })
            .collect();
        if !users.is_empty() {
            return Err(ApiError::new(
                409,
                format!(
                    "zone {name:?} is used by toxic {}; remove it first",
                    users.join(", ")
                ),
            ));
        }
        change(dp)
    }

    /// Tells the data plane which port the API serves, so its rules never
    /// touch the API's own traffic.
    pub async fn guard_api_port(&self, port: u16) {
        if let Ok(dp) = &self.dataplane
            && let Err(e) = dp.set_guard_port(port).await
        {
            tracing::warn!(error = %e, "cannot protect the API port from faults");
        }
    }

    /// Stops every runtime, then the data plane's shared objects (qdiscs,
    /// IFBs, program links), for a clean exit: nothing stays installed.
    pub async fn shutdown(&self) {
        let mut proxies = self.proxies.lock().await;
        for (_, entry) in std::mem::take(&mut *proxies) {
            entry.runtime.stop().await;
        }
        // qdiscs and IFBs outlive the process unless removed here.
        if let Ok(dp) = &self.dataplane {
            self.partitions.heal_all(dp).await;
            dp.shutdown().await;
        }
    }
}

/// Name and upstream are required (ToxiProxy's ErrMissingField).
fn check_spec(spec: &ProxySpec, suffix: &str) -> Result<(), ApiError> {
    if spec.name.is_empty() {
        return Err(ApiError::missing_field(&format!("name{suffix}")));
    }
    if spec.upstream.is_empty() {
        return Err(ApiError::missing_field(&format!("upstream{suffix}")));
    }
    Ok(())
}

/// Our deliberate 400s, worded like ToxiProxy's own validation errors, and
/// what a kernel-native proxy cannot do with these values.
fn check_attributes(attributes: &Attributes, kernel: bool) -> Result<(), ApiError> {
    attributes.validate().map_err(ApiError::bad_body)?;
    if kernel {
        attributes.kernel().map_err(ApiError::bad_request)?;
    }
    Ok(())
}

/// ToxiProxy's `Differs` for populate: another address or upstream (for a
/// kernel-native proxy: another upstream or target) means a new proxy.
async fn differs(existing: &Entry, spec: &ProxySpec) -> Result<bool, ApiError> {
    if existing.target.is_some() || spec.target.is_some() {
        return Ok(existing.target != spec.target || existing.upstream != spec.upstream);
    }
    let resolved = resolve_tcp_addr(&spec.listen)
        .await
        .map_err(ApiError::internal)?;
    Ok(existing.listen != resolved || existing.upstream != spec.upstream)
}

/// Go's `net.ResolveTCPAddr("tcp", addr).String()`, error texts included:
/// what ToxiProxy compares a stored listen address with.
pub async fn resolve_tcp_addr(addr: &str) -> Result<String, String> {
    let (host, port) = split_host_port(addr).map_err(|e| go_addr_error(addr, e))?;
    let port = parse_port(port)?;
    let ip: Option<IpAddr> = if host.is_empty() {
        None
    } else if let Ok(ip) = host.split('%').next().unwrap_or(host).parse::<IpAddr>() {
        Some(ip)
    } else {
        let found: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|_| format!("lookup {host}: no such host"))?
            .map(|a| a.ip())
            .collect();
        // Go prefers the first IPv4 address for "tcp".
        let pick = found
            .iter()
            .find(|ip| ip.is_ipv4())
            .or(found.first())
            .copied();
        Some(pick.ok_or_else(|| format!("lookup {host}: no such host"))?)
    };
    Ok(match ip {
        None => format!(":{port}"),
        Some(IpAddr::V4(v4)) => format!("{v4}:{port}"),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{port}"),
            None => format!("[{}]:{port}", canonical_v6(v6)),
        },
    })
}

fn canonical_v6(v6: Ipv6Addr) -> String {
    v6.to_string()
}

fn go_addr_error(addr: &str, err: &str) -> String {
    if addr.is_empty() {
        err.to_string()
    } else {
        format!("address {addr}: {err}")
    }
}

/// Go's `net.SplitHostPort`.
fn split_host_port(addr: &str) -> Result<(&str, &str), &'static str> {
    const MISSING_PORT: &str = "missing port in address";
    const TOO_MANY: &str = "too many colons in address";
    let i = addr.rfind(':').ok_or(MISSING_PORT)?;
    let (host, rest) = (&addr[..i], &addr[i + 1..]);
    if addr.starts_with('[') {
        let end = addr.find(']').ok_or("missing ']' in address")?;
        if end + 1 == addr.len() {
            return Err(MISSING_PORT);
        }
        if end + 1 != i {
            return Err(if addr.as_bytes()[end + 1] == b':' {
                TOO_MANY
            } else {
                MISSING_PORT
            });
        }
        let inner = &addr[1..end];
        if inner.contains('[') || inner.contains(']') || rest.contains('[') || rest.contains(']') {
            return Err("unexpected '[' in address");
        }
        return Ok((inner, rest));
    }
    if host.contains(':') {
        return Err(TOO_MANY);
    }
    if host.contains('[') {
        return Err("unexpected '[' in address");
    }
    if host.contains(']') || rest.contains(']') {
        return Err("unexpected ']' in address");
    }
    Ok((host, rest))
}

/// Go's port parsing: digits (0-65535) or a service name from /etc/services.
fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Ok(0);
    }
    if port.bytes().all(|b| b.is_ascii_digit()) {
        return port
            .parse::<u32>()
            .ok()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("address {port}: invalid port"));
    }
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    for line in services.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let (Some(name), Some(pp)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((num, proto)) = pp.split_once('/') else {
            continue;
        };
        if proto == "tcp"
            && (name == port || words.any(|alias| alias == port))
            && let Ok(p) = num.parse()
        {
            return Ok(p);
        }
    }
    Err(format!("lookup tcp/{port}: unknown port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_resolve_like_go() {
        assert_eq!(
            resolve_tcp_addr("127.0.0.1:80").await.unwrap(),
            "127.0.0.1:80"
        );
        assert_eq!(
            resolve_tcp_addr("localhost:5").await.unwrap(),
            "127.0.0.1:5"
        );
        assert_eq!(resolve_tcp_addr(":8080").await.unwrap(), ":8080");
        assert_eq!(resolve_tcp_addr("[::]:9").await.unwrap(), "[::]:9");
        assert_eq!(resolve_tcp_addr("0.0.0.0:7").await.unwrap(), "0.0.0.0:7");
        assert_eq!(
            resolve_tcp_addr("[::ffff:1.2.3.4]:1").await.unwrap(),
            "1.2.3.4:1"
        );
        assert_eq!(
            resolve_tcp_addr("bad").await.unwrap_err(),
            "address bad: missing port in address"
        );
        assert_eq!(
            resolve_tcp_addr("").await.unwrap_err(),
            "missing port in address"
        );
        assert_eq!(
            resolve_tcp_addr("127.0.0.1:99999").await.unwrap_err(),
            "address 99999: invalid port"
        );
        assert_eq!(
            resolve_tcp_addr("1:2:3").await.unwrap_err(),
            "address 1:2:3: too many colons in address"
        );
        assert_eq!(
            resolve_tcp_addr("[::1").await.unwrap_err(),
            "address [::1: missing ']' in address"
        );
    }

    #[test]
    fn listing_puts_upstream_first() {
        let t = |name: &str, stream: Stream| Toxic {
            name: name.into(),
            stream,
            stream_raw: String::new(),
            toxicity: 1.0,
            attributes: Attributes::new("noop").unwrap(),
            ttl_ms: None,
            expires_at: None,
        };
        let names: Vec<String> = ordered([
            t("d1", Stream::Downstream),
            t("u1", Stream::Upstream),
            t("d2", Stream::Downstream),
            t("u2", Stream::Upstream),
        ])
        .into_iter()
        .map(|t| t.name)
        .collect();
        assert_eq!(names, ["u1", "u2", "d1", "d2"]);
    }
}
