//! One node over an engine: its calls, bounded and gated by the link, and its tasks.

use super::tasks::{adopt_leftovers, hello, parse_snapshots, reap, supervise};
use super::*;

/// Background tasks of one node, stopped when the node is dropped.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// Adds a task.
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }

    /// Stops every task and waits until each has (so none is mid-request afterwards).
    async fn stop(mut self) {
        let tasks = std::mem::take(&mut self.0);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One node's backplane over engine `E`: the protocol, shared by the kinds.
pub(crate) struct Node<E: Engine> {
    pub link: Arc<Link>,
    pub engine: Arc<E>,
    /// Taken by `leave`; dropping it (with the node) stops them.
    tasks: Mutex<Tasks>,
}

impl<E: Engine> fmt::Debug for Node<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("link", &self.link).finish()
    }
}

impl<E: Engine> Drop for Node<E> {
    fn drop(&mut self) {
        self.link.closed.store(true, Ordering::Release);
    }
}

impl<E: Engine> Node<E> {
    /// Registers the node (taking over a previous incarnation's leftovers), marks it up
    /// and starts its supervisor and reaper. `tasks` are the engine's own (readers).
    pub async fn start(
        link: Arc<Link>,
        engine: Arc<E>,
        mut tasks: Tasks,
    ) -> Result<Self, ConnectError> {
        let leftovers =
            adopt_leftovers(&link, &*engine)
                .await
                .map_err(|source| ConnectError::Register {
                    backplane: E::KIND,
                    node_id: link.node_id.clone(),
                    source,
                })?;
        link.set_ready(true);
        if !leftovers.is_empty() {
            tracing::info!(
                backplane = E::KIND,
                node = %link.node_id,
                connections = leftovers.len(),
                "taking over the connections of this node's previous run"
            );
            let event = ClusterEvent::NodeLost {
                node_tag: link.tag,
                node_id: link.node_id.clone(),
                connections: parse_snapshots(leftovers),
            };
            // Not awaited here: the gateway may start reading events only after connect.
            let l = link.clone();
            tokio::spawn(async move { l.emit(event).await });
        }
        hello(&link, &*engine).await;
        tasks.push(tokio::spawn(supervise(link.clone(), engine.clone())));
        tasks.push(tokio::spawn(reap(link.clone(), engine.clone())));
        Ok(Self {
            link,
            engine,
            tasks: Mutex::new(tasks),
        })
    }

    /// [`crate::Backplane::to_node`].
    pub async fn to_node(&self, node_tag: u32, command: Command) -> Result<(), BackplaneError> {
        self.link.gate()?;
        let payload = self.link.encode(&command);
        match self
            .link
            .run(
                "publish",
                self.engine.publish(Target::Node(node_tag), payload),
            )
            .await?
        {
            true => Ok(()),
            false => Err(BackplaneError::NotInCluster),
        }
    }

    /// [`crate::Backplane::expect_reply`].
    pub fn expect_reply(&self) -> Result<crate::Pending, BackplaneError> {
        self.link.gate()?;
        let (tx, rx) = oneshot::channel();
        let guard = self.link.expect(Waiter::One(tx))?;
        Ok(crate::Pending {
            req: RequestRef {
                from: self.link.tag,
                id: guard.id,
            },
            rx,
            _guard: Box::new(guard),
        })
    }

    /// [`crate::Backplane::request`]: the publish and the answer share one
    /// `op_timeout`.
    pub async fn request(&self, node_tag: u32, op: Op) -> Result<OpResult, BackplaneError> {
        let deadline = Instant::now() + self.link.op_timeout;
        let pending = self.expect_reply()?;
        let command = Command::Op {
            op,
            req: Some(pending.req()),
        };
        tokio::time::timeout_at(deadline, self.to_node(node_tag, command))
            .await
            .map_err(|_| BackplaneError::Timeout)??;
        pending.answer(deadline).await
    }

