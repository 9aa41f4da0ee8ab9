//! The node's background work: registering (and adopting a previous run's leftovers),
//! the supervisor (heartbeat, probe, write-back), and the reaper.

use super::*;

pub(super) fn parse_snapshots(items: Vec<String>) -> Vec<ConnectionSnapshot> {
    items
        .into_iter()
        .filter_map(|j| match serde_json::from_str(&j) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an undecodable connection snapshot");
                None
            }
        })
        .collect()
}

/// At start: claims our own tag (waiting a little for a survivor that is reaping a
/// previous incarnation of us), takes whatever snapshots are stored under it, and
/// registers. Returns the previous incarnation's snapshots.
pub(super) async fn adopt_leftovers<E: Engine>(
    link: &Link,
    engine: &E,
) -> Result<Vec<String>, BackplaneError> {
    let deadline = Instant::now() + link.op_timeout * 5;
    let claimed = loop {
        if link.run("claim", engine.claim(link.tag)).await? {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let leftovers = link
        .run_bulk("read leftovers", engine.snapshots_of(link.tag))
        .await?;
    if !leftovers.is_empty() {
        link.run_bulk("forget leftovers", engine.forget(link.tag))
            .await?;
    }
    link.run("heartbeat", engine.heartbeat()).await?;
    if claimed {
        let _ = link.run("release", engine.release(link.tag)).await;
    }
    Ok(leftovers)
}

/// Heartbeats while up; probes while down; writes the snapshots back on the way up.
pub(super) async fn supervise<E: Engine>(link: Arc<Link>, engine: Arc<E>) {
    while !link.is_closed() {
        let pause = if link.is_ready() {
            link.heartbeat
        } else {
            PROBE_INTERVAL.min(link.heartbeat)
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = link.wake.notified() => {}
        }
        let was_ready = link.is_ready();
        let Ok(missing) = link.run("heartbeat", engine.heartbeat()).await else {
            // Even an engine that answers with errors is down for us: without a
            // heartbeat this node would soon be reaped by the others.
            link.set_ready(false);
            ignore_own_wake(&link);
            continue;
        };
        if (!was_ready || missing) && restore(&link, &*engine).await.is_err() {
            ignore_own_wake(&link);
            continue;
        }
        link.set_ready(true);
        if !was_ready || missing {
            // Back (or registered again): the others count us in their gathers at once
            // rather than at their next heartbeat.
            hello(&link, &*engine).await;
        }
    }
}

/// Tells every other node this one is here (best effort: they also see it at their next
/// heartbeat).
pub(super) async fn hello<E: Engine>(link: &Link, engine: &E) {
    let payload = link.encode(&Command::Hello);
    if let Err(e) = link
        .run("hello", engine.publish(Target::All, payload))
        .await
    {
        tracing::debug!(backplane = E::KIND, error = %e, "hello not published");
    }
}

/// Drops the wake-up the supervisor's own failed call left ([`Link::lost`]), so that it
/// probes again after [`PROBE_INTERVAL`] rather than at once: an engine that refuses at
/// once would otherwise be probed in a hot loop (and paused test time never advance).
pub(super) fn ignore_own_wake(link: &Link) {
    use futures::FutureExt;
    let _ = link.wake.notified().now_or_never();
}

/// Writes every snapshot of the mirror to the engine, then deletes those the gateway
/// forgot meanwhile (a delete racing the rewrite must win).
pub(super) async fn restore<E: Engine>(link: &Link, engine: &E) -> Result<(), BackplaneError> {
    let entries = link.mirror_entries();
    if !entries.is_empty() {
        tracing::info!(node = %link.node_id, connections = entries.len(), "writing this node's connection snapshots back");
    }
    for chunk in entries.chunks(RESTORE_CHUNK) {
        let items: Vec<(String, Arc<str>)> = chunk
            .iter()
            .map(|(id, j)| (id.to_string(), j.clone()))
            .collect();
        link.run("restore", engine.put_snapshots(&items)).await?;
    }
    for (id, _) in &entries {
        if !link.holds(id) {
            link.run("restore", engine.delete_snapshot(&id.to_string()))
                .await?;
        }
    }
    Ok(())
}

/// Every `heartbeat_secs`: reaps registered nodes whose heartbeat expired.
pub(super) async fn reap<E: Engine>(link: Arc<Link>, engine: Arc<E>) {
    let mut tick = tokio::time::interval(link.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if link.is_closed() {
            return;
        }
        if !link.is_ready() {
            continue;
        }
        let Ok(nodes) = link.run("list nodes", engine.registered_nodes()).await else {
            continue;
        };
        let mut alive = Vec::with_capacity(nodes.len());
        for (tag, node_id) in nodes {
            if tag == link.tag {
                continue;
            }
            match link.run("check heartbeat", engine.is_alive(tag)).await {
                Ok(true) => alive.push(tag),
                Ok(false) => reap_node(&link, &*engine, tag, node_id).await,
                Err(_) => {}
            }
        }
        *link.peers.lock() = alive;
    }
}

pub(super) async fn reap_node<E: Engine>(link: &Link, engine: &E, tag: u32, node_id: String) {
    if !matches!(link.run("claim", engine.claim(tag)).await, Ok(true)) {
        return;
    }
    let taken = async {
        // Under the claim, look again: another survivor may have finished reaping it
        // between our listing and our claim, or the node may have come back.
        if !link
            .run("check registry", engine.is_registered(tag))
            .await?
            || link.run("check heartbeat", engine.is_alive(tag)).await?
        {
            return Ok(None);
        }
        link.run_bulk("read snapshots", engine.snapshots_of(tag))
            .await
            .map(Some)
    }
    .await;
    if let Ok(Some(snapshots)) = taken {
        tracing::warn!(
            backplane = E::KIND,
            lost = %node_id,
            connections = snapshots.len(),
            "node lost: taking over its connections"
        );
        link.emit(ClusterEvent::NodeLost {
            node_tag: tag,
            node_id,
            connections: parse_snapshots(snapshots),
        })
        .await;
        let _ = link.run_bulk("forget node", engine.forget(tag)).await;
    }
    let _ = link.run("release", engine.release(tag)).await;
}
