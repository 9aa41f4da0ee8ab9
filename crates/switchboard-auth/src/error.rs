//! Why a handshake was not authorized, typed, so the HTTP status and body, the metric
//! label and the log reason are each chosen in one place from the variant.
//!
//! Nothing here quotes a token: a reason names what was wrong, never the credential.

use switchboard_functions::InvokeError;

use crate::request::AnswerError;

/// Why a handshake was not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential was presented (401).
    #[error("missing identity: {0}")]
    MissingIdentity(Missing),
    /// The credential was refused (403).
    #[error("denied: {0}")]
    Denied(Refusal),
    /// The authorizer could not decide (500): its function failed or timed out, or the
    /// JWKS has not loaded.
    #[error("authorizer failed: {0}")]
    Failed(Failure),
}

impl AuthError {
    /// The HTTP status the handshake answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingIdentity(_) => 401,
            Self::Denied(_) => 403,
            Self::Failed(_) => 500,
        }
    }

    /// The specific reason, a stable snake_case label (`no_token`, `expired`,
    /// `bad_signature`, `keys_not_loaded`, ...); [`Display`](std::fmt::Display) has the
    /// detail.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingIdentity(m) => m.reason(),
            Self::Denied(r) => r.reason(),
            Self::Failed(f) => f.reason(),
        }
    }

    /// The `reason` label of `switchboard_handshakes_rejected_total`: what a user can act
    /// on, one of [`AuthError::LABELS`]. Several [`reason`](Self::reason)s share a label
    /// (the claims checks, the causes of a failure), so the label set stays small and
    /// fixed; the log line names the exact reason.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingIdentity(_) => "auth_missing",
            Self::Denied(r) => match r {
                Refusal::Malformed => "auth_malformed",
                Refusal::AlgNone => "auth_alg_none",
                Refusal::UnsupportedAlg | Refusal::UnknownKey | Refusal::BadSignature => {
                    "auth_bad_signature"
                }
                Refusal::Expired => "auth_expired",
                Refusal::NotYetValid
                | Refusal::MissingExp
                | Refusal::WrongIssuer
                | Refusal::WrongAudience
                | Refusal::NoSubject => "auth_claims",
                Refusal::DeniedByFunction => "auth_denied",
            },
            Self::Failed(_) => "auth_error",
        }
    }

    /// Every value [`label`](Self::label) takes.
    pub const LABELS: [&'static str; 8] = [
        "auth_missing",
        "auth_malformed",
        "auth_alg_none",
        "auth_bad_signature",
        "auth_expired",
        "auth_claims",
        "auth_denied",
        "auth_error",
    ];

    /// The JSON body the handshake answers with, as API Gateway words it for the
    /// [`status`](Self::status) (`{"message":"Forbidden"}`, ...): the same for every
    /// reason of a status, so it tells a prober nothing the status does not.
    pub fn body(&self) -> &'static str {
        match self {
            Self::MissingIdentity(_) => r#"{"message":"Unauthorized"}"#,
            Self::Denied(_) => r#"{"message":"Forbidden"}"#,
            Self::Failed(_) => r#"{"message":"Internal server error"}"#,
        }
    }
}

/// Why no credential was found (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Missing {
    /// No token in any configured source.
    #[error("no token")]
    NoToken,
    /// A REQUEST identity source is absent or empty.
    #[error("identity source missing")]
    IdentitySource,
}

impl Missing {
    /// A stable snake_case label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NoToken => "no_token",
            Self::IdentitySource => "missing_identity_source",
        }
    }
}

/// Why a credential was refused (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a well-formed JWS, a claim of the wrong type, or a time claim out of range.
    #[error("malformed")]
    Malformed,
    /// `alg` is `none`, in any spelling: refused whatever the configuration says.
    #[error("alg none")]
    AlgNone,
    /// `alg` is unknown, or not among the allowed algorithms.
    #[error("unsupported alg")]
    UnsupportedAlg,
    /// No key for the token's `alg` and `kid`.
    #[error("unknown key")]
    UnknownKey,
    /// No key verified the signature.
    #[error("bad signature")]
    BadSignature,
    /// Past `exp` (plus leeway).
    #[error("expired")]
    Expired,
    /// Before `nbf` (minus leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// The token has no `exp`; tokens that never expire are refused.
    #[error("missing exp")]
    MissingExp,
    /// `iss` differs from the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` holds none of the configured audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// Neither the user id claim nor `sub` gives a principal.
    #[error("no subject")]
    NoSubject,
    /// The REQUEST authorizer function denied.
    #[error("denied by the authorizer function")]
    DeniedByFunction,
}

