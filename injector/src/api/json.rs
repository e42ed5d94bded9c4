//! Request bodies decoded the way ToxiProxy's Go server decodes them
//! (`json.NewDecoder(body).Decode(&v)`), because clients depend on it: only
//! the first JSON value is read (trailing bytes are ignored), the
//! Content-Type is not looked at, keys match case-insensitively, `null`
//! keeps the default, and errors read exactly as Go's (`EOF`,
//! `unexpected EOF`, `invalid character 'x' looking for beginning of value`,
//! `json: cannot unmarshal string into Go struct field Proxy.enabled of type
//! bool`).
//!
//! The syntax is checked by a byte scanner that follows Go's scanner state
//! for state, so syntax errors carry Go's words; the value found is then
//! handed to serde_json.

use serde_json::{Map, Value};

/// Deeper nesting than this is refused (serde_json's own limit; Go's is 10000).
const MAX_DEPTH: usize = 128;

/// Reads the first JSON value of `body`, Go style. The error is the Go text
/// without the `bad request body: ` prefix.
pub fn decode_first(body: &[u8]) -> Result<Value, String> {
    let (start, end) = scan_first(body)?;
    let text = String::from_utf8_lossy(&body[start..end]);
    serde_json::from_str(&text).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            "exceeded max depth".to_string()
        } else {
            // Values Go's scanner accepts but serde_json cannot hold (a lone
            // UTF-16 surrogate, a number beyond f64): rare, worded by serde.
            format!("json: {e}")
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Frame {
    /// Inside an object, before the colon of a key.
    ObjectKey,
    /// Inside an object, after a key's colon.
    ObjectValue,
    Array,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    BeginValue,
    BeginValueOrEmpty,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    InString,
    InStringEsc,
    InStringEscU(u8),
    Neg,
    One,
    Zero,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    /// Inside a literal: which one, and how many bytes are matched.
    Literal(&'static [u8], usize),
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Go's `quoteChar`: how a byte is shown in "invalid character ..." (the
/// byte is taken as a code point, as Go's `string(c)` does).
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        b'\\' => r"'\\'".into(),
        0x07 => r"'\a'".into(),
        0x08 => r"'\b'".into(),
        0x0c => r"'\f'".into(),
        b'\n' => r"'\n'".into(),
        b'\r' => r"'\r'".into(),
        b'\t' => r"'\t'".into(),
        0x0b => r"'\v'".into(),
        0..=0x1f | 0x7f => format!(r"'\x{c:02x}'"),
        0x80..=0xa0 | 0xad => format!(r"'\u{c:04x}'"),
        _ => format!("'{}'", c as char),
    }
}

fn syntax(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", quote_char(c))
}

/// Finds the first complete value: its byte range, or Go's error text.
fn scan_first(body: &[u8]) -> Result<(usize, usize), String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut state = State::BeginValue;
    let mut start = None;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if start.is_none() {
            if is_space(c) {
                i += 1;
                continue;
            }
            start = Some(i);
        }
        match step(&mut state, &mut stack, c)? {
            Step::Continue => i += 1,
            // The byte ended a number or literal and belongs to what follows.
            Step::Reprocess => {}
            Step::Done(consumed) => {
                let end = if consumed { i + 1 } else { i };
                return Ok((start.unwrap_or(0), end));
            }
        }
    }
    let Some(start) = start else {
        return Err("EOF".into());
    };
    // At the end of input Go feeds one space: it completes a bare number
    // or literal at the top level, and nothing else.
    match step(&mut state, &mut stack, b' ') {
        Ok(Step::Done(_)) => Ok((start, body.len())),
        _ => Err("unexpected EOF".into()),
    }
}

enum Step {
    Continue,
    Reprocess,
    /// The top-level value is complete; true if this byte is part of it.
    Done(bool),
}

