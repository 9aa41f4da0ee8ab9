//! Route selection (AWS `routeSelectionExpression`) and the route table.
//!
//! An expression is either `$request.body.<path>` or a template mixing literal text with
//! `${request.body.<path>}` placeholders, e.g. `${request.body.service}/${request.body.action}`.
//! A message whose body is not JSON, or lacks a field the expression reads, selects no key
//! and goes to `$default`. A message is read for the fields the expression names and
//! nothing else: no tree of it is built, so its size and depth cost no memory or stack.

use std::collections::HashMap;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// A dotted path into the JSON body.
    Field(Vec<String>),
}

/// A parsed route selection expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionExpression {
    parts: Vec<Part>,
}

/// Why an expression could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route selection expression: {0}")]
pub struct ExpressionError(&'static str);

fn parse_path(path: &str) -> Result<Vec<String>, ExpressionError> {
    let rest = path
        .strip_prefix("request.body.")
        .ok_or(ExpressionError("fields must start with request.body."))?;
    let segments: Vec<String> = rest.split('.').map(str::to_owned).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(ExpressionError("empty field name"));
    }
    // `$request.body.a/${request.body.b}` or `$request.body.a/$request.body.b` would
    // read one field named `a/${request` (or `a/$request`), which no message has: every
    // message would go to `$default` without a word. Text around fields needs the
    // `${request.body.x}` form.
    if segments.iter().any(|s| s.contains(['$', '{', '}'])) {
        return Err(ExpressionError(
            "field names cannot contain '$', '{' or '}' (mix fields with text as ${request.body.x})",
        ));
    }
    Ok(segments)
}

impl SelectionExpression {
    /// Parses an expression.
    pub fn parse(expr: &str) -> Result<Self, ExpressionError> {
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(ExpressionError("empty"));
        }
        if let Some(path) = expr.strip_prefix('$') {
            if !path.starts_with('{') {
                return Ok(Self {
                    parts: vec![Part::Field(parse_path(path)?)],
                });
            }
        }
        let mut parts = Vec::new();
        let mut rest = expr;
        while !rest.is_empty() {
            match rest.find("${") {
                Some(0) => {
                    let end = rest.find('}').ok_or(ExpressionError("unclosed ${"))?;
                    parts.push(Part::Field(parse_path(&rest[2..end])?));
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    parts.push(Part::Literal(rest[..i].to_owned()));
                    rest = &rest[i..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err(ExpressionError("no ${request.body...} field"));
        }
        Ok(Self { parts })
    }

    /// The route key a message body selects, if any.
    pub fn evaluate(&self, body: &[u8]) -> Option<String> {
        let mut key = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => key.push_str(s),
                Part::Field(path) => key.push_str(&lookup(body, path)?),
            }
        }
        Some(key)
    }
}

/// The text of the scalar at `path` in the JSON document `body`: a string as it is, a
/// number as serde_json prints it, a boolean as `true`/`false`; `None` for anything else,
/// a missing field, or a body that is not one JSON document.
///
/// Read in one pass that keeps only that value: members off the path are skipped by
/// serde_json without recursion or allocation (a byte of scratch per level of nesting),
/// so a message costs neither memory in proportion to its size (a `serde_json::Value`
/// tree cost 16 to 40 times it) nor stack in proportion to its depth. Only the objects
/// along `path` are descended into. Of duplicate keys the last counts.
fn lookup(body: &[u8], path: &[String]) -> Option<String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Lookup { path }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// Finds the value at `path` in the value being read.
struct Lookup<'p> {
    path: &'p [String],
}