    /// [`crate::Backplane::gather`].
    pub async fn gather(&self, op: Op) -> Result<Gathered, BackplaneError> {
        self.link.gate()?;
        let deadline = Instant::now() + self.link.op_timeout;
        let peers = self.link.peers();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let guard = self.link.expect(Waiter::Many(tx))?;
        let req = RequestRef {
            from: self.link.tag,
            id: guard.id,
        };
        let payload = self.link.encode(&Command::Op { op, req: Some(req) });
        tokio::time::timeout_at(
            deadline,
            self.link
                .run("publish", self.engine.publish(Target::All, payload)),
        )
        .await
        .map_err(|_| BackplaneError::Timeout)??;
        let mut out = Gathered {
            replies: Vec::with_capacity(peers.len()),
            expected: u32::try_from(peers.len()).unwrap_or(u32::MAX),
        };
        let mut waiting: std::collections::HashSet<u32> = peers.into_iter().collect();
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((from, result))) => {
                    waiting.remove(&from);
                    out.replies.push((from, result));
                }
                Ok(None) | Err(_) => break,
            }
        }
        drop(guard);
        Ok(out)
    }

    /// [`crate::Backplane::reply`].
    pub async fn reply(&self, to: RequestRef, result: OpResult) -> Result<(), BackplaneError> {
        let command = Command::Reply {
            req: to.id,
            from: self.link.tag,
            result,
        };
        self.to_node(to.from, command).await
    }

    /// [`crate::Backplane::store_session`].
    pub async fn store_session(
        &self,
        key: &str,
        stamp: CopyStamp,
        json: &str,
        ttl_secs: u64,
        guard: CopyGuard,
    ) -> Result<bool, BackplaneError> {
        self.link.gate()?;
        let value = stamp.encode(json);
        self.link
            .run(
                "store session",
                self.engine.store_session(key, value, ttl_secs, guard),
            )
            .await
    }

    /// [`crate::Backplane::read_session`].
    pub async fn read_session(
        &self,
        key: &str,
    ) -> Result<Option<(CopyStamp, String)>, BackplaneError> {
        self.link.gate()?;
        let raw = self
            .link
            .run("read session", self.engine.read_session(key))
            .await?;
        Ok(raw.as_deref().and_then(stamped))
    }

    /// [`crate::Backplane::take_session`].
    pub async fn take_session(
        &self,
        key: &str,
        guard: CopyGuard,
    ) -> Result<Option<(CopyStamp, String)>, BackplaneError> {
        self.link.gate()?;
        let raw = self
            .link
            .run("take session", self.engine.take_session(key, guard))
            .await?;
        Ok(raw.as_deref().and_then(stamped))
    }

    /// [`crate::Backplane::to_all`].
    pub async fn to_all(&self, command: Command) -> Result<(), BackplaneError> {
        self.link.gate()?;
        let payload = self.link.encode(&command);
        self.link
            .run("publish", self.engine.publish(Target::All, payload))
            .await
            .map(|_| ())
    }

    /// [`crate::Backplane::record_connection`]. The mirror is updated even while the
    /// engine is down (the call still fails), and written back when it returns.
    pub async fn record_connection(
        &self,
        id: ConnectionId,
        snapshot: Option<ConnectionSnapshot>,
    ) -> Result<(), BackplaneError> {
        let (id, json) = self.link.remember(id, snapshot.as_ref());
        self.link.gate()?;
        match json {
            Some(json) => {
                self.link
                    .run("record", self.engine.put_snapshots(&[(id, json)]))
                    .await
            }
            None => {
                self.link
                    .run("forget", self.engine.delete_snapshot(&id))
                    .await
            }
        }
    }

    /// [`crate::Backplane::connection`].
    pub async fn connection(
        &self,
        id: ConnectionId,
    ) -> Result<Option<ConnectionSnapshot>, BackplaneError> {
        if id.node_tag() == self.link.tag {
            return Ok(self.link.local_snapshot(&id));
        }
        self.link.gate()?;
        let json = self
            .link
            .run(
                "read",
                self.engine.snapshot(id.node_tag(), id.encode().as_str()),
            )
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Leaves the cluster on purpose: deletes this node's heartbeat, snapshots and
    /// registry entry, so nobody reaps it. Call after closing the connections it held.
    pub async fn leave(&self) -> Result<(), BackplaneError> {
        self.link.gate()?;
        // Stop the supervisor (and everything else) first, or a heartbeat of its would
        // register us again.
        self.link.closed.store(true, Ordering::Release);
        let tasks = std::mem::take(&mut *self.tasks.lock());
        tasks.stop().await;
        // Left: calls fail fast from now on (quietly: no BackplaneDown for a choice).
        self.link.ready.store(false, Ordering::Release);
        self.link
            .run("leave", self.engine.forget(self.link.tag))
            .await?;
        self.link.run("leave", self.engine.stop_heartbeat()).await
    }
}
