//! Fuzz target: route selection (`core::route`) on generated messages and expressions.
//!
//! Messages are generated as a model tree and rendered as JSON text in many spellings
//! (escaped keys, whitespace, duplicate keys, deep decoy nesting, huge numbers), so the
//! model knows which route each must select: a simple walk down the tree, the last of
//! duplicate keys winning, and `$default` for a field that is not a scalar or a number
//! out of `f64`'s range on the way to it. Damaged messages and arbitrary bytes must select
//! what the former implementation (the whole body parsed into a `serde_json::Value`)
//! selected whenever that one could read them, and nothing when they are not JSON.
//! Expressions are generated from a model of their parts (the `$request.body.x` form and
//! templates with literal text), and also as arbitrary text, which must never panic the
//! parser.

use switchboard_core::route::{RouteTable, SelectionExpression};
use switchboard_fuzz::proptest::collection::vec;
use switchboard_fuzz::proptest::prelude::*;

/// serde_json's recursion limit: a `Value` could not hold a message nested deeper than
/// this (the former implementation sent it to `$default`); skipped decoys may be deeper.
const VALUE_DEPTH: usize = 127;

/// A message as the model sees it.
#[derive(Debug, Clone)]
enum M {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    /// A number written as these digits (beyond `u64`/`i64`, or with a huge exponent):
    /// serde_json reads it as the nearest `f64`, and refuses it when that is infinite.
    Digits(String),
    Str(String),
    Arr(Vec<M>),
    /// Members in order; duplicate keys allowed (the last one counts).
    Obj(Vec<(String, M)>),
    /// `depth` nested arrays around `null`: deep decoys.
    Deep(usize),
}

impl M {
    /// What reading `path` gives: `Err` when a number read on the way (the value at
    /// `path`, or a scalar where an object was expected) is out of `f64`'s range, which
    /// serde_json refuses; else the key text of the value there, if it is a scalar. The
    /// last of duplicate keys counts, but each is read. Whatever is off the path is
    /// skipped unread, however deep or odd.
    fn select(&self, path: &[String]) -> Result<Option<String>, ()> {
        let fits = |d: &str| d.parse::<f64>().is_ok_and(f64::is_finite);
        match (path.split_first(), self) {
            (_, M::Digits(d)) if !fits(d) => Err(()),
            (None, m) => Ok(m.key_text()),
            (Some((first, rest)), M::Obj(members)) => {
                let mut found = None;
                for (k, v) in members {
                    if k == first {
                        found = v.select(rest)?;
                    }
                }
                Ok(found)
            }
            (Some(_), _) => Ok(None),
        }
    }

    /// Makes `path` lead to `value`, appending members, so that earlier members with
    /// the same key stay as decoys the last one overrides.
    fn plant(&mut self, path: &[String], value: M) {
        let Some((first, rest)) = path.split_first() else {
            *self = value;
            return;
        };
        if !matches!(self, M::Obj(_)) {
            *self = M::Obj(Vec::new());
        }
        let M::Obj(members) = self else {
            unreachable!("made an object above")
        };
        match members.iter_mut().rev().find(|(k, _)| k == first) {
            Some((_, v)) if !rest.is_empty() => v.plant(rest, value),
            _ => {
                let mut v = M::Null;
                v.plant(rest, value);
                members.push((first.clone(), v));
            }
        }
    }

    /// The text a scalar contributes to a route key.
    fn key_text(&self) -> Option<String> {
        // A number selects the key its value prints as: integers that fit u64 (or i64,
        // negative) exactly, others as the f64 serde_json reads (which, without its
        // `float_roundtrip` feature, may be one unit in the last place off the nearest
        // f64), in the shortest form that reads back as that f64.
        let float = |text: &str| match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match self {
            M::Str(s) => Some(s.clone()),
            M::Bool(b) => Some(b.to_string()),
            M::Int(i) => Some(i.to_string()),
            M::UInt(u) => Some(u.to_string()),
            M::Float(f) => float(&format!("{f:?}")),
            M::Digits(d) => match (d.parse::<u64>(), d.parse::<i64>()) {
                (Ok(u), _) => Some(u.to_string()),
                (_, Ok(i)) => Some(i.to_string()),
                _ => float(d),
            },
            _ => None,
        }
    }
}

/// How a message is spelled.
#[derive(Debug, Clone, Copy)]
struct Style {
    /// Whitespace between tokens (bit per position kind).
    spaces: u8,
    /// Escape characters of keys and strings as `\uXXXX` (bit mask over characters).
    escapes: u32,
}

fn render(m: &M, style: Style, out: &mut String) {
    let ws = |out: &mut String, bit: u8| {
        if style.spaces >> bit & 1 == 1 {
            out.push_str(if bit.is_multiple_of(2) { " " } else { "\n\t " });
        }
    };
    match m {
        M::Null => out.push_str("null"),
        M::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        M::Int(i) => out.push_str(&i.to_string()),
        M::UInt(u) => out.push_str(&u.to_string()),
        M::Float(f) => out.push_str(&format!("{f:?}")),
        M::Digits(d) => out.push_str(d),
        M::Str(s) => render_str(s, style, out),
        M::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(out, 1);
                render(item, style, out);
                ws(out, 2);
            }
            out.push(']');
        }
        M::Obj(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ws(out, 3);
                render_str(k, style, out);
                ws(out, 4);
                out.push(':');
                ws(out, 5);
                render(v, style, out);
            }
            ws(out, 6);
            out.push('}');
        }
        M::Deep(d) => {
            out.push_str(&"[".repeat(*d));
            out.push_str("null");
            out.push_str(&"]".repeat(*d));
        }
    }
}