fn step(state: &mut State, stack: &mut Vec<Frame>, c: u8) -> Result<Step, String> {
    use State::*;
    match *state {
        BeginValueOrEmpty | BeginValue => {
            if is_space(c) {
                return Ok(Step::Continue);
            }
            if *state == BeginValueOrEmpty && c == b']' {
                return end_container(state, stack, Frame::Array);
            }
            match c {
                b'{' => {
                    push(stack, Frame::ObjectKey)?;
                    *state = BeginStringOrEmpty;
                }
                b'[' => {
                    push(stack, Frame::Array)?;
                    *state = BeginValueOrEmpty;
                }
                b'"' => *state = InString,
                b'-' => *state = Neg,
                b'0' => *state = Zero,
                b'1'..=b'9' => *state = One,
                b't' => *state = Literal(b"true", 1),
                b'f' => *state = Literal(b"false", 1),
                b'n' => *state = Literal(b"null", 1),
                _ => return Err(syntax(c, "looking for beginning of value")),
            }
            Ok(Step::Continue)
        }
        BeginStringOrEmpty | BeginString => {
            if is_space(c) {
                return Ok(Step::Continue);
            }
            if *state == BeginStringOrEmpty && c == b'}' {
                return end_container(state, stack, Frame::ObjectKey);
            }
            if c == b'"' {
                *state = InString;
                return Ok(Step::Continue);
            }
            Err(syntax(c, "looking for beginning of object key string"))
        }
        EndValue => {
            let Some(top) = stack.last().copied() else {
                // A bare number or literal ended at this byte.
                return Ok(Step::Done(false));
            };
            if is_space(c) {
                return Ok(Step::Continue);
            }
            match top {
                Frame::ObjectKey => {
                    if c == b':' {
                        *stack.last_mut().expect("non-empty") = Frame::ObjectValue;
                        *state = BeginValue;
                        return Ok(Step::Continue);
                    }
                    Err(syntax(c, "after object key"))
                }
                Frame::ObjectValue => match c {
                    b',' => {
                        *stack.last_mut().expect("non-empty") = Frame::ObjectKey;
                        *state = BeginString;
                        Ok(Step::Continue)
                    }
                    b'}' => end_container(state, stack, Frame::ObjectValue),
                    _ => Err(syntax(c, "after object key:value pair")),
                },
                Frame::Array => match c {
                    b',' => {
                        *state = BeginValue;
                        Ok(Step::Continue)
                    }
                    b']' => end_container(state, stack, Frame::Array),
                    _ => Err(syntax(c, "after array element")),
                },
            }
        }
        InString => {
            match c {
                b'"' => return end_scalar(state, stack, true),
                b'\\' => *state = InStringEsc,
                0..=0x1f => return Err(syntax(c, "in string literal")),
                _ => {}
            }
            Ok(Step::Continue)
        }
        InStringEsc => {
            match c {
                b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => *state = InString,
                b'u' => *state = InStringEscU(0),
                _ => return Err(syntax(c, "in string escape code")),
            }
            Ok(Step::Continue)
        }
        InStringEscU(n) => {
            if !c.is_ascii_hexdigit() {
                return Err(syntax(c, "in \\u hexadecimal character escape"));
            }
            *state = if n == 3 {
                InString
            } else {
                InStringEscU(n + 1)
            };
            Ok(Step::Continue)
        }
        Neg => {
            match c {
                b'0' => *state = Zero,
                b'1'..=b'9' => *state = One,
                _ => return Err(syntax(c, "in numeric literal")),
            }
            Ok(Step::Continue)
        }
        One if c.is_ascii_digit() => Ok(Step::Continue),
        One | Zero => match c {
            b'.' => {
                *state = Dot;
                Ok(Step::Continue)
            }
            b'e' | b'E' => {
                *state = E;
                Ok(Step::Continue)
            }
            _ => end_scalar(state, stack, false),
        },
        Dot => {
            if !c.is_ascii_digit() {
                return Err(syntax(c, "after decimal point in numeric literal"));
            }
            *state = Dot0;
            Ok(Step::Continue)
        }
        Dot0 => match c {
            b'0'..=b'9' => Ok(Step::Continue),
            b'e' | b'E' => {
                *state = E;
                Ok(Step::Continue)
            }
            _ => end_scalar(state, stack, false),
        },
        E if c == b'+' || c == b'-' => {
            *state = ESign;
            Ok(Step::Continue)
        }
        E | ESign => {
            if !c.is_ascii_digit() {
                return Err(syntax(c, "in exponent of numeric literal"));
            }
            *state = E0;
            Ok(Step::Continue)
        }
        E0 => {
            if c.is_ascii_digit() {
                Ok(Step::Continue)
            } else {
                end_scalar(state, stack, false)
            }
        }
        Literal(word, n) => {
            if n == word.len() {
                return end_scalar(state, stack, false);
            }
            if c != word[n] {
                let name = std::str::from_utf8(word).unwrap_or("literal");
                return Err(syntax(
                    c,
                    &format!("in literal {name} (expecting {})", quote_char(word[n])),
                ));
            }
            *state = Literal(word, n + 1);
            Ok(Step::Continue)
        }
    }
}

