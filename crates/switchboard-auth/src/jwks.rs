//! A JWKS fetched from a URL and kept fresh.
//!
//! The key set is an immutable `Arc` snapshot swapped on each successful fetch, so a
//! verification never waits for a fetch and never holds a lock across one. Fetches happen
//! at three moments, all serialized by one async gate so two never run at once:
//!
//! - at start ([`RemoteJwks::refresh`], awaited by `Authorizer::new`);
//! - every `jwks_refresh_secs` in a background task; while no set was ever loaded, the
//!   task retries sooner, from 1 s doubling up to that interval;
//! - when a token names a `kid` the set lacks ([`RemoteJwks::refresh_for_unknown_kid`]),
//!   at most once per [`UNKNOWN_KID_REFRESH_INTERVAL`]. Callers that arrive while such a
//!   fetch is running wait for it and use its result instead of fetching again.
//!
//! A failed fetch keeps the previous set: a stale key set beats refusing everyone while
//! the identity provider is down.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::Uri;
use parking_lot::RwLock;
use tokio::time::Instant;

use crate::fetch::FetchError;
use crate::fetch::Fetcher;
use crate::keys::{keys_from_jwks, JwksOrigin, KeyFileError, Refused, VerifyKey};

/// Why a refresh left the keys as they were.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RefreshError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Document(#[from] KeyFileError),
    /// The document parsed, but none of its keys is usable (says which and why).
    #[error("{0}")]
    NoUsableKey(String),
}

/// Unknown-`kid` refreshes happen at most this often, so tokens with made-up `kid`s
/// cannot turn the gateway into a load generator against the identity provider.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The first retry delay while the set has never loaded.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The keys as last fetched.
#[derive(Clone, Default)]
pub(crate) struct Snapshot {
    /// Bumped on every successful fetch; lets a waiter see that a fetch happened.
    pub(crate) generation: u64,
    /// `None` until a fetch succeeded.
    pub(crate) keys: Option<Arc<Vec<VerifyKey>>>,
}

pub(crate) struct RemoteJwks {
    uri: Uri,
    fetcher: Fetcher,
    current: RwLock<Snapshot>,
    /// Serializes fetches; holds when the last unknown-`kid` refresh started. An async
    /// mutex because it is held across the fetch on purpose: that is how concurrent
    /// callers share one fetch. In an `Arc` so a fetch task can own its guard.
    gate: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// The refusals of the last fetched set, so a set that keeps a broken key is warned
    /// about when that changes, not on every refresh.
    last_refused: parking_lot::Mutex<Vec<Refused>>,
}

impl RemoteJwks {
    pub(crate) fn new(uri: Uri, fetcher: Fetcher) -> Self {
        Self {
            uri,
            fetcher,
            current: RwLock::new(Snapshot::default()),
            gate: Arc::new(tokio::sync::Mutex::new(None)),
            last_refused: parking_lot::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        self.current.read().clone()
    }

    /// Fetches now (after any fetch already running). Returns the number of usable keys.
    pub(crate) async fn refresh(&self) -> Result<usize, RefreshError> {
        let _gate = self.gate.lock().await;
        self.fetch_and_store().await
    }

    /// Called when a token's `kid` is not in the snapshot of `seen_generation`: fetches
    /// once, unless a fetch finished since that snapshot or an unknown-`kid` fetch
    /// started less than [`UNKNOWN_KID_REFRESH_INTERVAL`] ago. The caller then looks at
    /// the snapshot again.
    pub(crate) async fn refresh_for_unknown_kid(self: &Arc<Self>, seen_generation: u64) {
        let mut last = Arc::clone(&self.gate).lock_owned().await;
        if self.current.read().generation != seen_generation {
            return;
        }
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < UNKNOWN_KID_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(now);
        // The fetch runs in its own task, owning the gate: a caller that gives up (its
        // client went away mid-handshake) must not cancel the fetch the others wait on.
        let this = Arc::clone(self);
        let fetch = tokio::spawn(async move {
            let _gate = last;
            if let Err(e) = this.fetch_and_store().await {
                tracing::warn!(url = %this.uri, error = %e, "JWKS refresh for an unknown kid failed");
            }
        });
        // A panic in the fetch is not this caller's to propagate; it sees the old keys.
        let _ = fetch.await;
    }

    /// The caller holds the gate.
    async fn fetch_and_store(&self) -> Result<usize, RefreshError> {
        let body = self.fetcher.get(&self.uri).await?;
        let set = keys_from_jwks(&body, JwksOrigin::Url)?;
        {
            let mut last = self.last_refused.lock();
            let source = self.uri.to_string();
            set.log_refusals(&source, *last == set.refused);
            last.clone_from(&set.refused);
        }
        if set.keys.is_empty() {
            return Err(RefreshError::NoUsableKey(set.why_none()));
        }
        let count = set.keys.len();
        let skipped = set.refused.len() + set.ignored;
        let mut current = self.current.write();
        current.generation += 1;
        current.keys = Some(Arc::new(set.keys));
        drop(current);
        tracing::debug!(url = %self.uri, keys = count, skipped, "JWKS loaded");
        Ok(count)
    }

    /// Starts the periodic refresh. The task holds only a weak reference and is
    /// aborted when the returned guard drops, so it ends with its authorizer.
    pub(crate) fn spawn_refresher(self: &Arc<Self>, every: Duration) -> AbortOnDrop {
        let weak = Arc::downgrade(self);
        AbortOnDrop(tokio::spawn(refresh_loop(weak, every)))
    }
}

async fn refresh_loop(weak: Weak<RemoteJwks>, every: Duration) {
    let mut retry = FIRST_RETRY.min(every);
    loop {
        let loaded = match weak.upgrade() {
            Some(jwks) => jwks.snapshot().keys.is_some(),
            None => return,
        };
        tokio::time::sleep(if loaded { every } else { retry }).await;
        let Some(jwks) = weak.upgrade() else {
            return;
        };
        match jwks.refresh().await {
            Ok(_) => retry = FIRST_RETRY.min(every),
            Err(e) => {
                if !loaded {
                    retry = (retry * 2).min(every);
                }
                tracing::warn!(url = %jwks.uri, error = %e, "JWKS refresh failed; keeping the previous keys");
            }
        }
    }
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
