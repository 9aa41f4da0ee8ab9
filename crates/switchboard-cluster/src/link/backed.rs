//! A backplane made of a node: the `Backplane` calls are the node's.

use super::*;

/// A backplane made of a [`Node`] (Redis, NATS): the [`Backplane`] calls are the node's.
pub(crate) trait NodeBacked: Send + Sync + 'static {
    /// The engine under the node.
    type Engine: Engine;
    /// The node.
    fn node(&self) -> &Node<Self::Engine>;
}

impl<T: NodeBacked> Backplane for T {
    fn kind(&self) -> &'static str {
        T::Engine::KIND
    }
    fn is_ready(&self) -> bool {
        self.node().link.is_ready()
    }
    fn to_node(
        &self,
        node_tag: u32,
        command: Command,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().to_node(node_tag, command))
    }
    fn to_all(&self, command: Command) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().to_all(command))
    }
    fn record_connection(
        &self,
        id: ConnectionId,
        snapshot: Option<ConnectionSnapshot>,
    ) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().record_connection(id, snapshot))
    }
    fn connection(
        &self,
        id: ConnectionId,
    ) -> BoxFuture<'_, Result<Option<ConnectionSnapshot>, BackplaneError>> {
        Box::pin(self.node().connection(id))
    }
    fn dropped_commands(&self) -> u64 {
        self.node().link.dropped()
    }
    fn has_peers(&self) -> bool {
        true
    }
    fn peers(&self) -> u32 {
        u32::try_from(self.node().link.peer_count()).unwrap_or(u32::MAX)
    }
    fn keeps_registry(&self) -> bool {
        true
    }
    fn request(&self, node_tag: u32, op: Op) -> BoxFuture<'_, Result<OpResult, BackplaneError>> {
        Box::pin(self.node().request(node_tag, op))
    }
    fn gather(&self, op: Op) -> BoxFuture<'_, Result<Gathered, BackplaneError>> {
        Box::pin(self.node().gather(op))
    }
    fn expect_reply(&self) -> Result<crate::Pending, BackplaneError> {
        self.node().expect_reply()
    }
    fn reply(&self, to: RequestRef, result: OpResult) -> BoxFuture<'_, Result<(), BackplaneError>> {
        Box::pin(self.node().reply(to, result))
    }
    fn store_session(
        &self,
        key: &str,
        stamp: CopyStamp,
        json: String,
        ttl_secs: u64,
        guard: CopyGuard,
    ) -> BoxFuture<'_, Result<bool, BackplaneError>> {
        let key = key.to_owned();
        Box::pin(async move {
            self.node()
                .store_session(&key, stamp, &json, ttl_secs, guard)
                .await
        })
    }
    fn read_session(
        &self,
        key: &str,
    ) -> BoxFuture<'_, Result<Option<(CopyStamp, String)>, BackplaneError>> {
        let key = key.to_owned();
        Box::pin(async move { self.node().read_session(&key).await })
    }
    fn take_session(
        &self,
        key: &str,
        guard: CopyGuard,
    ) -> BoxFuture<'_, Result<Option<(CopyStamp, String)>, BackplaneError>> {
        let key = key.to_owned();
        Box::pin(async move { self.node().take_session(&key, guard).await })
    }
}