fn render_str(s: &str, style: Style, out: &mut String) {
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        let must = matches!(c, '"' | '\\') || (c as u32) < 0x20;
        if must || style.escapes >> (i % 32) & 1 == 1 {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04X}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// The names paths and messages are made of: few, so that lookups hit.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("action".to_owned()),
        Just("a".to_owned()),
        Just("op".to_owned()),
        Just("ü".to_owned()),
        Just("x\"y".to_owned()),
    ]
}

/// Keys of messages: the path names, and decoys no path can name.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        1 => Just(String::new()),
        1 => Just("a.b".to_owned()),
        1 => Just("ACTION".to_owned()),
        1 => any::<String>(),
    ]
}

fn scalar_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => name(),
        1 => Just(String::new()),
        1 => any::<String>(),
        1 => "[\\x00-\\x1f\"\\\\/\u{2028}é🎉a-z]{0,12}",
    ]
}

fn big_digits() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[1-9][0-9]{19,40}",
        "-?[1-9](\\.[0-9]{1,5})?[eE][+-]?[0-9]{1,4}",
    ]
}

fn scalar() -> impl Strategy<Value = M> {
    prop_oneof![
        1 => Just(M::Null),
        1 => any::<bool>().prop_map(M::Bool),
        1 => any::<i64>().prop_map(M::Int),
        1 => any::<u64>().prop_map(M::UInt),
        1 => any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(M::Float),
        1 => big_digits().prop_map(M::Digits),
        4 => scalar_text().prop_map(M::Str),
        1 => prop_oneof![0usize..8, (VALUE_DEPTH - 4)..(VALUE_DEPTH + 4), Just(5000)].prop_map(M::Deep),
    ]
}

fn message() -> impl Strategy<Value = M> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            1 => vec(inner.clone(), 0..4).prop_map(M::Arr),
            4 => vec((key(), inner), 0..6).prop_map(M::Obj),
        ]
    })
}

/// An expression as the model sees it.
#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Field(Vec<String>),
}

fn expression() -> impl Strategy<Value = (Vec<Part>, bool)> {
    let part = prop_oneof![
        2 => vec(name(), 1..4).prop_map(Part::Field),
        1 => "[a-z/:\\-_é$}{|]{1,6}"
            .prop_filter("a literal holds no placeholder", |s| !s.contains("${"))
            .prop_map(Part::Literal),
    ];
    (vec(part, 1..4), any::<bool>()).prop_filter(
        "an expression reads a field; a template does not start with '$' text, \
             and two literals side by side would be one (and might spell `${`)",
        |(parts, _)| {
            parts.iter().any(|p| matches!(p, Part::Field(_)))
                && !matches!(parts.first(), Some(Part::Literal(l)) if l.starts_with('$'))
                && !parts
                    .windows(2)
                    .any(|w| matches!(w, [Part::Literal(_), Part::Literal(_)]))
        },
    )
}

fn render_expression(parts: &[Part], short_form: bool) -> String {
    if let (true, [Part::Field(path)]) = (short_form, parts) {
        return format!("$request.body.{}", path.join("."));
    }
    parts
        .iter()
        .map(|p| match p {
            Part::Literal(l) => l.clone(),
            Part::Field(path) => format!("${{request.body.{}}}", path.join(".")),
        })
        .collect()
}

/// The key the model selects.
fn model_key(parts: &[Part], message: &M) -> Option<String> {
    let mut key = String::new();
    for part in parts {
        match part {
            Part::Literal(l) => key.push_str(l),
            Part::Field(path) => key.push_str(&message.select(path).ok()??),
        }
    }
    Some(key)
}

/// The former implementation: the whole body parsed into a `serde_json::Value` (`None`
/// when it cannot be), then walked.
fn value_key(parts: &[Part], body: &[u8]) -> Option<Option<String>> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut key = String::new();
    for part in parts {
        match part {
            Part::Literal(l) => key.push_str(l),
            Part::Field(path) => {
                let mut v = &json;
                for seg in path {
                    match v.get(seg.as_str()) {
                        Some(inner) => v = inner,
                        None => return Some(None),
                    }
                }
                match v {
                    serde_json::Value::String(s) => key.push_str(s),
                    serde_json::Value::Number(n) => key.push_str(&n.to_string()),
                    serde_json::Value::Bool(b) => key.push_str(if *b { "true" } else { "false" }),
                    _ => return Some(None),
                }
            }
        }
    }
    Some(Some(key))
}

#[derive(Debug, Clone)]
enum Body {
    /// A message of the model, with how it is spelled.
    Model(M, Style),
    /// A model message with its bytes damaged: cut short, or a byte replaced.
    Damaged(M, Style, usize, u8),
    /// Any bytes.
    Bytes(Vec<u8>),
}

