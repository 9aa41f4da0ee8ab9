//! `kind = "jwt"`: keys from the configuration, the JWKS URL, and the verification flow
//! around the sans-IO checks of [`crate::jwt`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use switchboard_core::config::{ConfigError, JwtConfig, TokenSource};

use crate::jwks::{AbortOnDrop, RemoteJwks};
use crate::jwt::{self, Policy};
use crate::keys::{self, Alg, VerifyKey};
use crate::source::find_token;
use crate::{AuthError, Failure, Handshake, Identity, Missing, Refusal};

/// HS256 secrets shorter than the hash output are weak (RFC 7518 §3.2); they are allowed
/// for local development, with a warning.
const MIN_SECRET_BYTES: usize = 32;

pub(crate) struct JwtAuthorizer {
    sources: Vec<TokenSource>,
    query_param: String,
    protocol_prefix: String,
    policy: Policy,
    /// The secret, the PEM keys and the JWKS file: fixed for the process lifetime.
    static_keys: Vec<VerifyKey>,
    remote: Option<Arc<RemoteJwks>>,
    close_on_expiry: bool,
    /// Ends the background refresh with this authorizer.
    _refresher: Option<AbortOnDrop>,
}

impl JwtAuthorizer {
    /// Checks the configuration, reads the key files and parses the keys; the JWKS URL
    /// is not fetched and nothing is spawned. What [`JwtAuthorizer::new`] refuses, this
    /// refuses (`switchboard check-config` runs it alone).
    pub(crate) fn prepare(cfg: &JwtConfig) -> Result<Self, ConfigError> {
        if cfg.token_sources.is_empty() {
            return Err(bad(
                "authorizer.token_sources",
                "must name at least one source",
            ));
        }
        if cfg.token_sources.contains(&TokenSource::Query) && cfg.query_param.is_empty() {
            return Err(bad("authorizer.query_param", "must not be empty"));
        }
        if cfg.token_sources.contains(&TokenSource::Protocol) && cfg.protocol_prefix.is_empty() {
            // An empty prefix would take the first offered subprotocol, whatever it is,
            // as a token.
            return Err(bad("authorizer.protocol_prefix", "must not be empty"));
        }
        let mut algorithms = Vec::new();
        for name in &cfg.algorithms {
            if name.eq_ignore_ascii_case("none") {
                return Err(bad("authorizer.algorithms", "\"none\" is never accepted"));
            }
            let alg = Alg::from_jose(&name.to_ascii_uppercase()).ok_or_else(|| {
                bad(
                    "authorizer.algorithms",
                    format!("{name:?} is not one of HS256, RS256, ES256"),
                )
            })?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        if algorithms.is_empty() {
            return Err(bad(
                "authorizer.algorithms",
                "must name at least one algorithm",
            ));
        }

        let mut static_keys = Vec::new();
        if let Some(secret) = &cfg.secret {
            if secret.is_empty() {
                return Err(bad("authorizer.secret", "must not be empty"));
            }
            if secret.len() < MIN_SECRET_BYTES {
                tracing::warn!(
                    "authorizer.secret is shorter than {MIN_SECRET_BYTES} bytes; use a longer one outside development"
                );
            }
            static_keys.push(VerifyKey::hmac(secret.as_bytes(), None));
        }
        for (i, path) in cfg.public_keys.iter().enumerate() {
            let key = || format!("authorizer.public_keys[{i}]");
            let pem = read_file(path).map_err(|e| bad(key(), e.to_string()))?;
            let keys = keys::keys_from_pem(&pem)
                .map_err(|e| bad(key(), format!("{}: {e}", path.display())))?;
            static_keys.extend(keys);
        }
        if let Some(path) = &cfg.jwks_file {
            const KEY: &str = "authorizer.jwks_file";
            let doc = read_file(path).map_err(|e| bad(KEY, e.to_string()))?;
            let set = keys::keys_from_jwks(&doc, keys::JwksOrigin::File)
                .map_err(|e| bad(KEY, format!("{}: {e}", path.display())))?;
            if set.keys.is_empty() {
                return Err(bad(KEY, format!("{}: {}", path.display(), set.why_none())));
            }
            set.log_refusals(&path.display().to_string(), false);
            static_keys.extend(set.keys);
        }

        let remote = match &cfg.jwks_url {
            None => None,
            Some(url) => {
                let uri = crate::fetch::parse_url(url)
                    .map_err(|e| bad("authorizer.jwks_url", e.to_string()))?;
                if cfg.jwks_refresh_secs == 0 {
                    return Err(bad("authorizer.jwks_refresh_secs", "must be at least 1"));
                }
                let fetcher = crate::fetch::Fetcher::with_public_roots()
                    .map_err(|e| bad("authorizer.jwks_url", e.to_string()))?;
                Some(Arc::new(RemoteJwks::new(uri, fetcher)))
            }
        };
        if remote.is_none() {
            // Without a JWKS URL the keys are all known now: a configuration that can
            // verify nothing is a mistake worth failing the start for.
            let usable = algorithms
                .iter()
                .any(|&alg| static_keys.iter().any(|k| k.supports(alg)));
            if !usable {
                return Err(bad(
                    "authorizer",
                    "no key for any allowed algorithm; set secret (HS256), public_keys, jwks_file or jwks_url",
                ));
            }
        }

        Ok(Self {
            sources: cfg.token_sources.clone(),
            query_param: cfg.query_param.clone(),
            protocol_prefix: cfg.protocol_prefix.clone(),
            policy: Policy {
                algorithms,
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
                leeway_secs: cfg.leeway_secs,
                user_id_claim: cfg.user_id_claim.clone(),
                groups_claim: cfg.groups_claim.clone(),
            },
            static_keys,
            remote,
            close_on_expiry: cfg.close_on_expiry,
            _refresher: None,
        })
    }

    /// [`JwtAuthorizer::prepare`], then a first fetch of the JWKS URL and its refresh.
    pub(crate) async fn new(cfg: &JwtConfig) -> Result<Self, ConfigError> {
        let mut authorizer = Self::prepare(cfg)?;
        if let Some(remote) = &authorizer.remote {
            // A URL that fails at start is not fatal: the identity provider may come up
            // after the gateway. Until keys load, tokens that need them get 500.
            if let Err(e) = remote.refresh().await {
                tracing::warn!(
                    url = cfg.jwks_url.as_deref().unwrap_or_default(),
                    error = %e,
                    "JWKS not loaded at start; retrying in the background, tokens that need it get 500 until then"
                );
            }
            authorizer._refresher =
                Some(remote.spawn_refresher(Duration::from_secs(cfg.jwks_refresh_secs)));
        }
        Ok(authorizer)
    }

    pub(crate) fn close_on_expiry(&self) -> bool {
        self.close_on_expiry
    }

    pub(crate) async fn authorize(&self, hs: &Handshake<'_>) -> Result<Identity, AuthError> {
        let found = find_token(hs, &self.sources, &self.query_param, &self.protocol_prefix)
            .ok_or(AuthError::MissingIdentity(Missing::NoToken))?;
        let token = jwt::parse(found.token, &self.policy).map_err(AuthError::Denied)?;

        let mut snapshot = self.remote.as_ref().map(|r| r.snapshot());
        let kid_known = {
            let remote_keys = snapshot.as_ref().and_then(|s| s.keys.as_deref());
            jwt::select(&token.header, &self.sets(remote_keys)).1
        };
        if let (false, Some(remote), Some(seen)) = (kid_known, &self.remote, &snapshot) {
            remote.refresh_for_unknown_kid(seen.generation).await;
            snapshot = Some(remote.snapshot());
        }
        let remote_keys = snapshot.as_ref().and_then(|s| s.keys.as_deref());
        let (candidates, _) = jwt::select(&token.header, &self.sets(remote_keys));
        if candidates.is_empty() {
            if self.remote.is_some() && remote_keys.is_none() {
                return Err(AuthError::Failed(Failure::KeysNotLoaded));
            }
            return Err(AuthError::Denied(Refusal::UnknownKey));
        }
        token.verify(candidates).map_err(AuthError::Denied)?;
        let claims = token.claims().map_err(AuthError::Denied)?;
        let expires_at = jwt::check_claims(&claims, &self.policy, SystemTime::now())
            .map_err(AuthError::Denied)?;
        jwt::identity(claims, &self.policy, expires_at, found.protocol).map_err(AuthError::Denied)
    }

    fn sets<'k>(&'k self, remote: Option<&'k Vec<VerifyKey>>) -> [&'k [VerifyKey]; 2] {
        [&self.static_keys, remote.map_or(&[][..], |k| k.as_slice())]
    }
}

fn bad(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

/// Reads a key file. Blocking is acceptable here: it runs once, at start, before the
/// gateway serves. Key files are small; the bound only stops a mistaken path (a device,
/// a log) from being read whole.
fn read_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    const MAX: u64 = 1024 * 1024;
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX {
        return Err(ReadError::TooLarge {
            path: path.to_owned(),
            max: MAX,
        });
    }
    std::fs::read(path).map_err(io)
}

/// A key file that could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{}: larger than {max} bytes", path.display())]
    TooLarge { path: std::path::PathBuf, max: u64 },
}
