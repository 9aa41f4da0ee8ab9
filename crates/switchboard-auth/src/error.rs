//! Why a handshake was not authorized, typed, so the HTTP status, the metric label and
//! the log reason are each chosen in one place from the variant.
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

    /// A short label for metrics: the kind of refusal.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingIdentity(_) => "missing_identity",
            Self::Denied(_) => "denied",
            Self::Failed(_) => "failed",
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
    use super::*;

    /// Labels are snake_case and distinct, so they can become metric label values.
    #[test]
    fn reasons_are_distinct_snake_case_labels() {
        let all = [
            Missing::NoToken.reason(),
            Missing::IdentitySource.reason(),
            Refusal::Malformed.reason(),
            Refusal::AlgNone.reason(),
            Refusal::UnsupportedAlg.reason(),
            Refusal::UnknownKey.reason(),
            Refusal::BadSignature.reason(),
            Refusal::Expired.reason(),
            Refusal::NotYetValid.reason(),
            Refusal::MissingExp.reason(),
            Refusal::WrongIssuer.reason(),
            Refusal::WrongAudience.reason(),
            Refusal::NoSubject.reason(),
            Refusal::DeniedByFunction.reason(),
            Failure::KeysNotLoaded.reason(),
            Failure::Function(InvokeError::Timeout).reason(),
            Failure::Answer(AnswerError::EmptyAnswer).reason(),
        ];
        let mut seen = std::collections::HashSet::new();
        for r in all {
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{r}");
            assert!(seen.insert(r), "{r} twice");
        }
    }

    #[test]
    fn status_label_and_detail_follow_the_variant() {
        let e = AuthError::Denied(Refusal::Expired);
        assert_eq!(
            (e.status(), e.label(), e.reason()),
            (403, "denied", "expired")
        );
        assert_eq!(e.to_string(), "denied: expired");
        let e = AuthError::MissingIdentity(Missing::NoToken);
        assert_eq!(
            (e.status(), e.label(), e.reason()),
            (401, "missing_identity", "no_token")
        );
        let e = AuthError::Failed(Failure::Function(InvokeError::Timeout));
        assert_eq!(
            (e.status(), e.label(), e.reason()),
            (500, "failed", "function_error")
        );
        assert_eq!(
            e.to_string(),
            "authorizer failed: authorizer function: function timed out"
        );
    }
}
