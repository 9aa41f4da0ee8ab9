//! The REQUEST authorizer: AWS's Lambda authorizer for WebSocket `$connect`, calling a
//! configured function.
//!
//! The identity sources' values form the cache key (hashed, so a cache entry costs the
//! same whatever the token size). On a miss the function is invoked with
//! `EventKind::Authorize`, which function kinds send as AWS's REQUEST authorizer event
//! (`{"type": "REQUEST", "methodArn", "headers", "queryStringParameters", ...,
//! "requestContext"}`), and answers either AWS's IAM policy form
//!
//! ```json
//! {"principalId": "user-1",
//!  "policyDocument": {"Version": "2012-10-17", "Statement": [
//!    {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:..."}]},
//!  "context": {"plan": "pro", "userId": "u-1", "groups": "admins,beta"}}
//! ```
//!
//! or the simple form `{"isAuthorized": true, "principalId"?: "...", "context": {...}}`.
//! With a policy, the connection is allowed when some statement allows and none denies;
//! `Action` and `Resource` are not evaluated, since the only thing authorized is
//! `$connect` itself. Allows and denies are cached for `cache_ttl_secs`; failures are
//! not, so a function that recovers is asked again at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use switchboard_core::config::{ConfigError, RequestAuthorizerConfig};
use switchboard_core::event::{EventKind, FunctionResponse, Invocation};
use switchboard_functions::Invoker;
use tokio::time::Instant;

use crate::cache::TtlCache;
use crate::source::IdentitySource;
use crate::{AuthError, Failure, Handshake, Identity, Missing, Refusal};

/// Groups taken from `context.groups`, at most.
const MAX_GROUPS: usize = crate::jwt::MAX_GROUPS;

/// What the function decided, as cached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Allow {
        principal_id: String,
        user_id: Option<String>,
        groups: Vec<String>,
        /// Filtered context, `principalId` included.
        context: Map<String, Value>,
    },
    Deny,
}

pub(crate) struct RequestAuthorizer {
    sources: Vec<IdentitySource>,
    invoker: Arc<dyn Invoker>,
    route_key: Arc<str>,
    /// `None` when caching is off.
    cache: Option<parking_lot::Mutex<TtlCache<[u8; 32], Arc<Answer>>>>,
}

