//! A function's answer read the way API Gateway reads a Lambda proxy answer
//! ([`parse_proxy_response`]; the rules are in the module docs of `http`).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value};
use switchboard_core::event::{FunctionResponse, Payload};

use crate::InvokeError;

/// Lambda runtimes differ on base64 padding; API Gateway accepts both forms.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A Lambda proxy answer. Fields the gateway does not read yet land in `extra`, so an
/// extension (a field the gateway starts to honour) is one more field here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyResponse {
    status_code: serde_json::Number,
    #[serde(default)]
    headers: Option<Map<String, Value>>,
    #[serde(default)]
    multi_value_headers: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    is_base64_encoded: Option<bool>,
    /// Other top-level fields: switchboard's extensions (`groups`, `userId`, `state`)
    /// are read from here; anything else is ignored.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// Reads a function's answer body the way API Gateway reads a Lambda proxy answer (see
/// the module docs). Shared by every kind whose functions answer in that shape.
pub fn parse_proxy_response(body: Bytes) -> Result<FunctionResponse, InvokeError> {
    if body.is_empty() {
        return Ok(FunctionResponse::ok());
    }
    // Only an object can be a proxy answer; skip the JSON parse for anything else.
    let starts_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if starts_object {
        // The common answer in one pass; duplicate keys (last one wins) take the slow path.
        if let Ok(mut fields) = serde_json::from_slice::<ProxyFields>(&body) {
            return match fields.status_code.take() {
                Some(Value::Number(status_code)) => fields.into_proxy(status_code)?.into_response(),
                _ => Ok(as_is(body)),
            };
        }
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) {
            if object.get("statusCode").is_some_and(Value::is_number) {
                let proxy = ProxyResponse::deserialize(Value::Object(object))
                    .map_err(|_| malformed("has a field of the wrong type"))?;
                return proxy.into_response();
            }
        }
    }
    Ok(as_is(body))
}

/// A body that is not a proxy answer: sent as it came, as text if it is UTF-8.
fn as_is(body: Bytes) -> FunctionResponse {
    let binary = std::str::from_utf8(&body).is_err();
    FunctionResponse {
        body: Some(Payload { data: body, binary }),
        ..FunctionResponse::ok()
    }
}

/// The fields of an answer object the gateway reads, untyped, so that any object without
/// duplicate keys parses; [`ProxyFields::into_proxy`] checks the types.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyFields {
    status_code: Option<Value>,
    headers: Option<Value>,
    multi_value_headers: Option<Value>,
    body: Option<Value>,
    is_base64_encoded: Option<Value>,
    groups: Option<Value>,
    user_id: Option<Value>,
    state: Option<Value>,
}

impl ProxyFields {
    fn into_proxy(self, status_code: serde_json::Number) -> Result<ProxyResponse, InvokeError> {
        let wrong = || malformed("has a field of the wrong type");
        let object = |v: Option<Value>| match v {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(wrong()),
        };
        let mut extra = Map::new();
        for (key, value) in [
            ("groups", self.groups),
            ("userId", self.user_id),
            ("state", self.state),
        ] {
            if let Some(value) = value {
                extra.insert(key.to_owned(), value);
            }
        }
        Ok(ProxyResponse {
            status_code,
            headers: object(self.headers)?,
            multi_value_headers: object(self.multi_value_headers)?,
            body: self.body,
            is_base64_encoded: match self.is_base64_encoded {
                None => None,
                Some(Value::Bool(b)) => Some(b),
                Some(_) => return Err(wrong()),
            },
            extra,
        })
    }
}

fn malformed(what: &'static str) -> InvokeError {
    InvokeError::Failed(["malformed proxy response: ", what].concat())
}

impl ProxyResponse {
    fn into_response(self) -> Result<FunctionResponse, InvokeError> {
        let status = self
            .status_code
            .as_u64()
            .filter(|code| (100..=599).contains(code))
            .and_then(|code| u16::try_from(code).ok())
            .ok_or_else(|| malformed("statusCode is not an HTTP status (100..=599)"))?;

        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in self.headers.unwrap_or_default() {
            if let Some(value) = header_text(value)? {
                set_header(&mut headers, name, value)?;
            }
        }
        for (name, values) in self.multi_value_headers.unwrap_or_default() {
            let last = match values {
                Value::Array(mut values) => values.pop(),
                Value::Null => None,
                _ => return Err(malformed("multiValueHeaders value is not an array")),
            };
            if let Some(value) = last.map(header_text).transpose()?.flatten() {
                set_header(&mut headers, name, value)?;
            }
        }

        let body = match self.body {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) if text.is_empty() => None,
            Some(Value::String(text)) if self.is_base64_encoded == Some(true) => {
                let data = BASE64
                    .decode(text.as_bytes())
                    .map_err(|_| malformed("body is not valid base64"))?;
                (!data.is_empty()).then(|| Payload {
                    data: Bytes::from(data),
                    binary: true,
                })
            }
            Some(Value::String(text)) => Some(Payload {
                data: Bytes::from(text),
                binary: false,
            }),
            Some(other) => Some(Payload {
                data: Bytes::from(serde_json::to_vec(&other).unwrap_or_default()),
                binary: false,
            }),
        };

        Ok(FunctionResponse {
            status,
            headers,
            body,
            extension: switchboard_core::event::ResponseExtension::from_json(&self.extra),
        })
    }
}

/// A header value as text: numbers and booleans as written (runtimes emit
/// `"Content-Length": 5`), `null` as absent.
fn header_text(value: Value) -> Result<Option<String>, InvokeError> {
    match value {
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(if b { "true" } else { "false" }.to_owned())),
        Value::Null => Ok(None),
        Value::Array(_) | Value::Object(_) => Err(malformed("header value is not a string")),
    }
}

/// Sets a header, replacing one of the same name in any case. Invalid names or values
/// (a CR or LF would split the handshake response) fail the answer, as API Gateway does.
fn set_header(
    headers: &mut Vec<(String, String)>,
    name: String,
    value: String,
) -> Result<(), InvokeError> {
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(malformed("invalid header name"));
    }
    if HeaderValue::from_bytes(value.as_bytes()).is_err() {
        return Err(malformed("invalid header value"));
    }
    match headers
        .iter_mut()
        .find(|(existing, _)| existing.eq_ignore_ascii_case(&name))
    {
        Some(slot) => slot.1 = value,
        None => headers.push((name, value)),
    }
    Ok(())
}
