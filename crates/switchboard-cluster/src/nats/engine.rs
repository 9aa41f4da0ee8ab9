//! The backplane's operations ([`Engine`]) on NATS: commands on core subjects, the
//! registry, heartbeats, reaper claims and kept sessions in key-value buckets.

use std::sync::Arc;

use async_nats::jetstream::kv::CreateErrorKind;
use bytes::Bytes;
use futures::StreamExt;

use super::{NatsEngine, CAS_TRIES};
use crate::link::{self, tag_hex, Engine, Fault, Target};
use crate::{CopyGuard, CopyStamp};

impl Engine for NatsEngine {
    const KIND: &'static str = "nats";

    async fn publish(&self, to: Target, payload: Vec<u8>) -> Result<bool, Fault> {
        let subject = match to {
            Target::Node(tag) => self.names.node_subject(tag),
            Target::All => self.names.all.clone(),
        };
        self.client
            .publish(subject, payload.into())
            .await
            .map_err(|e| self.fault(e))?;
        // Core NATS does not say whether anyone listened.
        Ok(true)
    }

    async fn put_snapshots(&self, items: &[(String, Arc<str>)]) -> Result<(), Fault> {
        let me = tag_hex(self.tag);
        let puts = items.iter().map(|(id, json)| {
            self.conns.put(
                format!("{me}.{id}"),
                Bytes::copy_from_slice(json.as_bytes()),
            )
        });
        futures::future::try_join_all(puts)
            .await
            .map(drop)
            .map_err(|e| self.fault(e))
    }

    async fn delete_snapshot(&self, id: &str) -> Result<(), Fault> {
        let key = format!("{}.{id}", tag_hex(self.tag));
        self.purge(&self.conns, &key).await
    }

    async fn snapshot(&self, tag: u32, id: &str) -> Result<Option<String>, Fault> {
        let hex = tag_hex(tag);
        let key = format!("{hex}.{id}");
        let (alive, stored) =
            tokio::try_join!(self.get(&self.alive, &hex), self.get(&self.conns, &key))?;
        Ok(stored
            .filter(|_| alive.is_some())
            .and_then(|b| String::from_utf8(b.to_vec()).ok()))
    }

    async fn heartbeat(&self) -> Result<bool, Fault> {
        let me = tag_hex(self.tag);
        let id = Bytes::from(self.node_id.clone());
        if let Err(e) = self.alive.put(&me, id.clone()).await {
            // Connected but the put failed: the buckets may be gone; make them again.
            let fault = self.fault(e);
            if let Fault::Down(_) = fault {
                return Err(fault);
            }
            self.ensure_buckets().await?;
            self.alive
                .put(&me, id.clone())
                .await
                .map_err(|e| self.fault(e))?;
        }
        match self.nodes.create(&me, id).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.fault(e)),
        }
    }

    async fn registered_nodes(&self) -> Result<Vec<(u32, String)>, Fault> {
        // Subject names only (one request; no consumer per heartbeat), then the few ids.
        let filter = format!("{}>", self.nodes.prefix);
        let mut subjects = self
            .nodes
            .stream
            .info_with_subjects(filter)
            .await
            .map_err(|e| self.fault(e))?;
        let mut tags = Vec::new();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject.map_err(|e| self.fault(e))?;
            if let Some(tag) = subject
                .strip_prefix(self.nodes.prefix.as_str())
                .and_then(link::parse_tag)
            {
                tags.push(tag);
            }
        }
        let mut nodes = Vec::with_capacity(tags.len());
        for tag in tags {
            if let Some(id) = self.get(&self.nodes, &tag_hex(tag)).await? {
                nodes.push((tag, String::from_utf8_lossy(&id).into_owned()));
            }
        }
        Ok(nodes)
    }

    async fn is_alive(&self, tag: u32) -> Result<bool, Fault> {
        Ok(self.get(&self.alive, &tag_hex(tag)).await?.is_some())
    }

    async fn is_registered(&self, tag: u32) -> Result<bool, Fault> {
        Ok(self.get(&self.nodes, &tag_hex(tag)).await?.is_some())
    }

    async fn claim(&self, tag: u32) -> Result<bool, Fault> {
        let id = Bytes::from(self.node_id.clone());
        match self.reap.create(tag_hex(tag), id).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.fault(e)),
        }
    }

    async fn release(&self, tag: u32) -> Result<(), Fault> {
        let hex = tag_hex(tag);
        // Only our own claim (it may have expired and been taken by another reaper).
        // Not atomic, but a claim lasts far longer than the reap it guards.
        if self.get(&self.reap, &hex).await?.as_deref() == Some(self.node_id.as_bytes()) {
            self.purge(&self.reap, &hex).await?;
        }
        Ok(())
    }

    async fn snapshots_of(&self, tag: u32) -> Result<Vec<String>, Fault> {
        let filter = format!("{}.>", tag_hex(tag));
        Ok(self
            .list(&self.conns, &filter)
            .await?
            .into_iter()
            .filter_map(|(_, json)| String::from_utf8(json.to_vec()).ok())
            .collect())
    }

    async fn forget(&self, tag: u32) -> Result<(), Fault> {
        let hex = tag_hex(tag);
        self.purge(&self.conns, &format!("{hex}.>")).await?;
        self.purge(&self.nodes, &hex).await
    }

    async fn stop_heartbeat(&self) -> Result<(), Fault> {
        self.purge(&self.alive, &tag_hex(self.tag)).await
    }

    async fn store_session(
        &self,
        key: &str,
        value: String,
        _ttl_secs: u64,
        guard: CopyGuard,
    ) -> Result<bool, Fault> {
        // The bucket's max_age bounds how long a leaked entry lives (see SESSION_MAX_AGE).
        let value = Bytes::from(value);
        for _ in 0..CAS_TRIES {
            let (revision, current) = self.session_entry(key).await?;
            if !guard.admits(
                current
                    .as_deref()
                    .and_then(CopyStamp::decode)
                    .map(|(s, _)| s),
            ) {
                return Ok(false);
            }
            // Only if nobody changed it since we judged it: else judge again.
            let written = match revision {
                Some(rev) => self.sessions.update(key, value.clone(), rev).await.is_ok(),
                None => self.sessions.create(key, value.clone()).await.is_ok(),
            };
            if written {
                return Ok(true);
            }
            self.session_changed(key, revision).await?;
        }
        Err(self.fault("a kept session's copy kept changing under a store"))
    }

    async fn read_session(&self, key: &str) -> Result<Option<String>, Fault> {
        Ok(self.session_entry(key).await?.1)
    }

    async fn take_session(&self, key: &str, guard: CopyGuard) -> Result<Option<String>, Fault> {
        for _ in 0..CAS_TRIES {
            let (Some(revision), Some(current)) = self.session_entry(key).await? else {
                return Ok(None);
            };
            let stamp = CopyStamp::decode(&current).map(|(s, _)| s);
            if !guard.admits(stamp) {
                return Ok(None);
            }
            // Only if nobody changed or took it since we read it: one of two takers wins.
            if self
                .sessions
                .purge_expect_revision(key, Some(revision))
                .await
                .is_ok()
            {
                // The purge left a marker; remove it (markers are never removed before 2.11).
                self.purge(&self.sessions, key).await?;
                return Ok(Some(current));
            }
            self.session_changed(key, Some(revision)).await?;
        }
        Err(self.fault("a kept session's copy kept changing under a take"))
    }
}