fn body() -> impl Strategy<Value = Body> {
    let style = (any::<u8>(), any::<u32>()).prop_map(|(spaces, escapes)| Style {
        spaces,
        escapes: escapes & escapes.rotate_left(7),
    });
    prop_oneof![
        6 => (message(), style.clone()).prop_map(|(m, s)| Body::Model(m, s)),
        1 => (message(), style, any::<usize>(), any::<u8>()).prop_map(|(m, s, at, b)| Body::Damaged(m, s, at, b)),
        1 => vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
    ]
}

fn bytes_of(body: &Body) -> Vec<u8> {
    let text = |m: &M, style: Style| {
        let mut out = String::new();
        render(m, style, &mut out);
        out.into_bytes()
    };
    match body {
        Body::Model(m, style) => text(m, *style),
        Body::Damaged(m, style, at, b) => {
            let mut bytes = text(m, *style);
            if !bytes.is_empty() {
                let at = at % bytes.len();
                if b % 2 == 0 {
                    bytes.truncate(at);
                } else {
                    bytes[at] = *b;
                }
            }
            bytes
        }
        Body::Bytes(b) => b.clone(),
    }
}

#[test]
fn fuzz_core_route_selection() {
    let strategy = (
        expression(),
        body(),
        vec(prop_oneof![name(), "[a-z/]{0,6}"], 0..4),
        any::<bool>(),
        any::<bool>(),
        prop::option::weighted(0.7, vec(scalar(), 1..4)),
    );
    switchboard_fuzz::run(
        "fuzz_core_route_selection",
        30_000,
        strategy,
        |((parts, short_form), mut body, mut custom, with_default, text, plants)| {
            // Most messages carry the fields the expression reads (behind decoys).
            if let (Body::Model(m, _) | Body::Damaged(m, ..), Some(plants)) = (&mut body, plants) {
                let fields = parts.iter().filter_map(|p| match p {
                    Part::Field(path) => Some(path),
                    Part::Literal(_) => None,
                });
                for (path, value) in fields.zip(plants.into_iter().cycle()) {
                    m.plant(path, value);
                }
            }
            let expr_text = render_expression(&parts, short_form);
            let expr = SelectionExpression::parse(&expr_text).map_err(|e| {
                TestCaseError::fail(format!("{expr_text:?} is a valid expression: {e}"))
            })?;
            let bytes = bytes_of(&body);
            let got = expr.evaluate(&bytes);
            let want = match &body {
                Body::Model(m, _) => model_key(&parts, m),
                // Damaged bytes may still be JSON: as the former implementation read them
                // where it could, else nothing unless they are one JSON document (one
                // too deep for a `Value`, or with an odd number off the path).
                Body::Damaged(..) | Body::Bytes(_) => match value_key(&parts, &bytes) {
                    Some(key) => key,
                    None => {
                        if got.is_some() {
                            prop_assert!(
                                serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok(),
                                "a key from a body that is not JSON: {:?}",
                                String::from_utf8_lossy(&bytes)
                            );
                        }
                        got.clone()
                    }
                },
            };
            if let Body::Model(m, _) = &body {
                // Where the former implementation could read the message, it agrees.
                if let Some(key) = value_key(&parts, &bytes) {
                    prop_assert_eq!(&key, &want, "the former implementation on {:?}", m);
                }
            }
            prop_assert_eq!(
                &got,
                &want,
                "{} on {:?}",
                expr_text,
                String::from_utf8_lossy(&bytes)
            );
            // The key the message selects is a route some of the time.
            if let (Some(k), true) = (&want, custom.len() % 2 == 0) {
                custom.push(k.clone());
            }
            let mut routes: Vec<(String, usize)> = custom.into_iter().zip(1..).collect();
            if with_default {
                routes.push(("$default".into(), 0));
            }
            let table = RouteTable::new(expr, routes.clone());
            let selected = table
                .select(&bytes, text)
                .map(|s| (s.key.to_owned(), *s.target));
            let custom_hit = want
                .filter(|_| text)
                .and_then(|k| routes.iter().rev().find(|(r, _)| *r == k).cloned());
            let expected = custom_hit.or_else(|| with_default.then(|| ("$default".to_owned(), 0)));
            prop_assert_eq!(selected, expected);
            Ok(())
        },
    );
}

#[test]
fn fuzz_core_route_expression_text() {
    let text = prop_oneof![
        any::<String>(),
        "[$.{}a-z ]{0,24}",
        "\\$\\{?request\\.body\\.[a-z.${} ]{0,16}\\}?[a-z${}/]{0,8}",
    ];
    switchboard_fuzz::run("fuzz_core_route_expression_text", 400_000, text, |text| {
        if let Ok(expr) = SelectionExpression::parse(&text) {
            // Whatever was accepted reads a field: a message without fields selects nothing.
            prop_assert_eq!(expr.evaluate(b"{}"), None);
            prop_assert_eq!(expr.evaluate(b"not json"), None);
        }
        Ok(())
    });
}