fn push(stack: &mut Vec<Frame>, f: Frame) -> Result<(), String> {
    if stack.len() >= MAX_DEPTH {
        return Err("exceeded max depth".into());
    }
    stack.push(f);
    Ok(())
}

/// A string (closing quote consumed) or a number/literal (this byte not
/// consumed) has ended.
fn end_scalar(state: &mut State, stack: &[Frame], consumed: bool) -> Result<Step, String> {
    *state = State::EndValue;
    if stack.is_empty() {
        return Ok(Step::Done(consumed));
    }
    Ok(if consumed {
        Step::Continue
    } else {
        Step::Reprocess
    })
}

fn end_container(state: &mut State, stack: &mut Vec<Frame>, _f: Frame) -> Result<Step, String> {
    stack.pop();
    *state = State::EndValue;
    if stack.is_empty() {
        return Ok(Step::Done(true));
    }
    Ok(Step::Continue)
}

/// How Go names a JSON value in "cannot unmarshal X into" when the target
/// is not a number type (numbers then carry no digits).
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's field-name match: case-insensitive, with Unicode's two ASCII
/// look-alikes that fold to ASCII letters (`ſ` = s, Kelvin `K` = k).
pub fn key_matches(key: &str, field: &str) -> bool {
    let mut k = key.chars().map(|c| match c {
        'ſ' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    });
    let mut f = field.chars().map(|c| c.to_ascii_lowercase());
    loop {
        match (k.next(), f.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The top-level value as an object: `None` for `null` (Go leaves the
/// defaults), a Go error for anything else that is not an object.
pub fn top_object<'a>(
    v: &'a Value,
    go_type: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        other => Err(format!(
            "json: cannot unmarshal {} into Go value of type {go_type}",
            kind(other)
        )),
    }
}

/// Decodes the fields of one Go struct from an object, in document order,
/// keeping the first type error (Go keeps decoding the other fields and
/// reports the first error at the end).
pub struct GoStruct<'a> {
    name: &'a str,
    first_error: Option<String>,
}

impl<'a> GoStruct<'a> {
    /// `name` is the struct type name Go prints (`Proxy`, `ToxicWrapper`,
    /// or "" for an anonymous struct).
    pub fn new(name: &'a str) -> Self {
        GoStruct {
            name,
            first_error: None,
        }
    }

    pub fn type_error(&mut self, value_kind: &str, field: &str, go_type: &str) {
        if self.first_error.is_none() {
            self.first_error = Some(format!(
                "json: cannot unmarshal {value_kind} into Go struct field {}.{field} of type {go_type}",
                self.name
            ));
        }
    }

    /// Records an error already worded (nested decoders).
    pub fn error(&mut self, text: String) {
        if self.first_error.is_none() {
            self.first_error = Some(text);
        }
    }

    pub fn string(&mut self, field: &str, v: &Value, slot: &mut String) {
        match v {
            Value::Null => {}
            Value::String(s) => *slot = s.clone(),
            other => self.type_error(kind(other), field, "string"),
        }
    }

    pub fn bool(&mut self, field: &str, v: &Value, slot: &mut bool) {
        match v {
            Value::Null => {}
            Value::Bool(b) => *slot = *b,
            other => self.type_error(kind(other), field, "bool"),
        }
    }

    /// Go's `*bool`: `null` stays `None`.
    pub fn opt_bool(&mut self, field: &str, v: &Value, slot: &mut Option<bool>) {
        match v {
            Value::Null => {}
            Value::Bool(b) => *slot = Some(*b),
            other => self.type_error(kind(other), field, "bool"),
        }
    }

    /// Go's float32: parsed as f64, then refused if it overflows float32.
    pub fn float32(&mut self, field: &str, v: &Value, slot: &mut f32) {
        match v {
            Value::Null => {}
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.abs() <= f32::MAX as f64 => *slot = f as f32,
                _ => self.type_error(&format!("number {n}"), field, "float32"),
            },
            other => self.type_error(kind(other), field, "float32"),
        }
    }

    pub fn uint64(&mut self, field: &str, v: &Value, slot: &mut Option<u64>) {
        match v {
            Value::Null => {}
            Value::Number(n) => match n.as_u64() {
                Some(u) => *slot = Some(u),
                None => self.type_error(&format!("number {n}"), field, "uint64"),
            },
            other => self.type_error(kind(other), field, "uint64"),
        }
    }

    pub fn finish(self) -> Result<(), String> {
        self.first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(body: &str) -> String {
        decode_first(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn empty_and_blank_bodies_are_eof() {
        assert_eq!(err(""), "EOF");
        assert_eq!(err(" \n\t "), "EOF");
    }

    #[test]
    fn truncated_values_are_unexpected_eof() {
        for body in [
            "{",
            r#"{"name":"#,
            r#"{"name":"x"#,
            r#"{"name":"x","#,
            "[1,2",
            "-",
            "1.",
            "tru",
            r#""abc"#,
            r#"{"a":"\u00"#,
        ] {
            assert_eq!(err(body), "unexpected EOF", "{body:?}");
        }
    }

    #[test]
    fn syntax_errors_read_like_go() {
        let cases = [
            (
                "nope",
                "invalid character 'o' in literal null (expecting 'u')",
            ),
            ("x", "invalid character 'x' looking for beginning of value"),
            (
                "{x",
                "invalid character 'x' looking for beginning of object key string",
            ),
            (r#"{"a" 1}"#, "invalid character '1' after object key"),
            (
                r#"{"a":1 2}"#,
                "invalid character '2' after object key:value pair",
            ),
            ("[1 2]", "invalid character '2' after array element"),
            ("{\"a\n\"", r"invalid character '\n' in string literal"),
            (r#""\q""#, "invalid character 'q' in string escape code"),
            (
                r#""\u12x4""#,
                r"invalid character 'x' in \u hexadecimal character escape",
            ),
            ("-x", "invalid character 'x' in numeric literal"),
            (
                "[1.x]",
                "invalid character 'x' after decimal point in numeric literal",
            ),
            (
                "[1ex]",
                "invalid character 'x' in exponent of numeric literal",
            ),
            (
                "[trux]",
                "invalid character 'x' in literal true (expecting 'e')",
            ),
            (
                "{'a':1}",
                r"invalid character '\'' looking for beginning of object key string",
            ),
            (
                "[,]",
                "invalid character ',' looking for beginning of value",
            ),
            (
                "\u{1}",
                r"invalid character '\x01' looking for beginning of value",
            ),
            (
                "{\"a\":1,}",
                "invalid character '}' looking for beginning of object key string",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(err(body), want, "{body:?}");
        }
        assert_eq!(
            decode_first(&[0xff]).unwrap_err(),
            "invalid character 'ÿ' looking for beginning of value"
        );
    }

    #[test]
    fn only_the_first_value_is_read() {
        assert_eq!(
            decode_first(br#"{"name":"a"} trailing garbage {"#).unwrap(),
            json!({"name": "a"})
        );
        assert_eq!(decode_first(b"[1,[2]]]]").unwrap(), json!([1, [2]]));
        assert_eq!(decode_first(b"123abc").unwrap(), json!(123));
        assert_eq!(decode_first(b" true").unwrap(), json!(true));
        assert_eq!(decode_first(b"null}").unwrap(), Value::Null);
        assert_eq!(decode_first(br#""s"x"#).unwrap(), json!("s"));
        assert_eq!(decode_first(b"-0.5e+3 ").unwrap(), json!(-500.0));
    }

    #[test]
    fn invalid_utf8_inside_strings_is_replaced() {
        let v = decode_first(b"{\"name\":\"a\xffb\"}").unwrap();
        assert_eq!(v, json!({"name": "a\u{fffd}b"}));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "[".repeat(100_000);
        assert_eq!(err(&deep), "exceeded max depth");
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(decode_first(ok.as_bytes()).is_ok());
    }

    #[test]
    fn keys_fold_like_go() {
        assert!(key_matches("NAME", "name"));
        assert!(key_matches("ſtream", "stream"));
        assert!(key_matches("\u{212A}ey", "key"));
        assert!(!key_matches("names", "name"));
        assert!(!key_matches("nam", "name"));
    }

    #[test]
    fn struct_fields_report_the_first_type_error_and_keep_going() {
        let mut s = GoStruct::new("Proxy");
        let (mut name, mut enabled) = (String::new(), true);
        s.bool("enabled", &json!("yes"), &mut enabled);
        s.string("name", &json!("p"), &mut name);
        s.string("upstream", &json!(5), &mut String::new());
        assert_eq!(name, "p");
        assert!(enabled);
        assert_eq!(
            s.finish().unwrap_err(),
            "json: cannot unmarshal string into Go struct field Proxy.enabled of type bool"
        );
        let mut s = GoStruct::new("ToxicWrapper");
        let mut tox = 1.0f32;
        s.float32("toxicity", &json!(1e300), &mut tox);
        let e = s.finish().unwrap_err();
        // serde_json prints the number as 1e+300 where Go echoes the input.
        assert!(e.starts_with("json: cannot unmarshal number 1e"), "{e}");
        assert!(
            e.ends_with(" into Go struct field ToxicWrapper.toxicity of type float32"),
            "{e}"
        );
        assert_eq!(tox, 1.0);
        let mut s = GoStruct::new("");
        s.float32("toxicity", &json!(0.5), &mut tox);
        s.string("name", &json!([1]), &mut String::new());
        assert_eq!(tox, 0.5);
        assert_eq!(
            s.finish().unwrap_err(),
            "json: cannot unmarshal array into Go struct field .name of type string"
        );
    }

    #[test]
    fn top_level_type_errors() {
        assert_eq!(
            top_object(&json!([1]), "toxiproxy.Proxy").unwrap_err(),
            "json: cannot unmarshal array into Go value of type toxiproxy.Proxy"
        );
        assert!(top_object(&Value::Null, "x").unwrap().is_none());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Quarters are exact in binary: serde_json's own float parsing is
            // not always exact, and that is not what is tested here.
            (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever arrives, decoding answers (no panic, no hang).
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_first(&body);
        }

        /// Valid JSON decodes to what serde_json reads, whatever follows it.
        #[test]
        fn valid_json_round_trips(v in json_value(), tail in "[ a-z{}\\[\\]]{0,8}") {
            let text = format!("{} {tail}", serde_json::to_string(&v).unwrap());
            prop_assert_eq!(decode_first(text.as_bytes()).unwrap(), v);
        }

        /// Cutting valid JSON short is `unexpected EOF`, never a value.
        #[test]
        fn truncation_is_unexpected_eof(v in json_value(), cut in 1usize..64) {
            let text = serde_json::to_string(&v).unwrap();
            prop_assume!(matches!(v, Value::Object(_) | Value::Array(_) | Value::String(_)));
            let end = text.len().saturating_sub(cut.min(text.len() - 1));
            prop_assume!(text.is_char_boundary(end) && end > 0);
            prop_assert_eq!(decode_first(&text.as_bytes()[..end]).unwrap_err(), "unexpected EOF");
        }
    }
}
