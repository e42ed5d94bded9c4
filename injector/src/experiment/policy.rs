//! Policy files: an experiment written down in the order people plan one
//! (../shared/seed-recipes.md §3): the steady state, the hypothesis, the
//! blast radius and the abort conditions, then the method, then the
//! rollback. Parsing checks everything that can be checked before a single
//! fault is injected, and reports each problem at its line and column.

use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{
    doc::{
        self, At, Entry, Node, PolicyError, Problems, Source, V, get, need, show_duration, table,
    },
    probe::{Check, Probe, record_code, split_url, system_resolver},
    sli::Sli,
};
use crate::{faults::Attributes, model::Target};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub description: String,
    pub steady_state: SteadyState,
    pub hypothesis: Hypothesis,
    pub blast_radius: BlastRadius,
    pub abort: Abort,
    pub method: Vec<Step>,
    pub rollback: Rollback,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SteadyState {
    /// How long the steady state is measured before anything is injected.
    #[serde(serialize_with = "ser_duration")]
    pub baseline: Duration,
    pub probes: Vec<Probe>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hypothesis {
    pub text: String,
    /// Judged on the probes that started while a fault was in force.
    pub holds: Vec<Sli>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlastRadius {
    /// The only proxies the method may touch (or create).
    pub proxies: Vec<String>,
    /// The only targets a kernel-native proxy may be created on.
    #[serde(serialize_with = "ser_targets")]
    pub targets: Vec<Target>,
    /// The only streams toxics may go on; empty = both.
    pub streams: Vec<String>,
    /// The largest share of connections a toxic may hit (0..1).
    pub toxicity: f32,
    /// No fault outlives this, counted from the first injection: every
    /// toxic carries a `ttl_ms` that ends within it.
    #[serde(serialize_with = "ser_duration")]
    pub max_duration: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Abort {
    /// The run stops at once when any of these becomes true.
    pub when: Vec<Sli>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Step {
    Inject(Inject),
    Wait {
        #[serde(serialize_with = "ser_duration")]
        duration: Duration,
    },
    Ramp(Ramp),
    Remove {
        proxy: String,
        toxic: String,
    },
}

/// A proxy the method creates (and the rollback deletes).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NewProxy {
    pub listen: String,
    pub upstream: String,
    #[serde(serialize_with = "ser_target", skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inject {
    pub proxy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create: Option<NewProxy>,
    pub toxic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub toxicity: f32,
    pub attributes: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ramp {
    pub proxy: String,
    pub toxic: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub stream: String,
    pub toxicity: f32,
    pub attribute: String,
    pub from: f64,
    pub to: f64,
    pub steps: u32,
    #[serde(serialize_with = "ser_duration")]
    pub over: Duration,
    /// The other attributes, fixed for the whole ramp.
    pub attributes: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToxicRef {
    pub proxy: String,
    pub toxic: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rollback {
    /// After the rollback, keep probing this long to see the steady state
    /// come back (0 = only wait for the probes in flight).
    #[serde(serialize_with = "ser_duration")]
    pub verify: Duration,
    /// Toxics to remove besides everything the method added.
    pub remove: Vec<ToxicRef>,
}

pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&show_duration(*d))
}

fn ser_target<S: Serializer>(t: &Option<Target>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => t.to_json().serialize(s),
        None => s.serialize_none(),
    }
}

fn ser_targets<S: Serializer>(t: &[Target], s: S) -> Result<S::Ok, S::Error> {
    Value::Array(t.iter().map(Target::to_json).collect()).serialize(s)
}

impl Ramp {
    /// The attribute's value at each step, integers when both ends are.
    pub fn values(&self) -> Vec<Value> {
        let n = self.steps.max(2);
        (0..n)
            .map(|k| {
                let v = self.from + (self.to - self.from) * k as f64 / (n - 1) as f64;
                if self.from.fract() == 0.0 && self.to.fract() == 0.0 {
                    Value::from(v.round() as i64)
                } else {
                    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
                }
            })
            .collect()
    }

    /// The attributes at step `k`.
    pub fn attributes_at(&self, k: usize) -> Map<String, Value> {
        let mut m = self.attributes.clone();
        if let Some(v) = self.values().get(k) {
            m.insert(self.attribute.clone(), v.clone());
        }
        m
    }
}

impl Step {
    /// How long the step keeps the method busy.
    pub fn duration(&self) -> Duration {
        match self {
            Step::Wait { duration } => *duration,
            Step::Ramp(r) => r.over,
            _ => Duration::ZERO,
        }
    }

    /// One line for logs and reports.
    pub fn describe(&self) -> String {
        match self {
            Step::Inject(i) => {
                let created = match &i.create {
                    Some(NewProxy {
                        target: Some(t), ..
                    }) => format!(" (new kernel-native proxy on {})", t.to_json()),
                    Some(n) => format!(" (new proxy {} -> {})", n.listen, n.upstream),
                    None => String::new(),
                };
                format!(
                    "inject {} `{}` {} on {}{created}, {}, {} of connections",
                    i.kind,
                    i.toxic,
                    Value::Object(i.attributes.clone()),
                    i.proxy,
                    i.stream,
                    percent(i.toxicity)
                )
            }
            Step::Wait { duration } => format!("wait {}", show_duration(*duration)),
            Step::Ramp(r) => format!(
                "ramp {} `{}` {} {} -> {} in {} steps over {} on {}, {}, {} of connections",
                r.kind,
                r.toxic,
                r.attribute,
                r.values().first().cloned().unwrap_or(Value::Null),
                r.values().last().cloned().unwrap_or(Value::Null),
                r.steps,
                show_duration(r.over),
                r.proxy,
                r.stream,
                percent(r.toxicity)
            ),
            Step::Remove { proxy, toxic } => format!("remove `{toxic}` from {proxy}"),
        }
    }
}

fn percent(t: f32) -> String {
    let p = (t as f64 * 100.0 * 100.0).round() / 100.0;
    format!("{p}%")
}

impl Policy {
    /// How long the method takes, waits and ramps added up.
    pub fn method_duration(&self) -> Duration {
        self.method.iter().map(Step::duration).sum()
    }

    /// Every probe a policy names, for SLI lookups.
    pub fn probe_names(&self) -> Vec<String> {
        self.steady_state
            .probes
            .iter()
            .map(|p| p.name.clone())
            .collect()
    }

    /// The steady state's SLIs, every probe's together.
    pub fn steady_slis(&self) -> Vec<Sli> {
        self.steady_state
            .probes
            .iter()
            .flat_map(|p| p.slis.iter().cloned())
            .collect()
    }

    /// The longest probe timeout (how long an attempt can still be running).
    pub fn max_timeout(&self) -> Duration {
        self.steady_state
            .probes
            .iter()
            .map(|p| p.timeout)
            .max()
            .unwrap_or_default()
    }

    pub fn uses_commands(&self) -> bool {
        self.steady_state
            .probes
            .iter()
            .any(|p| matches!(p.check, Check::Command { .. }))
    }

    /// Proxies the method creates.
    pub fn created_proxies(&self) -> Vec<String> {
        self.method
            .iter()
            .filter_map(|s| match s {
                Step::Inject(Inject {
                    proxy,
                    create: Some(_),
                    ..
                }) => Some(proxy.clone()),
                _ => None,
            })
            .collect()
    }

    /// Proxies the method touches that must exist before it starts.
    pub fn existing_proxies(&self) -> Vec<String> {
        let created = self.created_proxies();
        let mut out: Vec<String> = Vec::new();
        for s in &self.method {
            let p = match s {
                Step::Inject(i) => &i.proxy,
                Step::Ramp(r) => &r.proxy,
                Step::Remove { proxy, .. } => proxy,
                Step::Wait { .. } => continue,
            };
            if !created.contains(p) && !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// TOML or JSON, told apart by the first character.
    pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
        if text.trim_start().starts_with('{') {
            Policy::from_json(name, text)
        } else {
            Policy::from_toml(name, text)
        }
    }

    pub fn from_toml(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let (source, root) = Source::toml(name, text)?;
        decode(&source, &root)
    }

    pub fn from_json(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let (source, root) = Source::json(name, text)?;
        decode(&source, &root)
    }
}

const SECTIONS: [&str; 7] = [
    "experiment",
    "steady_state",
    "hypothesis",
    "blast_radius",
    "abort",
    "method",
    "rollback",
];

fn position(entries: &[Entry], key: &str) -> Option<(usize, At)> {
    entries.iter().enumerate().find_map(|(i, e)| {
        (e.key == key).then(|| {
            let rank = match e.key_at {
                At::Span(s, _) => s,
                At::Path(_) => i,
            };
            (rank, e.key_at.clone())
        })
    })
}

fn decode(source: &Source, root: &Node) -> Result<Policy, PolicyError> {
    let mut p = Problems::new(source);
    let top = table(root, &mut p, "the policy", &SECTIONS).unwrap_or(&[]);

    // The seed's order rule: what may happen, how far, and when to stop
    // are written before how.
    if let Some((method_at, _)) = position(top, "method") {
        for (key, what) in [
            ("hypothesis", "[hypothesis]"),
            ("blast_radius", "[blast_radius]"),
            ("abort", "[abort]"),
        ] {
            if let Some((at, loc)) = position(top, key)
                && at > method_at
            {
                p.add(
                    &loc,
                    format!(
                        "{what} must be declared before [[method]]: hypothesis, blast radius and abort come first"
                    ),
                );
            }
        }
    }

    let section = |key: &str, p: &mut Problems<'_>| -> Option<&Node> {
        need(top, &root.at, key, "the policy", p)
    };

    let (name, description) = match section("experiment", &mut p) {
        Some(n) => experiment(n, &mut p),
        None => (String::new(), String::new()),
    };
    let steady = section("steady_state", &mut p).and_then(|n| steady_state(n, &mut p));
    // Read from the text itself, so a broken probe does not also make
    // every SLI that names it look wrong.
    let probe_names = declared_probes(top);
    let hypothesis = section("hypothesis", &mut p)
        .and_then(|n| hypothesis(n, &probe_names, steady.as_ref(), &mut p));
    let blast = section("blast_radius", &mut p).and_then(|n| blast_radius(n, &mut p));
    let abort = section("abort", &mut p).and_then(|n| abort(n, &probe_names, &mut p));
    let method = section("method", &mut p).and_then(|n| method(n, blast.as_ref(), &mut p));
    let rollback = match get(top, "rollback") {
        Some(n) => rollback(n, &mut p),
        None => Some(Rollback {
            verify: Duration::ZERO,
            remove: Vec::new(),
        }),
    };
    p.finish()?;
    match (steady, hypothesis, blast, abort, method, rollback) {
        (
            Some(steady_state),
            Some(hypothesis),
            Some(blast_radius),
            Some(abort),
            Some(method),
            Some(rollback),
        ) => Ok(Policy {
            name,
            description,
            steady_state,
            hypothesis,
            blast_radius,
            abort,
            method,
            rollback,
        }),
        // Every None above has reported a problem.
        _ => Err(PolicyError {
            problems: vec![format!("{}: invalid policy", source.name)],
        }),
    }
}

fn declared_probes(top: &[Entry]) -> Vec<String> {
    let probes = get(top, "steady_state")
        .and_then(Node::entries)
        .and_then(|e| get(e, "probe"));
    let Some(Node {
        v: V::Arr(items), ..
    }) = probes
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| match i.entries().and_then(|e| get(e, "name")) {
            Some(Node { v: V::Str(s), .. }) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn experiment(n: &Node, p: &mut Problems<'_>) -> (String, String) {
    let Some(e) = table(n, p, "[experiment]", &["name", "description"]) else {
        return (String::new(), String::new());
    };
    let name = need(e, &n.at, "name", "[experiment]", p)
        .and_then(|v| doc::non_empty(v, p, "name"))
        .unwrap_or_default();
    let description = get(e, "description")
        .and_then(|v| doc::string(v, p, "description"))
        .unwrap_or_default();
    (name, description)
}

fn positive(e: &[Entry], key: &str, default: Duration, p: &mut Problems<'_>) -> Option<Duration> {
    match get(e, key) {
        None => Some(default),
        Some(v) => {
            let d = doc::duration(v, p, key)?;
            if d.is_zero() {
                p.add(&v.at, format!("`{key}` must be longer than 0"));
                return None;
            }
            Some(d)
        }
    }
}

fn steady_state(n: &Node, p: &mut Problems<'_>) -> Option<SteadyState> {
    let what = "[steady_state]";
    let e = table(n, p, what, &["baseline", "interval", "timeout", "probe"])?;
    let interval = positive(e, "interval", Duration::from_millis(500), p)?;
    let timeout = positive(e, "timeout", Duration::from_secs(2), p)?;
    let list = need(e, &n.at, "probe", what, p)?;
    let items = doc::array(list, p, "probe")?;
    if items.is_empty() {
        p.add(&list.at, "declare at least one [[steady_state.probe]]");
        return None;
    }
    // Names first: SLIs may name any probe.
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let Some(pe) = item.entries() else { continue };
        if let Some(v) = get(pe, "name")
            && let Some(s) = doc::non_empty(v, p, "name")
        {
            if names.contains(&s) {
                p.add(&v.at, format!("probe {s:?} is declared twice"));
            } else if !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                p.add(&v.at, "a probe name uses letters, digits, - _ and . only");
            }
            names.push(s);
        }
    }
    let mut probes = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match probe(item, i, &names, interval, timeout, p) {
            Some(pr) => probes.push(pr),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    if probes.iter().all(|pr| pr.slis.is_empty()) {
        p.add(
            &list.at,
            "the steady state needs at least one SLI (e.g. slis = [\"success_rate >= 99% over 10s\"])",
        );
        return None;
    }
    let longest_window = probes
        .iter()
        .flat_map(|pr| pr.slis.iter().filter_map(|s| s.window))
        .max()
        .unwrap_or(Duration::from_secs(5));
    let baseline = positive(e, "baseline", longest_window, p)?;
    Some(SteadyState { baseline, probes })
}

/// Parses SLI strings; `implied` is the probe they belong to when unnamed.
fn slis(
    n: &Node,
    names: &[String],
    implied: Option<usize>,
    p: &mut Problems<'_>,
    field: &str,
) -> Option<Vec<Sli>> {
    let list = doc::strings(n, p, field)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (text, at) in list {
        match Sli::parse(&text, names, implied) {
            Ok(s) => out.push(s),
            Err(e) => {
                ok = false;
                let loc = p.source.inside(&at, e.offset);
                p.add(&loc, format!("{} (in {text:?})", e.message));
            }
        }
    }
    ok.then_some(out)
}

fn probe(
    n: &Node,
    index: usize,
    names: &[String],
    interval: Duration,
    timeout: Duration,
    p: &mut Problems<'_>,
) -> Option<Probe> {
    let what = "[[steady_state.probe]]";
    const COMMON: [&str; 5] = ["name", "type", "interval", "timeout", "slis"];
    let e = n.entries().or_else(|| {
        p.add(&n.at, format!("{what} must be a table"));
        None
    })?;
    let kind =
        need(e, &n.at, "type", what, p).and_then(|v| doc::string(v, p, "type").map(|s| (s, v)))?;
    let extra: &[&str] = match kind.0.as_str() {
        "http" => &["url", "method", "expect_status", "headers", "body"],
        "tcp" => &["address"],
        "dns" => &["resolve", "server", "record"],
        "command" => &["command"],
        other => {
            p.add(
                &kind.1.at,
                format!("unknown probe type {other:?} (http, tcp, dns or command)"),
            );
            return None;
        }
    };
    let allowed: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
    let e = table(n, p, what, &allowed)?;
    let name = need(e, &n.at, "name", what, p).and_then(|v| doc::non_empty(v, p, "name"))?;
    let interval = positive(e, "interval", interval, p)?;
    if interval < Duration::from_millis(10) {
        if let Some(v) = get(e, "interval") {
            p.add(&v.at, "`interval` must be at least 10ms");
        }
        return None;
    }
    let timeout = positive(e, "timeout", timeout, p)?;
    let check = match kind.0.as_str() {
        "http" => {
            let url_node = need(e, &n.at, "url", what, p)?;
            let url = doc::string(url_node, p, "url")?;
            if let Err(m) = split_url(&url) {
                p.add(&url_node.at, m);
                return None;
            }
            let method = match get(e, "method") {
                Some(v) => {
                    let m = doc::string(v, p, "method")?.to_ascii_uppercase();
                    if hyper::Method::from_bytes(m.as_bytes()).is_err() || m.is_empty() {
                        p.add(&v.at, format!("invalid HTTP method {m:?}"));
                        return None;
                    }
                    m
                }
                None => "GET".into(),
            };
            let expect_status = match get(e, "expect_status") {
                None => Vec::new(),
                Some(v) => {
                    let items: Vec<&Node> = match &v.v {
                        V::Arr(a) => a.iter().collect(),
                        _ => vec![v],
                    };
                    let mut out = Vec::new();
                    for it in items {
                        let code = doc::integer(it, p, "expect_status")?;
                        if !(100..=599).contains(&code) {
                            p.add(&it.at, format!("{code} is not an HTTP status (100..599)"));
                            return None;
                        }
                        out.push(code as u16);
                    }
                    out
                }
            };
            let headers = match get(e, "headers") {
                None => Vec::new(),
                Some(v) => {
                    let he = v.entries().or_else(|| {
                        p.add(&v.at, "`headers` must be a table of strings");
                        None
                    })?;
                    let mut out = Vec::new();
                    for h in he {
                        out.push((h.key.clone(), doc::string(&h.node, p, &h.key)?));
                    }
                    out
                }
            };
            let body = match get(e, "body") {
                Some(v) => Some(doc::string(v, p, "body")?),
                None => None,
            };
            Check::Http {
                url,
                method,
                expect_status,
                headers,
                body,
            }
        }
        "tcp" => {
            let v = need(e, &n.at, "address", what, p)?;
            let address = doc::string(v, p, "address")?;
            if address
                .rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
            {
                p.add(
                    &v.at,
                    format!("`address` must be host:port, not {address:?}"),
                );
                return None;
            }
            Check::Tcp { address }
        }
        "dns" => {
            let v = need(e, &n.at, "resolve", what, p)?;
            let name = doc::non_empty(v, p, "resolve")?;
            let server = match get(e, "server") {
                Some(v) => {
                    let s = doc::string(v, p, "server")?;
                    let full = if s.parse::<std::net::IpAddr>().is_ok() {
                        std::net::SocketAddr::new(s.parse().ok()?, 53).to_string()
                    } else {
                        s.clone()
                    };
                    if full.parse::<std::net::SocketAddr>().is_err() {
                        p.add(
                            &v.at,
                            format!("`server` must be an IP address or ip:port, not {s:?}"),
                        );
                        return None;
                    }
                    full
                }
                None => system_resolver(),
            };
            let record = match get(e, "record") {
                Some(v) => {
                    let r = doc::string(v, p, "record")?.to_ascii_uppercase();
                    if record_code(&r).is_none() {
                        p.add(
                            &v.at,
                            format!("unknown record type {r:?} (A, AAAA, CNAME, MX, NS, SRV, TXT)"),
                        );
                        return None;
                    }
                    r
                }
                None => "A".into(),
            };
            Check::Dns {
                name,
                server,
                record,
            }
        }
        _ => {
            let v = need(e, &n.at, "command", what, p)?;
            let argv = match &v.v {
                V::Str(s) if !s.trim().is_empty() => vec!["sh".into(), "-c".into(), s.clone()],
                V::Arr(a) if !a.is_empty() => {
                    let mut out = Vec::new();
                    for x in a {
                        out.push(doc::string(x, p, "command")?);
                    }
                    out
                }
                _ => {
                    p.add(&v.at, "`command` must be a shell line or a non-empty array (program and arguments)");
                    return None;
                }
            };
            Check::Command { argv }
        }
    };
    let slis = match get(e, "slis") {
        Some(v) => slis(v, names, Some(index), p, "slis")?,
        None => Vec::new(),
    };
    Some(Probe {
        name,
        check,
        interval,
        timeout,
        slis,
    })
}

fn hypothesis(
    n: &Node,
    names: &[String],
    steady: Option<&SteadyState>,
    p: &mut Problems<'_>,
) -> Option<Hypothesis> {
    let what = "[hypothesis]";
    let e = table(n, p, what, &["text", "holds"])?;
    let text = need(e, &n.at, "text", what, p).and_then(|v| doc::non_empty(v, p, "text"))?;
    let only = (names.len() == 1).then_some(0);
    let holds = match get(e, "holds") {
        Some(v) => {
            let h = slis(v, names, only, p, "holds")?;
            if h.is_empty() {
                p.add(
                    &v.at,
                    "`holds` needs at least one SLI (or leave it out to reuse the steady state's)",
                );
                return None;
            }
            h
        }
        // The classic hypothesis: the steady state goes on.
        None => steady.map(|s| s.probes.iter().flat_map(|p| p.slis.clone()).collect())?,
    };
    Some(Hypothesis { text, holds })
}

fn blast_radius(n: &Node, p: &mut Problems<'_>) -> Option<BlastRadius> {
    let what = "[blast_radius]";
    let e = table(
        n,
        p,
        what,
        &["proxies", "targets", "streams", "toxicity", "max_duration"],
    )?;
    let pv = need(e, &n.at, "proxies", what, p)?;
    let proxies: Vec<String> = doc::strings(pv, p, "proxies")?
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    if proxies.is_empty() {
        p.add(&pv.at, "the blast radius names at least one proxy");
        return None;
    }
    let mut targets = Vec::new();
    if let Some(tv) = get(e, "targets") {
        for t in doc::array(tv, p, "targets")? {
            match Target::from_json(&t.to_json()) {
                Ok(t) => targets.push(t),
                Err(m) => {
                    p.add(&t.at, m);
                    return None;
                }
            }
        }
    }
    let mut streams = Vec::new();
    if let Some(sv) = get(e, "streams") {
        for (s, at) in doc::strings(sv, p, "streams")? {
            match crate::model::Stream::parse(&s) {
                Some(_) => streams.push(s.to_ascii_lowercase()),
                None => {
                    p.add(
                        &at,
                        format!("stream {s:?} is neither upstream nor downstream"),
                    );
                    return None;
                }
            }
        }
    }
    let toxicity = match get(e, "toxicity") {
        None => 1.0,
        Some(v) => {
            let t = doc::number(v, p, "toxicity")?;
            if !(t > 0.0 && t <= 1.0) {
                p.add(
                    &v.at,
                    format!("`toxicity` is a share of connections, in (0, 1]; got {t}"),
                );
                return None;
            }
            t as f32
        }
    };
    let dv = need(e, &n.at, "max_duration", what, p)?;
    let max_duration = doc::duration(dv, p, "max_duration")?;
    if max_duration < Duration::from_millis(1) {
        p.add(&dv.at, "`max_duration` must be at least 1ms");
        return None;
    }
    Some(BlastRadius {
        proxies,
        targets,
        streams,
        toxicity,
        max_duration,
    })
}

fn abort(n: &Node, names: &[String], p: &mut Problems<'_>) -> Option<Abort> {
    let what = "[abort]";
    let e = table(n, p, what, &["when"])?;
    let v = need(e, &n.at, "when", what, p)?;
    let only = (names.len() == 1).then_some(0);
    let when = slis(v, names, only, p, "when")?;
    if when.is_empty() {
        p.add(&v.at, "an experiment needs at least one abort condition");
        return None;
    }
    Some(Abort { when })
}

/// What the method has put in place so far, to check later steps.
#[derive(Default)]
struct Planned {
    /// (proxy, toxic, type) in force.
    active: Vec<(String, String, String)>,
    created: Vec<String>,
    elapsed: Duration,
}

fn method(n: &Node, blast: Option<&BlastRadius>, p: &mut Problems<'_>) -> Option<Vec<Step>> {
    let items = doc::array(n, p, "method")?;
    if items.is_empty() {
        p.add(&n.at, "the method needs at least one step");
        return None;
    }
    let mut steps = Vec::new();
    let mut plan = Planned::default();
    let mut ok = true;
    for item in items {
        match step(item, blast, &mut plan, p) {
            Some(s) => steps.push(s),
            None => ok = false,
        }
    }
    if ok
        && !steps
            .iter()
            .any(|s| matches!(s, Step::Inject(_) | Step::Ramp(_)))
    {
        p.add(
            &n.at,
            "the method injects nothing (add an inject or ramp step)",
        );
        return None;
    }
    ok.then_some(steps)
}

/// Type and attributes checked the way the API will check them.
fn toxic_attributes(
    kind: &(String, &Node),
    attrs: Option<&Node>,
    p: &mut Problems<'_>,
) -> Option<(Attributes, Map<String, Value>)> {
    let Some(mut a) = Attributes::new(&kind.0) else {
        p.add(
            &kind.1.at,
            format!(
                "unknown toxic type {:?} (one of: {})",
                kind.0,
                Attributes::all_types().join(", ")
            ),
        );
        return None;
    };
    let mut map = Map::new();
    if let Some(v) = attrs {
        let Some(entries) = v.entries() else {
            p.add(&v.at, "`attributes` must be a table");
            return None;
        };
        let known = a.to_json();
        for en in entries {
            if known.get(&en.key).is_none() {
                let names: Vec<&String> = known
                    .as_object()
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                p.add(
                    &en.key_at,
                    format!(
                        "{} has no attribute `{}` (it has: {})",
                        kind.0,
                        en.key,
                        names
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                return None;
            }
        }
        if let Value::Object(m) = v.to_json() {
            map = m;
        }
        if let Err(m) = a.merge(&map) {
            p.add(&v.at, m);
            return None;
        }
    }
    if let Err(m) = a.validate() {
        p.add(attrs.map_or(&kind.1.at, |v| &v.at), m);
        return None;
    }
    Some((a, map))
}

/// stream and toxicity of an inject or ramp, within the blast radius.
fn stream_and_toxicity(
    e: &[Entry],
    blast: Option<&BlastRadius>,
    p: &mut Problems<'_>,
) -> Option<(String, f32)> {
    let stream = match get(e, "stream") {
        None => "downstream".to_string(),
        Some(v) => {
            let s = doc::string(v, p, "stream")?;
            if crate::model::Stream::parse(&s).is_none() {
                p.add(
                    &v.at,
                    format!("stream {s:?} is neither upstream nor downstream"),
                );
                return None;
            }
            if let Some(b) = blast
                && !b.streams.is_empty()
                && !b.streams.contains(&s.to_ascii_lowercase())
            {
                p.add(
                    &v.at,
                    format!(
                        "stream {s} is outside the blast radius (streams = {:?})",
                        b.streams
                    ),
                );
                return None;
            }
            s.to_ascii_lowercase()
        }
    };
    if get(e, "stream").is_none()
        && let Some(b) = blast
        && !b.streams.is_empty()
        && !b.streams.iter().any(|s| s == "downstream")
    {
        p.add(
            &e.first().map_or(At::Span(0, 0), |x| x.key_at.clone()),
            format!("the default stream (downstream) is outside the blast radius (streams = {:?}); set `stream`", b.streams),
        );
        return None;
    }
    let cap = blast.map_or(1.0, |b| b.toxicity);
    let toxicity = match get(e, "toxicity") {
        // A step without a toxicity hits the blast radius' share.
        None => cap,
        Some(v) => {
            let t = doc::number(v, p, "toxicity")? as f32;
            if !(0.0..=1.0).contains(&t) {
                p.add(&v.at, format!("`toxicity` must be in [0, 1], got {t}"));
                return None;
            }
            if t > cap {
                p.add(
                    &v.at,
                    format!("toxicity {t} is beyond the blast radius (toxicity <= {cap})"),
                );
                return None;
            }
            t
        }
    };
    Some((stream, toxicity))
}

fn in_radius(proxy: &(String, &Node), blast: Option<&BlastRadius>, p: &mut Problems<'_>) -> bool {
    match blast {
        Some(b) if !b.proxies.contains(&proxy.0) => {
            p.add(
                &proxy.1.at,
                format!(
                    "proxy {:?} is outside the blast radius (proxies = {:?})",
                    proxy.0, b.proxies
                ),
            );
            false
        }
        _ => true,
    }
}

fn budget(
    d: Duration,
    at: &At,
    blast: Option<&BlastRadius>,
    plan: &mut Planned,
    p: &mut Problems<'_>,
) -> bool {
    plan.elapsed += d;
    match blast {
        Some(b) if plan.elapsed > b.max_duration => {
            p.add(
                at,
                format!(
                    "the method runs {} by the end of this step, beyond the blast radius' max_duration of {}",
                    show_duration(plan.elapsed),
                    show_duration(b.max_duration)
                ),
            );
            false
        }
        _ => true,
    }
}

fn step(
    n: &Node,
    blast: Option<&BlastRadius>,
    plan: &mut Planned,
    p: &mut Problems<'_>,
) -> Option<Step> {
    let what = "[[method]]";
    let e = n.entries().or_else(|| {
        p.add(&n.at, format!("each {what} step must be a table"));
        None
    })?;
    let av = need(e, &n.at, "action", what, p)?;
    let action = doc::string(av, p, "action")?;
    let str_field = |key: &str, p: &mut Problems<'_>| -> Option<(String, &Node)> {
        let v = need(e, &n.at, key, what, p)?;
        Some((doc::non_empty(v, p, key)?, v))
    };
    match action.as_str() {
        "wait" => {
            table(n, p, "a wait step", &["action", "duration"])?;
            let v = need(e, &n.at, "duration", what, p)?;
            let duration = doc::duration(v, p, "duration")?;
            if !budget(duration, &v.at, blast, plan, p) {
                return None;
            }
            Some(Step::Wait { duration })
        }
        "remove" => {
            table(n, p, "a remove step", &["action", "proxy", "toxic"])?;
            let proxy = str_field("proxy", p)?;
            let toxic = str_field("toxic", p)?;
            let Some(i) = plan
                .active
                .iter()
                .position(|(px, t, _)| *px == proxy.0 && *t == toxic.0)
            else {
                p.add(
                    &toxic.1.at,
                    format!("no earlier step injects {:?} on {:?}", toxic.0, proxy.0),
                );
                return None;
            };
            plan.active.remove(i);
            Some(Step::Remove {
                proxy: proxy.0,
                toxic: toxic.0,
            })
        }
        "inject" => {
            table(
                n,
                p,
                "an inject step",
                &[
                    "action",
                    "proxy",
                    "create",
                    "toxic",
                    "type",
                    "stream",
                    "toxicity",
                    "attributes",
                ],
            )?;
            let proxy = str_field("proxy", p)?;
            let toxic = str_field("toxic", p)?;
            if plan
                .active
                .iter()
                .any(|(px, t, _)| *px == proxy.0 && *t == toxic.0)
            {
                p.add(
                    &toxic.1.at,
                    format!(
                        "{:?} is already injected on {:?} by an earlier step",
                        toxic.0, proxy.0
                    ),
                );
                return None;
            }
            // Recorded now, so later steps that name it are not reported too.
            let kind_name = get(e, "type").and_then(|v| match &v.v {
                V::Str(s) => Some(s.clone()),
                _ => None,
            });
            plan.active.push((
                proxy.0.clone(),
                toxic.0.clone(),
                kind_name.unwrap_or_default(),
            ));
            let kind = str_field("type", p)?;
            let radius_ok = in_radius(&proxy, blast, p);
            let create = match get(e, "create") {
                None => None,
                Some(v) => Some(new_proxy(v, &proxy.0, blast, plan, p)?),
            };
            let (_, attributes) = toxic_attributes(&kind, get(e, "attributes"), p)?;
            let (stream, toxicity) = stream_and_toxicity(e, blast, p)?;
            if !radius_ok {
                return None;
            }
            Some(Step::Inject(Inject {
                proxy: proxy.0,
                create,
                toxic: toxic.0,
                kind: kind.0,
                stream,
                toxicity,
                attributes,
            }))
        }
        "ramp" => {
            table(
                n,
                p,
                "a ramp step",
                &[
                    "action",
                    "proxy",
                    "toxic",
                    "type",
                    "stream",
                    "toxicity",
                    "attribute",
                    "from",
                    "to",
                    "steps",
                    "over",
                    "attributes",
                ],
            )?;
            let proxy = str_field("proxy", p)?;
            let toxic = str_field("toxic", p)?;
            if !in_radius(&proxy, blast, p) {
                return None;
            }
            let earlier = plan
                .active
                .iter()
                .find(|(px, t, _)| *px == proxy.0 && *t == toxic.0)
                .map(|(_, _, k)| k.clone());
            if earlier.is_none() {
                let named = get(e, "type").and_then(|v| match &v.v {
                    V::Str(s) => Some(s.clone()),
                    _ => None,
                });
                plan.active
                    .push((proxy.0.clone(), toxic.0.clone(), named.unwrap_or_default()));
            }
            let kind = match (get(e, "type"), earlier) {
                (Some(v), Some(k)) => {
                    let s = doc::string(v, p, "type")?;
                    if s != k {
                        p.add(&v.at, format!("{:?} was injected as {k}, not {s}", toxic.0));
                        return None;
                    }
                    (s, v)
                }
                (Some(v), None) => (doc::non_empty(v, p, "type")?, v),
                (None, Some(k)) => (k, n),
                (None, None) => {
                    p.add(
                        &n.at,
                        format!("missing `type` in {what} (the ramp creates {:?})", toxic.0),
                    );
                    return None;
                }
            };
            let (attrs, fixed) = toxic_attributes(&kind, get(e, "attributes"), p)?;
            let av = need(e, &n.at, "attribute", what, p)?;
            let attribute = doc::non_empty(av, p, "attribute")?;
            if !attrs
                .to_json()
                .get(&attribute)
                .is_some_and(Value::is_number)
            {
                p.add(
                    &av.at,
                    format!("{} has no numeric attribute `{attribute}` to ramp", kind.0),
                );
                return None;
            }
            let from_v = need(e, &n.at, "from", what, p)?;
            let from = doc::number(from_v, p, "from")?;
            let to_v = need(e, &n.at, "to", what, p)?;
            let to = doc::number(to_v, p, "to")?;
            for (v, x) in [(from_v, from), (to_v, to)] {
                if x < 0.0 {
                    p.add(&v.at, "a ramp value cannot be negative");
                    return None;
                }
            }
            // Each value must be one the API accepts.
            for (v, x) in [(from_v, from), (to_v, to)] {
                let mut a = attrs.clone();
                let mut m = Map::new();
                m.insert(
                    attribute.clone(),
                    if x.fract() == 0.0 {
                        Value::from(x as i64)
                    } else {
                        Value::from(x)
                    },
                );
                if let Err(msg) = a.merge(&m).and_then(|_| a.validate()) {
                    p.add(&v.at, msg);
                    return None;
                }
            }
            let sv = need(e, &n.at, "steps", what, p)?;
            let steps = doc::integer(sv, p, "steps")?;
            if !(2..=1000).contains(&steps) {
                p.add(&sv.at, "`steps` must be between 2 and 1000");
                return None;
            }
            let ov = need(e, &n.at, "over", what, p)?;
            let over = doc::duration(ov, p, "over")?;
            if over.is_zero() {
                p.add(&ov.at, "`over` must be longer than 0");
                return None;
            }
            let (stream, toxicity) = stream_and_toxicity(e, blast, p)?;
            if !budget(over, &ov.at, blast, plan, p) {
                return None;
            }
            let mut fixed = fixed;
            fixed.remove(&attribute);
            Some(Step::Ramp(Ramp {
                proxy: proxy.0,
                toxic: toxic.0,
                kind: kind.0,
                stream,
                toxicity,
                attribute,
                from,
                to,
                steps: steps as u32,
                over,
                attributes: fixed,
            }))
        }
        other => {
            p.add(
                &av.at,
                format!("unknown action {other:?} (inject, wait, ramp or remove)"),
            );
            None
        }
    }
}

fn new_proxy(
    n: &Node,
    name: &str,
    blast: Option<&BlastRadius>,
    plan: &mut Planned,
    p: &mut Problems<'_>,
) -> Option<NewProxy> {
    let e = table(n, p, "`create`", &["listen", "upstream", "target"])?;
    if plan.created.iter().any(|c| c == name) {
        p.add(
            &n.at,
            format!("proxy {name:?} is created by an earlier step"),
        );
        return None;
    }
    let uv = need(e, &n.at, "upstream", "`create`", p)?;
    let upstream = doc::non_empty(uv, p, "upstream")?;
    let target = match get(e, "target") {
        None => None,
        Some(tv) => match Target::from_json(&tv.to_json()) {
            Ok(t) => {
                if let Some(b) = blast
                    && !b.targets.contains(&t)
                {
                    p.add(
                        &tv.at,
                        format!(
                            "target {} is outside the blast radius (targets = [{}])",
                            t.to_json(),
                            b.targets
                                .iter()
                                .map(|t| t.to_json().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    return None;
                }
                Some(t)
            }
            Err(m) => {
                p.add(&tv.at, m);
                return None;
            }
        },
    };
    let listen = match get(e, "listen") {
        Some(v) => doc::string(v, p, "listen")?,
        None if target.is_some() => String::new(),
        None => {
            p.add(
                &n.at,
                "`create` needs `listen` (a listen proxy) or `target` (a kernel-native one)",
            );
            return None;
        }
    };
    plan.created.push(name.to_string());
    Some(NewProxy {
        listen,
        upstream,
        target,
    })
}

fn rollback(n: &Node, p: &mut Problems<'_>) -> Option<Rollback> {
    let what = "[rollback]";
    let e = table(n, p, what, &["verify", "remove"])?;
    let verify = match get(e, "verify") {
        Some(v) => doc::duration(v, p, "verify")?,
        None => Duration::ZERO,
    };
    let mut remove = Vec::new();
    if let Some(rv) = get(e, "remove") {
        for item in doc::array(rv, p, "remove")? {
            let ie = table(item, p, "a [[rollback.remove]] entry", &["proxy", "toxic"])?;
            let proxy = need(ie, &item.at, "proxy", "[[rollback.remove]]", p)
                .and_then(|v| doc::non_empty(v, p, "proxy"))?;
            let toxic = need(ie, &item.at, "toxic", "[[rollback.remove]]", p)
                .and_then(|v| doc::non_empty(v, p, "toxic"))?;
            remove.push(ToxicRef { proxy, toxic });
        }
    }
    Some(Rollback { verify, remove })
}
