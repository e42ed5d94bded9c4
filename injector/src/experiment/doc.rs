//! A policy document as a tree that remembers where each value was
//! written, whether it came from a TOML file (byte spans, shown as
//! `file:line:column`) or from a JSON body (paths such as `method[2].wait`).
//! Validation reads this tree, so every complaint points at the exact place.

use std::{fmt, time::Duration};

use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

/// Where a value was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum At {
    /// Byte range in the TOML text.
    Span(usize, usize),
    /// Path from the root of a JSON document.
    Path(String),
}

#[derive(Clone, Debug)]
pub enum V {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Arr(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub v: V,
    pub at: At,
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub key_at: At,
    pub node: Node,
}

/// The text a document was read from, to turn locations into words.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    toml: Option<String>,
}

/// Every problem found, each already prefixed with its location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub problems: Vec<String>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problems.join("\n"))
    }
}

impl std::error::Error for PolicyError {}

/// Collects problems while a document is read, so one pass reports them all.
pub struct Problems<'s> {
    pub source: &'s Source,
    found: Vec<(At, String)>,
}

impl<'s> Problems<'s> {
    pub fn new(source: &'s Source) -> Self {
        Problems {
            source,
            found: Vec::new(),
        }
    }

    pub fn add(&mut self, at: &At, message: impl Into<String>) {
        self.found.push((at.clone(), message.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Problems in document order (spans first by position; paths as found).
    pub fn finish(mut self) -> Result<(), PolicyError> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found.sort_by_key(|(at, _)| match at {
            At::Span(s, _) => *s,
            At::Path(_) => usize::MAX,
        });
        Err(PolicyError {
            problems: self
                .found
                .iter()
                .map(|(at, m)| format!("{}: {m}", self.source.locate(at)))
                .collect(),
        })
    }
}

impl Source {
    /// Parses TOML; a syntax error is reported at its line and column.
    pub fn toml(name: &str, text: &str) -> Result<(Source, Node), PolicyError> {
        let source = Source {
            name: name.to_string(),
            toml: Some(text.to_string()),
        };
        match DeTable::parse(text) {
            Ok(doc) => {
                let span = doc.span();
                let root = table_node(doc.get_ref(), At::Span(span.start, span.end));
                Ok((source, root))
            }
            Err(e) => {
                let at = e
                    .span()
                    .map_or(At::Span(0, 0), |r| At::Span(r.start, r.end));
                let message = e.message().trim().to_string();
                Err(PolicyError {
                    problems: vec![format!("{}: {message}", source.locate(&at))],
                })
            }
        }
    }

    /// Parses JSON; semantic problems are later reported by path.
    pub fn json(name: &str, text: &str) -> Result<(Source, Node), PolicyError> {
        let source = Source {
            name: name.to_string(),
            toml: None,
        };
        match serde_json::from_str::<Value>(text) {
            Ok(v) => Ok((source, json_node(&v, String::new()))),
            Err(e) => Err(PolicyError {
                problems: vec![format!(
                    "{}:{}:{}: {}",
                    source.name,
                    e.line(),
                    e.column(),
                    strip_position(&e.to_string())
                )],
            }),
        }
    }

    /// `name:line:column` for TOML, `name: path` for JSON.
    pub fn locate(&self, at: &At) -> String {
        match (at, &self.toml) {
            (At::Span(start, _), Some(text)) => {
                let (line, col) = line_col(text, *start);
                format!("{}:{line}:{col}", self.name)
            }
            (At::Span(..), None) => self.name.clone(),
            (At::Path(p), _) if p.is_empty() => self.name.clone(),
            (At::Path(p), _) => format!("{}: {p}", self.name),
        }
    }

    /// The location `offset` characters into a string value, when the text
    /// shows the string verbatim (one line, no escapes); else the value.
    pub fn inside(&self, at: &At, offset: usize) -> At {
        match (at, &self.toml) {
            (At::Span(s, e), Some(text)) => {
                let raw = &text[*s..*e];
                let verbatim = (raw.starts_with('"') && !raw.starts_with("\"\"\"")
                    || raw.starts_with('\'') && !raw.starts_with("'''"))
                    && !raw.contains('\\')
                    && !raw.contains('\n');
                if !verbatim {
                    return at.clone();
                }
                let body = &raw[1..];
                let byte = body
                    .char_indices()
                    .nth(offset)
                    .map_or(body.len(), |(i, _)| i);
                At::Span(s + 1 + byte, s + 1 + byte)
            }
            (At::Path(p), _) => At::Path(format!("{p} (character {})", offset + 1)),
            _ => at.clone(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn table_node(t: &DeTable<'_>, at: At) -> Node {
    let mut entries: Vec<Entry> = t
        .iter()
        .map(|(k, v)| {
            let ks = k.span();
            let vs = v.span();
            Entry {
                key: k.get_ref().to_string(),
                key_at: At::Span(ks.start, ks.end),
                node: value_node(v.get_ref(), At::Span(vs.start, vs.end)),
            }
        })
        .collect();
    entries.sort_by_key(|e| match e.key_at {
        At::Span(s, _) => s,
        At::Path(_) => 0,
    });
    Node {
        v: V::Table(entries),
        at,
    }
}

fn value_node(v: &DeValue<'_>, at: At) -> Node {
    let v = match v {
        DeValue::String(s) => V::Str(s.to_string()),
        DeValue::Integer(i) => match parse_int(i.as_str(), i.radix()) {
            Some(n) => V::Int(n),
            None => V::Float(f64::NAN),
        },
        DeValue::Float(f) => V::Float(f.as_str().replace('_', "").parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => V::Bool(*b),
        DeValue::Datetime(_) => V::Datetime,
        DeValue::Array(a) => V::Arr(
            a.iter()
                .map(|e| {
                    let s = e.span();
                    value_node(e.get_ref(), At::Span(s.start, s.end))
                })
                .collect(),
        ),
        DeValue::Table(t) => return table_node(t, at),
    };
    Node { v, at }
}

fn parse_int(text: &str, radix: u32) -> Option<i64> {
    let clean = text.replace('_', "");
    let (neg, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let digits = if radix == 10 {
        digits.as_str()
    } else {
        digits.get(2..).unwrap_or("")
    };
    let n = i64::from_str_radix(digits, radix).ok()?;
    Some(if neg { -n } else { n })
}

fn json_node(v: &Value, path: String) -> Node {
    let at = At::Path(path.clone());
    let child = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    let v = match v {
        Value::Null => V::Datetime,
        Value::Bool(b) => V::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => V::Int(i),
            None => V::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => V::Str(s.clone()),
        Value::Array(a) => V::Arr(
            a.iter()
                .enumerate()
                .map(|(i, e)| json_node(e, format!("{path}[{i}]")))
                .collect(),
        ),
        Value::Object(m) => V::Table(
            m.iter()
                .map(|(k, e)| Entry {
                    key: k.clone(),
                    key_at: At::Path(child(k)),
                    node: json_node(e, child(k)),
                })
                .collect(),
        ),
    };
    Node { v, at }
}

impl V {
    /// What a reader calls this kind of value in a message.
    pub fn kind(&self) -> &'static str {
        match self {
            V::Str(_) => "a string",
            V::Int(_) => "an integer",
            V::Float(_) => "a number",
            V::Bool(_) => "a boolean",
            V::Datetime => "a date or null",
            V::Arr(_) => "an array",
            V::Table(_) => "a table",
        }
    }
}

impl Node {
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.v {
            V::Table(e) => Some(e),
            _ => None,
        }
    }

    /// The value as JSON (for toxic attributes and proxy targets).
    pub fn to_json(&self) -> Value {
        match &self.v {
            V::Str(s) => Value::String(s.clone()),
            V::Int(i) => Value::from(*i),
            V::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            V::Bool(b) => Value::Bool(*b),
            V::Datetime => Value::Null,
            V::Arr(a) => Value::Array(a.iter().map(Node::to_json).collect()),
            V::Table(e) => Value::Object(
                e.iter()
                    .map(|e| (e.key.clone(), e.node.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// A table's entries, checked against the keys it may have; `what` names
/// the table in messages (e.g. `[blast_radius]`).
pub fn table<'n>(
    node: &'n Node,
    p: &mut Problems<'_>,
    what: &str,
    allowed: &[&str],
) -> Option<&'n [Entry]> {
    let Some(entries) = node.entries() else {
        p.add(
            &node.at,
            format!("{what} must be a table, not {}", node.v.kind()),
        );
        return None;
    };
    for e in entries {
        if !allowed.contains(&e.key.as_str()) {
            p.add(
                &e.key_at,
                format!(
                    "unknown key `{}` in {what} (expected one of: {})",
                    e.key,
                    allowed.join(", ")
                ),
            );
        }
    }
    Some(entries)
}

pub fn get<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Node> {
    entries.iter().find(|e| e.key == key).map(|e| &e.node)
}

pub fn key_at(entries: &[Entry], key: &str) -> Option<At> {
    entries
        .iter()
        .find(|e| e.key == key)
        .map(|e| e.key_at.clone())
}

/// A required key: reports its absence at the table.
pub fn need<'n>(
    entries: &'n [Entry],
    table_at: &At,
    key: &str,
    what: &str,
    p: &mut Problems<'_>,
) -> Option<&'n Node> {
    let n = get(entries, key);
    if n.is_none() {
        p.add(table_at, format!("missing `{key}` in {what}"));
    }
    n
}

fn wrong(n: &Node, p: &mut Problems<'_>, field: &str, want: &str) {
    p.add(
        &n.at,
        format!("`{field}` must be {want}, not {}", n.v.kind()),
    );
}

pub fn string(n: &Node, p: &mut Problems<'_>, field: &str) -> Option<String> {
    match &n.v {
        V::Str(s) => Some(s.clone()),
        _ => {
            wrong(n, p, field, "a string");
            None
        }
    }
}

pub fn non_empty(n: &Node, p: &mut Problems<'_>, field: &str) -> Option<String> {
    let s = string(n, p, field)?;
    if s.trim().is_empty() {
        p.add(&n.at, format!("`{field}` must not be empty"));
        return None;
    }
    Some(s)
}

pub fn number(n: &Node, p: &mut Problems<'_>, field: &str) -> Option<f64> {
    match n.v {
        V::Int(i) => Some(i as f64),
        V::Float(f) if f.is_finite() => Some(f),
        _ => {
            wrong(n, p, field, "a finite number");
            None
        }
    }
}

pub fn integer(n: &Node, p: &mut Problems<'_>, field: &str) -> Option<i64> {
    match n.v {
        V::Int(i) => Some(i),
        _ => {
            wrong(n, p, field, "an integer");
            None
        }
    }
}

pub fn boolean(n: &Node, p: &mut Problems<'_>, field: &str) -> Option<bool> {
    match n.v {
        V::Bool(b) => Some(b),
        _ => {
            wrong(n, p, field, "true or false");
            None
        }
    }
}

pub fn array<'n>(n: &'n Node, p: &mut Problems<'_>, field: &str) -> Option<&'n [Node]> {
    match &n.v {
        V::Arr(a) => Some(a),
        _ => {
            wrong(n, p, field, "an array");
            None
        }
    }
}

/// One string or an array of strings.
pub fn strings(n: &Node, p: &mut Problems<'_>, field: &str) -> Option<Vec<(String, At)>> {
    match &n.v {
        V::Str(s) => Some(vec![(s.clone(), n.at.clone())]),
        V::Arr(a) => {
            let mut out = Vec::new();
            for e in a {
                out.push((string(e, p, field)?, e.at.clone()));
            }
            Some(out)
        }
        _ => {
            wrong(n, p, field, "a string or an array of strings");
            None
        }
    }
}

/// `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`, `"1h"`, or sums like `"1m30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "bad duration {text:?} (write e.g. \"250ms\", \"10s\", \"2m\")"
            ));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("bad number in duration {text:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!("duration {text:?} needs a unit (ms, s, m or h)"));
            }
            u => {
                return Err(format!(
                    "unknown unit {u:?} in duration {text:?} (ms, s, m or h)"
                ));
            }
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 86_400.0 * 365.0 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

pub fn duration(n: &Node, p: &mut Problems<'_>, field: &str) -> Option<Duration> {
    let s = string(n, p, field)?;
    match parse_duration(&s) {
        Ok(d) => Some(d),
        Err(e) => {
            p.add(&n.at, format!("`{field}`: {e}"));
            None
        }
    }
}

/// A duration as people write it back: `250ms`, `10s`, `1.5s`, `2m`.
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if !ms.is_multiple_of(1000) {
        return format!("{}s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_locations_are_line_and_column() {
        let text = "[a]\nx = 1\n  y = \"hello world\"\n";
        let (src, root) = Source::toml("f.toml", text).unwrap();
        let a = get(root.entries().unwrap(), "a").unwrap();
        let y = get(a.entries().unwrap(), "y").unwrap();
        assert_eq!(src.locate(&y.at), "f.toml:3:7");
        assert_eq!(src.locate(&src.inside(&y.at, 6)), "f.toml:3:14");
        let err = Source::toml("f.toml", "a = \n").unwrap_err();
        assert!(err.to_string().starts_with("f.toml:1:"), "{err}");
    }

    #[test]
    fn json_locations_are_paths() {
        let (src, root) = Source::json("body", r#"{"m":[{"w":"1s"}]}"#).unwrap();
        let m = get(root.entries().unwrap(), "m").unwrap();
        let V::Arr(steps) = &m.v else { panic!() };
        let w = get(steps[0].entries().unwrap(), "w").unwrap();
        assert_eq!(src.locate(&w.at), "body: m[0].w");
        let err = Source::json("body", "{\n \"a\": }").unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].starts_with("body:2:"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("10").unwrap_err().contains("unit"));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(show_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(show_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(show_duration(Duration::from_secs(10)), "10s");
        assert_eq!(show_duration(Duration::from_secs(120)), "2m");
    }
}
