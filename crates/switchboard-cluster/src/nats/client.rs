//! The connection to NATS: the client (reconnecting by itself), this node's two
//! subscriptions, and the key-value buckets, with the helpers the operations share.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::kv::{Operation, Store};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::{Client, ConnectOptions, ServerAddr};
use bytes::Bytes;
use futures::StreamExt;
use switchboard_core::config::ClusterConfig;

use super::{on_event, Names, MAX_RECONNECT_DELAY, SUBSCRIPTION_CAPACITY};
use crate::link::{Fault, Link, Tasks};

pub(crate) struct NatsEngine {
    pub(super) client: Client,
    pub(super) names: Names,
    pub(super) js: jetstream::Context,
    pub(super) alive: Store,
    pub(super) nodes: Store,
    pub(super) conns: Store,
    pub(super) reap: Store,
    pub(super) sessions: Store,
    pub(super) tag: u32,
    pub(super) node_id: String,
    pub(super) ttl: Duration,
}

impl NatsEngine {
    pub(super) async fn open(
        cfg: &ClusterConfig,
        names: Names,
        link: &Arc<Link>,
    ) -> Result<(Self, Tasks), BoxError> {
        // `check_urls` accepted them all.
        let addrs = cfg
            .urls
            .iter()
            .map(|u| u.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        let events = link.clone();
        let client = ConnectOptions::new()
            .name(format!("switchboard {}", link.node_id))
            .connection_timeout(link.op_timeout)
            .request_timeout(Some(link.op_timeout))
            .ping_interval(link.heartbeat)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .reconnect_delay_callback(|attempts| {
                (Duration::from_millis(100) * attempts as u32).min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let link = events.clone();
                async move { on_event(&link, event) }
            })
            .connect(addrs)
            .await?;
        let js = jetstream::ContextBuilder::new()
            .timeout(link.op_timeout)
            .build(client.clone());
        let ttl = Duration::from_secs(link.ttl_secs);
        let mut stores = Vec::with_capacity(5);
        for (name, max_age) in names.buckets(ttl) {
            stores.push(bucket(&js, name, max_age).await?);
        }
        // In the order of `buckets` (fields are evaluated in the order written).
        let mut stores = stores.into_iter();
        let mut next = || stores.next().expect("a store per bucket");
        let engine = Self {
            alive: next(),
            nodes: next(),
            conns: next(),
            reap: next(),
            sessions: next(),
            names,
            client,
            js,
            tag: link.tag,
            node_id: link.node_id.clone(),
            ttl,
        };

        let mut tasks = Tasks::default();
        let mine = [
            (engine.names.node_subject(link.tag), false),
            (engine.names.all.clone(), true),
        ];
        for (subject, via_all) in mine {
            let mut sub = engine
                .client
                .subscribe(subject)
                .await
                .map_err(|e| e.to_string())?;
            let link = link.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    link.deliver(&msg.payload, via_all);
                }
            }));
        }
        // The subscriptions must be at the server before connect returns, or commands
        // sent to this node right after would be lost.
        engine.client.flush().await.map_err(|e| e.to_string())?;
        Ok((engine, tasks))
    }

    /// Classifies an error by the connection: disconnected means down; otherwise the
    /// server answered (or JetStream did not), which says nothing about the link.
    pub(super) fn fault(&self, e: impl std::fmt::Display) -> Fault {
        if self.client.connection_state() == State::Connected {
            Fault::Failed(e.to_string())
        } else {
            Fault::Down(e.to_string())
        }
    }

    /// A kept session's entry: its revision (a delete marker's too, so a store can replace
    /// it) and its value, if it holds one.
    pub(super) async fn session_entry(
        &self,
        key: &str,
    ) -> Result<(Option<u64>, Option<String>), Fault> {
        let Some(entry) = self.sessions.entry(key).await.map_err(|e| self.fault(e))? else {
            return Ok((None, None));
        };
        let value = (entry.operation == Operation::Put)
            .then(|| String::from_utf8_lossy(&entry.value).into_owned());
        Ok((Some(entry.revision).filter(|_| value.is_some()), value))
    }

    /// After a compare-and-set on a kept session failed: `Ok` if the entry changed since
    /// `revision` (judge it again), the failure itself if it did not.
    pub(super) async fn session_changed(
        &self,
        key: &str,
        revision: Option<u64>,
    ) -> Result<(), Fault> {
        let (now, _) = self.session_entry(key).await?;
        if now == revision {
            return Err(self.fault("a kept session's copy could not be written"));
        }
        Ok(())
    }

    pub(super) async fn get(&self, store: &Store, key: &str) -> Result<Option<Bytes>, Fault> {
        store.get(key).await.map_err(|e| self.fault(e))
    }

    /// Removes every message of `subject` (a key, or keys by wildcard) from `store`.
    pub(super) async fn purge(&self, store: &Store, key: &str) -> Result<(), Fault> {
        store
            .stream
            .purge()
            .filter(format!("{}{key}", store.prefix))
            .await
            .map(drop)
            .map_err(|e| self.fault(e))
    }

    /// The current value of every key of `store` matching `filter` (may hold wildcards),
    /// through an ordered consumer (the server drops it 30 s after we stop reading).
    pub(super) async fn list(
        &self,
        store: &Store,
        filter: &str,
    ) -> Result<Vec<(String, Bytes)>, Fault> {
        let consumer = store
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                filter_subject: format!("{}{filter}", store.prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| self.fault(e))?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(|e| self.fault(e))?;
        while let Some(msg) = messages.next().await {
            let msg = msg.map_err(|e| self.fault(e))?;
            let left = msg.info().map_err(|e| self.fault(e))?.pending;
            let marker = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some();
            if !marker {
                if let Some(key) = msg.subject.strip_prefix(store.prefix.as_str()) {
                    out.push((key.to_owned(), msg.payload.clone()));
                }
            }
            if left == 0 {
                break;
            }
        }
        Ok(out)
    }

    /// Creates any bucket that went missing (a server that lost its JetStream store).
    pub(super) async fn ensure_buckets(&self) -> Result<(), Fault> {
        for (name, max_age) in self.names.buckets(self.ttl) {
            bucket(&self.js, name, max_age)
                .await
                .map_err(|e| self.fault(e))?;
        }
        Ok(())
    }
}

/// Opens a bucket, creating it if it does not exist.
///
/// The bucket's stream is created here with the settings async-nats gives a KV bucket
/// (`create_key_value` first reads the account info, which async-nats 0.46 cannot parse
/// from nats-server before 2.10).
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> Result<Store, BucketError> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    let created = js
        .create_stream(stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: StorageType::File,
            num_replicas: 1,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: DiscardPolicy::New,
            ..Default::default()
        })
        .await;
    // On error another node may have created it meanwhile (with its own settings): use that.
    js.get_key_value(name).await.map_err(|e| BucketError {
        name: name.to_owned(),
        source: match created {
            Err(c) => c.into(),
            Ok(_) => e.into(),
        },
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A bucket that could not be opened or created.
#[derive(Debug, thiserror::Error)]
#[error("bucket {name}: {source}")]
struct BucketError {
    name: String,
    source: BoxError,
}