impl<'de> serde::de::DeserializeSeed<'de> for Lookup<'_> {
    type Value = Option<String>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Lookup<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self
            .path
            .is_empty()
            .then(|| if v { "true" } else { "false" }.to_owned()))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.path.is_empty().then(|| v.to_string()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.path.is_empty().then(|| v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As `serde_json::Value` prints it (a finite double always is one).
        Ok(self
            .path
            .is_empty()
            .then(|| serde_json::Number::from_f64(v).map(|n| n.to_string()))
            .flatten())
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.path.is_empty().then(|| v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            return Ok(None);
        };
        let mut found = None;
        while let Some(is_it) = map.next_key_seed(KeyIs(first))? {
            if is_it {
                found = map.next_value_seed(Lookup { path: rest })?;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether an object's key is the one looked for, compared where serde_json holds it.
struct KeyIs<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

/// What a message was routed to.
#[derive(Debug, PartialEq, Eq)]
pub struct Selected<'a, T> {
    /// The route key (`$default` when no custom key matched).
    pub key: &'a str,
    /// The route's target.
    pub target: &'a T,
}

/// The route table: `$connect`, `$disconnect`, `$default` and custom keys, each mapped
/// to a target `T` (the function to invoke and how).
#[derive(Debug)]
pub struct RouteTable<T> {
    selection: SelectionExpression,
    custom: HashMap<String, T>,
    default: Option<T>,
    connect: Option<T>,
    disconnect: Option<T>,
}

impl<T> RouteTable<T> {
    /// Builds a table from `(key, target)` pairs.
    pub fn new(
        selection: SelectionExpression,
        routes: impl IntoIterator<Item = (String, T)>,
    ) -> Self {
        let mut table = Self {
            selection,
            custom: HashMap::new(),
            default: None,
            connect: None,
            disconnect: None,
        };
        for (key, target) in routes {
            match key.as_str() {
                "$default" => table.default = Some(target),
                "$connect" => table.connect = Some(target),
                "$disconnect" => table.disconnect = Some(target),
                _ => {
                    table.custom.insert(key, target);
                }
            }
        }
        table
    }

    /// The `$connect` route.
    pub fn connect(&self) -> Option<&T> {
        self.connect.as_ref()
    }

    /// The `$disconnect` route.
    pub fn disconnect(&self) -> Option<&T> {
        self.disconnect.as_ref()
    }

    /// Routes a message. Only text bodies are inspected (binary goes to `$default`), and
    /// the body is parsed only when custom routes exist. `None`: no route and no `$default`.
    pub fn select(&self, body: &[u8], text: bool) -> Option<Selected<'_, T>> {
        if text && !self.custom.is_empty() {
            if let Some(key) = self.selection.evaluate(body) {
                if let Some((k, target)) = self.custom.get_key_value(&key) {
                    return Some(Selected { key: k, target });
                }
            }
        }
        self.default.as_ref().map(|target| Selected {
            key: "$default",
            target,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(expr: &str, keys: &[&str]) -> RouteTable<usize> {
        RouteTable::new(
            SelectionExpression::parse(expr).unwrap(),
            keys.iter().enumerate().map(|(i, k)| (k.to_string(), i)),
        )
    }

    #[test]
    fn exact_match_wins_else_default() {
        let t = table("$request.body.action", &["$default", "send", "join"]);
        assert_eq!(t.select(br#"{"action":"send"}"#, true).unwrap().key, "send");
        assert_eq!(
            t.select(br#"{"action":"nope"}"#, true).unwrap().key,
            "$default"
        );
        assert_eq!(t.select(b"not json", true).unwrap().key, "$default");
        assert_eq!(
            t.select(br#"{"action":"send"}"#, false).unwrap().key,
            "$default"
        );
        assert_eq!(
            t.select(br#"{"action":{"x":1}}"#, true).unwrap().key,
            "$default"
        );
    }

    #[test]
    fn no_default_means_no_route() {
        let t = table("$request.body.action", &["send"]);
        assert!(t.select(br#"{"action":"other"}"#, true).is_none());
    }

    #[test]
    fn nested_paths_and_templates() {
        let t = table(
            "${request.body.service}/${request.body.op.name}",
            &["chat/send"],
        );
        let body = br#"{"service":"chat","op":{"name":"send"}}"#;
        assert_eq!(t.select(body, true).unwrap().key, "chat/send");
        assert!(t.select(br#"{"service":"chat"}"#, true).is_none());
    }

    /// A `$request.body.x` expression followed by more text (another field, either
    /// form) was taken as one field with an odd name, so every message went to
    /// `$default`; it is refused now, naming the template form.
    #[test]
    fn mixed_expression_forms_are_refused() {
        for e in [
            "$request.body.service/${request.body.action}",
            "$request.body.service/$request.body.action",
            "$request.body.action}",
            "${request.body.${request.body.a}}",
            "${request.body.a{b}",
        ] {
            let err = SelectionExpression::parse(e).expect_err(e);
            assert!(err.to_string().contains("${request.body.x}"), "{e}: {err}");
        }
        // Text around a field is fine in the template form, `$` and braces included.
        let t = table(
            "${request.body.service}/${request.body.action}",
            &["chat/send"],
        );
        assert_eq!(
            t.select(br#"{"service":"chat","action":"send"}"#, true)
                .unwrap()
                .key,
            "chat/send"
        );
        let t = table("{$}${request.body.a}}", &["{$}x}"]);
        assert_eq!(t.select(br#"{"a":"x"}"#, true).unwrap().key, "{$}x}");
    }

    /// A message nested 100,000 deep costs no stack: only the objects along the path are
    /// descended into (serde_json refuses a path nested past 127 levels), the rest is
    /// skipped without recursion. So it is routed by its field, on a stack far smaller
    /// than a tokio worker's 2 MiB; unclosed nesting is not JSON and goes to `$default`.
    #[test]
    fn deeply_nested_messages_cost_no_stack() {
        let n = 100_000;
        let bodies: Vec<Vec<u8>> = vec![
            format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes(),
            "[".repeat(n).into_bytes(),
            format!(r#"{{"action":"send","x":{}"#, "[".repeat(n)).into_bytes(),
            format!("{}1{}", r#"{"action":"#.repeat(n), "}".repeat(n)).into_bytes(),
            format!(
                r#"{{"x":{}{},"action":"send"}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
            .into_bytes(),
            format!(
                r#"{{"action":"send","x":{}1{}}}"#,
                r#"{"a":"#.repeat(n),
                "}".repeat(n)
            )
            .into_bytes(),
        ];
        let routed = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                let t = table("$request.body.action", &["$default", "send", "1"]);
                bodies
                    .iter()
                    .map(|b| t.select(b, true).unwrap().key.to_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(
            routed,
            ["$default", "$default", "$default", "$default", "send", "send"]
        );
        // Along the path, serde_json's limit holds: 127 levels are read, 128 are not.
        let path = |levels: usize| format!("$request.body{}", ".a".repeat(levels));
        let body =
            |levels: usize| format!("{}\"k\"{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
        let t = |levels: usize| table(&path(levels), &["$default", "k"]);
        assert_eq!(t(127).select(body(127).as_bytes(), true).unwrap().key, "k");
        assert_eq!(
            t(128).select(body(128).as_bytes(), true).unwrap().key,
            "$default"
        );
    }

    #[test]
    fn bad_expressions() {
        for e in [
            "",
            "$request.header.x",
            "${request.body.a",
            "literal",
            "$request.body.",
        ] {
            assert!(SelectionExpression::parse(e).is_err(), "{e}");
        }
    }
}
