//! Per-route message schemas: a JSON Schema (draft 2020-12 or draft 7, chosen by its
//! `$schema`, 2020-12 when absent) compiled once at start, and the check each message
//! routed to that route passes before its function is invoked.
//!
//! A schema is one self-contained file: `$ref`s resolve inside it only (no HTTP and no
//! file retrieval), so a schema that points elsewhere is refused at start.

use std::path::Path;

use serde_json::Value;

/// At most this many errors are reported to the client for one message: enough to fix
/// a message, bounded so a hostile message cannot make the refusal large.
pub const MAX_ERRORS: usize = 3;

/// A compiled schema.
pub struct MessageSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for MessageSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageSchema")
            .field("draft", &self.validator.draft())
            .finish()
    }
}

/// One reason a message was refused: where in the message (a JSON Pointer, empty for
/// the whole message) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// JSON Pointer into the message (`/text`, `/items/0`; `""` for the whole message).
    pub instance_path: String,
    /// What is wrong.
    pub message: String,
}

impl MessageSchema {
    /// Reads and compiles the schema at `path`. The error says why, for `check-config`
    /// (which names the key and the file).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Compiles a schema from its JSON text.
    pub fn from_slice(text: &[u8]) -> Result<Self, String> {
        let schema: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        let validator = jsonschema::options()
            .build(&schema)
            .map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        Ok(Self { validator })
    }

    /// Whether the message `data` (a text frame's bytes) is JSON that the schema accepts;
    /// if not, the first [`MAX_ERRORS`] reasons. The accepting path builds no error text.
    pub fn check(&self, data: &[u8]) -> Result<(), Vec<SchemaError>> {
        let value: Value = match serde_json::from_slice(data) {
            Ok(v) => v,
            Err(e) => {
                return Err(vec![SchemaError {
                    instance_path: String::new(),
                    message: format!("not JSON: {e}"),
                }])
            }
        };
        if self.validator.is_valid(&value) {
            return Ok(());
        }
        Err(self
            .validator
            .iter_errors(&value)
            .take(MAX_ERRORS)
            .map(|e| SchemaError {
                instance_path: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> MessageSchema {
        MessageSchema::from_slice(
            br#"{
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["action", "text"],
                "properties": {
                    "action": {"const": "send"},
                    "text": {"type": "string", "maxLength": 500}
                },
                "additionalProperties": false
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn a_valid_message_passes() {
        assert_eq!(chat().check(br#"{"action":"send","text":"hi"}"#), Ok(()));
    }

    #[test]
    fn refusals_say_where_and_why() {
        let s = chat();
        let e = s.check(b"{not json").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].instance_path, "");
        assert!(e[0].message.starts_with("not JSON: "), "{e:?}");

        let e = s.check(br#"{"action":"send","text":7}"#).unwrap_err();
        assert_eq!(e[0].instance_path, "/text");
        assert!(e[0].message.contains("string"), "{e:?}");

        let e = s.check(br#"{"action":"send"}"#).unwrap_err();
        assert_eq!(e[0].instance_path, "");
        assert!(e[0].message.contains("\"text\""), "{e:?}");

        let e = s
            .check(br#"{"action":"send","text":"x","extra":1}"#)
            .unwrap_err();
        assert!(e[0].message.contains("extra"), "{e:?}");
    }

    #[test]
    fn at_most_three_errors_are_reported() {
        let s = MessageSchema::from_slice(br#"{"items": {"type": "string"}}"#).unwrap();
        let e = s.check(b"[1, 2, 3, 4, 5, 6]").unwrap_err();
        assert_eq!(e.len(), MAX_ERRORS);
        assert_eq!(e[2].instance_path, "/2");
    }

    #[test]
    fn draft_7_is_read_as_draft_7() {
        // `dependencies` is draft 7's; 2020-12 ignores it.
        let s = MessageSchema::from_slice(
            br#"{"$schema": "http://json-schema.org/draft-07/schema#",
                 "dependencies": {"a": ["b"]}}"#,
        )
        .unwrap();
        assert!(s.check(br#"{"a": 1}"#).is_err());
        assert!(s.check(br#"{"a": 1, "b": 2}"#).is_ok());
    }

    #[test]
    fn bad_schemas_are_refused_with_a_reason() {
        let e = MessageSchema::from_slice(b"{").unwrap_err();
        assert!(e.starts_with("not JSON: "), "{e}");
        let e = MessageSchema::from_slice(br#"{"type": "strin"}"#).unwrap_err();
        assert!(e.starts_with("not a valid JSON Schema: "), "{e}");
        // No retrieval: a schema that refers elsewhere cannot be compiled.
        let e =
            MessageSchema::from_slice(br#"{"$ref": "https://example.com/s.json"}"#).unwrap_err();
        assert!(e.starts_with("not a valid JSON Schema: "), "{e}");
    }
}