impl RequestAuthorizer {
    /// The identity sources, checked: what [`RequestAuthorizer::new`] refuses about the
    /// configuration itself (`switchboard check-config` runs it alone).
    pub(crate) fn sources(
        cfg: &RequestAuthorizerConfig,
    ) -> Result<Vec<IdentitySource>, ConfigError> {
        let sources = cfg
            .identity_sources
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                IdentitySource::parse(spec).map_err(|e| ConfigError {
                    key: format!("authorizer.identity_sources[{i}]"),
                    problem: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sources.is_empty() && cfg.cache_ttl_secs > 0 && cfg.cache_max_entries > 0 {
            // Every connection would share one cache entry: the first answer would
            // decide for everyone.
            return Err(ConfigError {
                key: "authorizer.identity_sources".into(),
                problem: "required while answers are cached (cache_ttl_secs > 0)".into(),
            });
        }
        Ok(sources)
    }

    pub(crate) fn new(
        cfg: &RequestAuthorizerConfig,
        invoker: Option<Arc<dyn Invoker>>,
    ) -> Result<Self, ConfigError> {
        let invoker = invoker.ok_or_else(|| ConfigError {
            key: "authorizer.function".into(),
            problem: format!("no function {:?} to invoke", cfg.function),
        })?;
        let sources = Self::sources(cfg)?;
        let caching = cfg.cache_ttl_secs > 0 && cfg.cache_max_entries > 0;
        Ok(Self {
            sources,
            invoker,
            route_key: Arc::from("$connect"),
            cache: caching.then(|| {
                parking_lot::Mutex::new(TtlCache::new(
                    Duration::from_secs(cfg.cache_ttl_secs),
                    cfg.cache_max_entries,
                ))
            }),
        })
    }

    pub(crate) async fn authorize(&self, hs: &Handshake<'_>) -> Result<Identity, AuthError> {
        let mut key = ring::digest::Context::new(&ring::digest::SHA256);
        for source in &self.sources {
            let value = source
                .value(hs)
                .ok_or(AuthError::MissingIdentity(Missing::IdentitySource))?;
            // Length-prefixed, so no choice of values can collide with another.
            for part in [source.key_name().as_bytes(), value.as_bytes()] {
                key.update(&(part.len() as u64).to_be_bytes());
                key.update(part);
            }
        }
        let key: [u8; 32] = key
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");

        if let Some(cache) = &self.cache {
            if let Some(answer) = cache.lock().get(&key, Instant::now()) {
                return identity(&answer);
            }
        }
        let invocation = Invocation {
            kind: EventKind::Authorize,
            route_key: Arc::clone(&self.route_key),
            connection: Arc::clone(hs.connection),
            request_id: hs.request_id.to_owned(),
            request_time_ms: hs.request_time_ms,
            body: None,
            disconnect: None,
            extension: None,
        };
        let response = self
            .invoker
            .invoke(invocation)
            .await
            .map_err(|e| AuthError::Failed(Failure::Function(e)))?;
        let answer =
            Arc::new(parse_answer(&response).map_err(|e| AuthError::Failed(Failure::Answer(e)))?);
        if let Some(cache) = &self.cache {
            cache
                .lock()
                .insert(key, Arc::clone(&answer), Instant::now());
        }
        identity(&answer)
    }
}

fn identity(answer: &Answer) -> Result<Identity, AuthError> {
    match answer {
        Answer::Deny => Err(AuthError::Denied(Refusal::DeniedByFunction)),
        Answer::Allow {
            principal_id,
            user_id,
            groups,
            context,
        } => Ok(Identity {
            principal_id: principal_id.clone(),
            user_id: user_id.clone(),
            groups: groups.clone(),
            context: context.clone(),
            expires_at: None,
            token_protocol: None,
        }),
    }
}

/// Why the function's answer is unusable (the handshake gets 500: the function's fault,
/// not the client's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The function answered outside 2xx.
    #[error("answered a non-2xx status")]
    NotSuccess,
    /// The answer has no body.
    #[error("empty answer")]
    EmptyAnswer,
    /// The body is not a JSON object.
    #[error("answer is not a JSON object")]
    NotJsonObject,
    /// `isAuthorized` is there but not a boolean.
    #[error("isAuthorized is not a boolean")]
    IsAuthorizedNotBoolean,
    /// `policyDocument` holds no `Statement` object or array.
    #[error("policyDocument has no Statement")]
    NoStatement,
    /// The policy allows but names no principal; AWS fails such an answer as a
    /// configuration error, not a denial.
    #[error("an allowing policy without principalId")]
    AllowWithoutPrincipal,
    /// Neither answer form.
    #[error("answer has neither policyDocument nor isAuthorized")]
    NeitherForm,
}

/// Reads the function's answer (see the module docs).
pub(crate) fn parse_answer(response: &FunctionResponse) -> Result<Answer, AnswerError> {
    if !(200..300).contains(&response.status) {
        return Err(AnswerError::NotSuccess);
    }
    let body = response.body.as_ref().ok_or(AnswerError::EmptyAnswer)?;
    let answer: Map<String, Value> =
        serde_json::from_slice(&body.data).map_err(|_| AnswerError::NotJsonObject)?;
    let principal = answer
        .get("principalId")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let allowed = if let Some(simple) = answer.get("isAuthorized") {
        simple
            .as_bool()
            .ok_or(AnswerError::IsAuthorizedNotBoolean)?
    } else if let Some(policy) = answer.get("policyDocument") {
        let statements = match policy.get("Statement") {
            Some(Value::Array(list)) => list.iter().collect(),
            // IAM accepts a single statement object too.
            Some(one @ Value::Object(_)) => vec![one],
            _ => return Err(AnswerError::NoStatement),
        };
        let effect = |s: &Value| s.get("Effect").and_then(Value::as_str).map(str::to_owned);
        let effects: Vec<_> = statements.iter().filter_map(|s| effect(s)).collect();
        let denied = effects.iter().any(|e| e.eq_ignore_ascii_case("deny"));
        let allowed = effects.iter().any(|e| e.eq_ignore_ascii_case("allow"));
        if allowed && !denied && principal.is_none() {
            return Err(AnswerError::AllowWithoutPrincipal);
        }
        allowed && !denied
    } else {
        return Err(AnswerError::NeitherForm);
    };
    if !allowed {
        return Ok(Answer::Deny);
    }
    let mut context = match answer.get("context") {
        Some(Value::Object(c)) => crate::scalar_context(c.clone()),
        _ => Map::new(),
    };
    let principal_id = principal.unwrap_or_default().to_owned();
    let user_id = match context.get("userId") {
        Some(Value::String(u)) if !u.is_empty() => Some(u.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => (!principal_id.is_empty()).then(|| principal_id.clone()),
    };
    let groups = match context.get("groups") {
        Some(Value::String(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .take(MAX_GROUPS)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    context.insert("principalId".into(), Value::String(principal_id.clone()));
    Ok(Answer::Allow {
        principal_id,
        user_id,
        groups,
        context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;
    use switchboard_core::event::Payload;

    fn answer(raw: &str) -> Result<Answer, AnswerError> {
        parse_answer(&FunctionResponse {
            body: Some(Payload {
                data: Bytes::copy_from_slice(raw.as_bytes()),
                binary: false,
            }),
            ..FunctionResponse::ok()
        })
    }

    fn policy(effects: &[&str]) -> String {
        let statements: Vec<Value> = effects
            .iter()
            .map(|e| json!({"Action": "execute-api:Invoke", "Effect": e, "Resource": "*"}))
            .collect();
        json!({"principalId": "p", "policyDocument": {"Version": "2012-10-17", "Statement": statements}})
            .to_string()
    }

    #[test]
    fn policy_effects() {
        assert!(matches!(
            answer(&policy(&["Allow"])),
            Ok(Answer::Allow { .. })
        ));
        assert!(matches!(
            answer(&policy(&["Deny", "Allow"])),
            Ok(Answer::Deny)
        ));
        assert!(matches!(
            answer(&policy(&["Allow", "deny"])),
            Ok(Answer::Deny)
        ));
        assert!(matches!(answer(&policy(&[])), Ok(Answer::Deny)));
        assert!(matches!(answer(&policy(&["Maybe"])), Ok(Answer::Deny)));
        let single = r#"{"principalId":"p","policyDocument":{"Statement":{"Effect":"Allow"}}}"#;
        assert!(matches!(answer(single), Ok(Answer::Allow { .. })));
        // A denial needs no principal; an allow does.
        assert!(matches!(
            answer(r#"{"policyDocument":{"Statement":[{"Effect":"Deny"}]}}"#),
            Ok(Answer::Deny)
        ));
        assert_eq!(
            answer(r#"{"policyDocument":{"Statement":[{"Effect":"Allow"}]}}"#),
            Err(AnswerError::AllowWithoutPrincipal)
        );
    }

    #[test]
    fn simple_form_and_context() {
        let a = answer(
            r#"{"isAuthorized":true,"context":{"userId":"u-9","groups":" a, b,,c ","n":1.5,
                "ok":false,"obj":{"x":1},"arr":[1],"nil":null,"principalId":"forged"}}"#,
        )
        .unwrap();
        let Answer::Allow {
            principal_id,
            user_id,
            groups,
            context,
        } = a
        else {
            panic!("not allowed");
        };
        assert_eq!(principal_id, "");
        assert_eq!(user_id.as_deref(), Some("u-9"));
        assert_eq!(groups, ["a", "b", "c"]);
        let mut keys: Vec<_> = context.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["groups", "n", "ok", "principalId", "userId"]);
        assert_eq!(context["principalId"], "");
        assert!(matches!(
            answer(r#"{"isAuthorized":false}"#),
            Ok(Answer::Deny)
        ));
        // userId falls back to the principal.
        let Ok(Answer::Allow { user_id, .. }) = answer(&policy(&["Allow"])) else {
            panic!()
        };
        assert_eq!(user_id.as_deref(), Some("p"));
    }

    #[test]
    fn unusable_answers() {
        for (bad, why) in [
            ("", AnswerError::NotJsonObject),
            ("not json", AnswerError::NotJsonObject),
            ("[]", AnswerError::NotJsonObject),
            (r#"{"principalId":"p"}"#, AnswerError::NeitherForm),
            (
                r#"{"isAuthorized":"yes"}"#,
                AnswerError::IsAuthorizedNotBoolean,
            ),
            (
                r#"{"principalId":"p","policyDocument":{}}"#,
                AnswerError::NoStatement,
            ),
        ] {
            assert_eq!(answer(bad), Err(why), "{bad}");
        }
        let no_body = parse_answer(&FunctionResponse::ok());
        assert_eq!(no_body, Err(AnswerError::EmptyAnswer));
        let proxy = parse_answer(&FunctionResponse {
            status: 401,
            ..FunctionResponse::ok()
        });
        assert_eq!(proxy, Err(AnswerError::NotSuccess));
    }
}