impl Refusal {
    /// A stable snake_case label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::AlgNone => "alg_none",
            Self::UnsupportedAlg => "unsupported_alg",
            Self::UnknownKey => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::MissingExp => "missing_exp",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::NoSubject => "no_subject",
            Self::DeniedByFunction => "denied_by_function",
        }
    }
}

/// Why the authorizer could not decide (500): the gateway's or the function's fault,
/// not the client's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The JWKS URL has not loaded yet.
    #[error("signing keys not loaded yet")]
    KeysNotLoaded,
    /// The REQUEST authorizer function could not be invoked, failed or timed out.
    #[error("authorizer function: {0}")]
    Function(#[source] InvokeError),
    /// The REQUEST authorizer function answered something that is not an answer.
    #[error("authorizer function: {0}")]
    Answer(#[source] AnswerError),
}

impl Failure {
    /// A stable snake_case label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::KeysNotLoaded => "keys_not_loaded",
            Self::Function(_) => "function_error",
            Self::Answer(_) => "unusable_answer",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every refusal, with its status, label, reason and body. Reasons and labels are
    /// distinct snake_case words, so they read well as log fields and metric label values.
    #[test]
    fn status_label_reason_and_body_follow_the_variant() {
        use AuthError::{Denied, Failed, MissingIdentity};
        let cases = [
            (
                MissingIdentity(Missing::NoToken),
                401,
                "auth_missing",
                "no_token",
            ),
            (
                MissingIdentity(Missing::IdentitySource),
                401,
                "auth_missing",
                "missing_identity_source",
            ),
            (
                Denied(Refusal::Malformed),
                403,
                "auth_malformed",
                "malformed",
            ),
            (Denied(Refusal::AlgNone), 403, "auth_alg_none", "alg_none"),
            (
                Denied(Refusal::UnsupportedAlg),
                403,
                "auth_bad_signature",
                "unsupported_alg",
            ),
            (
                Denied(Refusal::UnknownKey),
                403,
                "auth_bad_signature",
                "unknown_key",
            ),
            (
                Denied(Refusal::BadSignature),
                403,
                "auth_bad_signature",
                "bad_signature",
            ),
            (Denied(Refusal::Expired), 403, "auth_expired", "expired"),
            (
                Denied(Refusal::NotYetValid),
                403,
                "auth_claims",
                "not_yet_valid",
            ),
            (
                Denied(Refusal::MissingExp),
                403,
                "auth_claims",
                "missing_exp",
            ),
            (
                Denied(Refusal::WrongIssuer),
                403,
                "auth_claims",
                "wrong_issuer",
            ),
            (
                Denied(Refusal::WrongAudience),
                403,
                "auth_claims",
                "wrong_audience",
            ),
            (Denied(Refusal::NoSubject), 403, "auth_claims", "no_subject"),
            (
                Denied(Refusal::DeniedByFunction),
                403,
                "auth_denied",
                "denied_by_function",
            ),
            (
                Failed(Failure::KeysNotLoaded),
                500,
                "auth_error",
                "keys_not_loaded",
            ),
            (
                Failed(Failure::Function(InvokeError::Timeout)),
                500,
                "auth_error",
                "function_error",
            ),
            (
                Failed(Failure::Answer(AnswerError::EmptyAnswer)),
                500,
                "auth_error",
                "unusable_answer",
            ),
        ];
        let (mut labels, mut reasons) = (HashSet::new(), HashSet::new());
        let snake = |w: &str| w.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        for (e, status, label, reason) in cases {
            assert_eq!((e.status(), e.label(), e.reason()), (status, label, reason));
            assert!(snake(label) && snake(reason), "{label} {reason}");
            assert!(reasons.insert(reason), "{reason} twice");
            let message = match status {
                401 => "Unauthorized",
                403 => "Forbidden",
                _ => "Internal server error",
            };
            let body: serde_json::Value = serde_json::from_str(e.body()).unwrap();
            assert_eq!(body, serde_json::json!({ "message": message }), "{e:?}");
            assert!(AuthError::LABELS.contains(&label), "{label}");
            labels.insert(label);
        }
        assert_eq!(
            labels.len(),
            AuthError::LABELS.len(),
            "every label is reachable"
        );
        assert_eq!(
            AuthError::Denied(Refusal::Expired).to_string(),
            "denied: expired"
        );
        assert_eq!(
            AuthError::Failed(Failure::Function(InvokeError::Timeout)).to_string(),
            "authorizer failed: authorizer function: function timed out"
        );
    }
}
