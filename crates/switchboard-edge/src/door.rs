//! `[access]` limits on how much one address or one user may hold: open connections per
//! client address (this node), open connections per user (the cluster), and messages per
//! second per user (this node).
//!
//! The per-address count is a place taken with the connection's [`Slot`](crate::slot::Slot)
//! and given back with it. The per-user count is not kept anywhere: the user's connections
//! are counted in the connection tables of every node (an [`Op::UserConnections`] through
//! the operations layer) when a connection gets its user at the door, so no counter can
//! drift from the connections that really exist, and a node that dies takes its count
//! with it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use switchboard_core::config::OnUserLimit;
use switchboard_core::limit::TokenBucket;
use switchboard_core::ops::{CloseWhy, Op, OpError, Outcome, Target, UserConnection};
use tracing::{debug, info};

use crate::handshake::Reject;
use crate::inner::EdgeInner;
use crate::table::ConnHandle;

/// Open connections per client address on this node (`access.max_connections_per_ip`).
pub(crate) struct IpCounts {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's place under `max_connections_per_ip`, given back on drop.
pub(crate) struct IpPlace {
    counts: Arc<IpCounts>,
    ip: IpAddr,
}

impl IpCounts {
    pub(crate) fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for a connection from `ip`, if it holds fewer than the maximum. The map
    /// holds one entry per address with a connection open, so it is bounded by
    /// `limits.max_connections`.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr) -> Option<IpPlace> {
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpPlace {
            counts: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip`.
    #[cfg(test)]
    pub(crate) fn open(&self, ip: IpAddr) -> u32 {
        self.open.lock().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpPlace {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Messages per second per user on this node (`access.messages_per_sec_per_user`): one
/// token bucket per user, shared by the user's connections here. A connection keeps its
/// user's bucket ([`UserBucket`]) until its user changes, so a message costs one atomic
/// load and the bucket's own lock, not two index lookups.
pub(crate) struct UserRates {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<Arc<str>, UserBucket>>,
}

/// One user's message allowance, shared by the user's connections on this node.
pub(crate) type UserBucket = Arc<Mutex<TokenBucket>>;

impl UserRates {
    /// Users tracked at most. A bucket no connection holds and that is full (its user sent
    /// nothing for `burst / rate` seconds) is forgotten when this many are tracked; if
    /// every one is still in use, a new user's connection gets a bucket of its own,
    /// untracked (the per-connection `limits.messages_per_sec` still applies), rather than
    /// the map growing.
    const MAX_TRACKED: usize = 100_000;

    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `user`'s bucket, created full at `now_ns` if it has none.
    pub(crate) fn bucket(&self, user: &Arc<str>, now_ns: u64) -> UserBucket {
        let mut map = self.buckets.lock();
        if let Some(b) = map.get(user) {
            return b.clone();
        }
        let fresh = Arc::new(Mutex::new(TokenBucket::new(self.rate, self.burst, now_ns)));
        if map.len() >= Self::MAX_TRACKED {
            map.retain(|_, b| Arc::strong_count(b) > 1 || !b.lock().is_full(now_ns));
            if map.len() >= Self::MAX_TRACKED {
                debug!("per-user message rate: too many users tracked, a bucket of its own");
                return fresh;
            }
        }
        map.insert(user.clone(), fresh.clone());
        fresh
    }
}

/// What the per-user connection limit says about a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserLimit {
    /// Within the limit (or no limit, or no user).
    Within,
    /// Over it, under `on_user_limit = "reject"`.
    Refused,
    /// Over it, under `on_user_limit = "close_oldest"`: these are to be closed.
    Evict(Vec<UserConnection>),
}

/// Decides from the user's connections (`count` of them, `older` older than the new one,
/// `oldest` the oldest listed) whether the new connection `me` may stay: under `reject`
/// it may if fewer than `max` are older than it (so of two handshakes that race and see
/// each other, the older one stays), under `close_oldest` it stays and the oldest beyond
/// `max` go.
pub(crate) fn judge(
    max: u32,
    mode: OnUserLimit,
    me: &UserConnection,
    count: u64,
    older: u64,
    oldest: &[UserConnection],
) -> UserLimit {
    let max = u64::from(max);
    match mode {
        OnUserLimit::Reject if older >= max => UserLimit::Refused,
        OnUserLimit::Reject => UserLimit::Within,
        OnUserLimit::CloseOldest if count <= max => UserLimit::Within,
        OnUserLimit::CloseOldest => {
            let excess = (count - max) as usize;
            UserLimit::Evict(
                oldest
                    .iter()
                    .filter(|c| c.id != me.id)
                    .take(excess)
                    .copied()
                    .collect(),
            )
        }
    }
}

impl EdgeInner {
    /// The per-user limit before `$connect`, for a user the authorizer named: counted now
    /// under `reject`, so a refused connection costs no invocation (under `close_oldest`
    /// only once `$connect` accepted, so a refused handshake closes nobody). The user
    /// checked, if one was, or the refusal.
    pub(crate) async fn user_limit_before_connect(
        self: &Arc<Self>,
        handle: &Arc<ConnHandle>,
    ) -> Result<Option<Arc<str>>, Reject> {
        let Some((_, OnUserLimit::Reject)) = self.settings.user_limit else {
            return Ok(None);
        };
        let Some(user) = self.table.user_of(handle.info.id) else {
            return Ok(None);
        };
        match self.check_user_limit(handle).await {
            UserLimit::Refused => Err(Reject::UserLimit),
            _ => Ok(Some(user)),
        }
    }

    /// The per-user limit once `$connect` accepted: for a user `$connect` named (other
    /// than the one `checked` before it), and under `close_oldest` for any user.
    pub(crate) async fn user_limit_after_connect(
        self: &Arc<Self>,
        handle: &Arc<ConnHandle>,
        checked: Option<Arc<str>>,
    ) -> Result<(), Reject> {
        if self.settings.user_limit.is_none() {
            return Ok(());
        }
        let user = self.table.user_of(handle.info.id);
        if user.is_none() || user == checked {
            return Ok(());
        }
        match self.check_user_limit(handle).await {
            UserLimit::Refused => Err(Reject::UserLimit),
            _ => Ok(()),
        }
    }

    /// Applies `access.max_connections_per_user` to a connection in the table with its
    /// user: counts the user's connections on every node (this node's alone when the
    /// backplane is down) and answers whether it may stay. Under `close_oldest` the
    /// oldest beyond the limit are closed here, with 1008.
    pub(crate) async fn check_user_limit(self: &Arc<Self>, handle: &Arc<ConnHandle>) -> UserLimit {
        let Some((max, mode)) = self.settings.user_limit else {
            return UserLimit::Within;
        };
        let Some(user) = self.table.user_of(handle.info.id) else {
            return UserLimit::Within;
        };
        let me = UserConnection {
            connected_at_ms: handle.info.connected_at_ms,
            id: handle.info.id,
        };
        let op = || Op::UserConnections {
            user: user.to_string(),
            oldest: match mode {
                OnUserLimit::Reject => 0,
                OnUserLimit::CloseOldest => Op::MAX_OLDEST,
            },
            rank_of: Some(me),
        };
        let answer = match self.apply_op(op()).await {
            Err(OpError::Unavailable | OpError::Timeout | OpError::Busy) => {
                debug!(conn = %me.id, "per-user limit counted on this node alone: backplane unavailable");
                self.apply_here(&op())
            }
            other => other,
        };
        let Ok(Outcome::UserConnections {
            count,
            older,
            oldest,
            ..
        }) = answer
        else {
            return UserLimit::Within;
        };
        let verdict = judge(max, mode, &me, count, older, &oldest);
        if let UserLimit::Evict(victims) = &verdict {
            let mut closed = 0;
            for v in victims {
                let close = Op::Close {
                    to: Target::Connection { id: v.id },
                    why: CloseWhy::UserLimit,
                };
                // Closed already, or on a node that just went: nothing left to do.
                match self.apply_op(close).await {
                    Ok(_) => closed += 1,
                    Err(e) => {
                        debug!(conn = %v.id, error = %e, "oldest connection of the user not closed")
                    }
                }
            }
            self.metrics.user_limit_closed.inc_by(closed);
            info!(conn = %me.id, %user, closed, "per-user connection limit: oldest closed");
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::id::IdGenerator;

    fn conns(n: usize) -> Vec<UserConnection> {
        let ids = IdGenerator::new("n");
        (0..n)
            .map(|i| UserConnection {
                connected_at_ms: 1000 + i as u64,
                id: ids.connection_id(),
            })
            .collect()
    }

    #[test]
    fn reject_keeps_the_first_max_by_age() {
        let c = conns(3);
        // Two open, the third new: over a limit of 2, under one of 3.
        assert_eq!(
            judge(2, OnUserLimit::Reject, &c[2], 3, 2, &[]),
            UserLimit::Refused
        );
        assert_eq!(
            judge(3, OnUserLimit::Reject, &c[2], 3, 2, &[]),
            UserLimit::Within
        );
        // Two handshakes racing for the last place, each seeing the other: the older
        // stays, the younger is refused.
        assert_eq!(
            judge(2, OnUserLimit::Reject, &c[1], 3, 1, &[]),
            UserLimit::Within
        );
        assert_eq!(
            judge(2, OnUserLimit::Reject, &c[2], 3, 2, &[]),
            UserLimit::Refused
        );
    }

    #[test]
    fn close_oldest_names_the_excess_never_the_new_one() {
        let c = conns(4);
        assert_eq!(
            judge(4, OnUserLimit::CloseOldest, &c[3], 4, 3, &c),
            UserLimit::Within
        );
        assert_eq!(
            judge(3, OnUserLimit::CloseOldest, &c[3], 4, 3, &c),
            UserLimit::Evict(vec![c[0]])
        );
        assert_eq!(
            judge(2, OnUserLimit::CloseOldest, &c[3], 4, 3, &c),
            UserLimit::Evict(vec![c[0], c[1]])
        );
        // The new connection is never its own victim, even when listed among the oldest
        // (a clock that went back).
        assert_eq!(
            judge(1, OnUserLimit::CloseOldest, &c[0], 2, 0, &c[..2]),
            UserLimit::Evict(vec![c[1]])
        );
    }

    #[test]
    fn ip_places_are_counted_and_given_back() {
        let counts = IpCounts::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        let p1 = counts.take(a).unwrap();
        let p2 = counts.take(a).unwrap();
        assert!(counts.take(a).is_none());
        let _p3 = counts.take(b).unwrap();
        assert_eq!((counts.open(a), counts.open(b)), (2, 1));
        drop(p1);
        assert_eq!(counts.open(a), 1);
        let _p4 = counts.take(a).unwrap();
        drop(p2);
        assert_eq!(counts.open(a), 1);
        // No entry is left behind for an address with nothing open.
        drop(_p4);
        assert!(!counts.open.lock().contains_key(&a));
    }

    #[test]
    fn user_rates_share_one_allowance_per_user() {
        let rates = UserRates::new(10, 3);
        let (u, v): (Arc<str>, Arc<str>) = ("u".into(), "v".into());
        let (u1, u2) = (rates.bucket(&u, 0), rates.bucket(&u, 0));
        assert!((0..2).all(|_| u1.lock().try_take(0)));
        assert!(u2.lock().try_take(0));
        assert!(!u1.lock().try_take(0));
        // Another user has its own.
        assert!(rates.bucket(&v, 0).lock().try_take(0));
        // A tenth of a second later: one more for u.
        assert!(u2.lock().try_take(100_000_000));
        assert!(!u1.lock().try_take(100_000_000));
    }
}
