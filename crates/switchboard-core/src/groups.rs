//! Groups and users: which connections are in which group, and whose they are.
//!
//! One index holds both directions (group → members, connection → groups and user) so a
//! connection's memberships end together with it in one call. A connection is registered
//! with a value (the edge's connection handle) and joins only while registered, so a
//! member that was removed is never handed out again. Each group and user keeps its
//! members ordered by id, so a listing can be paged with a stable cursor, and a shared
//! snapshot of their values, built on the first fan-out after a change, so a fan-out does
//! no per-member lookup. The caller owns the lock around it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

/// Why a membership change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The group name is empty, too long, or has control characters.
    #[error("invalid group name (1-128 bytes, no control characters)")]
    InvalidGroup,
    /// The user id is empty, too long, or has control characters.
    #[error("invalid user id (1-128 bytes, no control characters)")]
    InvalidUser,
    /// The connection is already in the maximum number of groups.
    #[error("connection is in too many groups (limit {0})")]
    TooManyGroups(usize),
    /// The connection is not registered here (it closed, or another node holds it).
    #[error("connection not held here")]
    NotHeld,
}

/// Checks a group name or user id.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.chars().any(char::is_control)
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    groups: Vec<Arc<str>>,
    user: Option<Arc<str>>,
}

/// The members of one group (or the connections of one user).
#[derive(Debug)]
struct Members<Id, V> {
    by_id: BTreeMap<Id, V>,
    /// Every value of `by_id`, in its order: built by the first fan-out after a change and
    /// shared by every fan-out until the next one, which drops it.
    snapshot: OnceLock<Arc<[V]>>,
}

impl<Id: Ord + Copy, V: Clone> Members<Id, V> {
    fn new() -> Self {
        Self {
            by_id: BTreeMap::new(),
            snapshot: OnceLock::new(),
        }
    }

    fn insert(&mut self, id: Id, value: V) {
        self.by_id.insert(id, value);
        self.snapshot = OnceLock::new();
    }

    fn remove(&mut self, id: &Id) {
        if self.by_id.remove(id).is_some() {
            self.snapshot = OnceLock::new();
        }
    }

    fn snapshot(&self) -> Arc<[V]> {
        self.snapshot
            .get_or_init(|| self.by_id.values().cloned().collect())
            .clone()
    }
}

/// Removes `id` from the set `name` of `sets`, and the set once it is empty.
fn remove_from<Id: Ord + Copy, V: Clone>(
    sets: &mut HashMap<Arc<str>, Members<Id, V>>,
    name: &str,
    id: &Id,
) {
    if let Some(members) = sets.get_mut(name) {
        members.remove(id);
        if members.by_id.is_empty() {
            sets.remove(name);
        }
    }
}

/// The membership index for one node: connection ids `Id`, each registered with a value
/// `V` that fan-outs get back (cheap to clone: an `Arc`).
#[derive(Debug)]
pub struct Membership<Id: Ord + Copy + std::hash::Hash, V: Clone> {
    max_groups_per_connection: usize,
    groups: HashMap<Arc<str>, Members<Id, V>>,
    users: HashMap<Arc<str>, Members<Id, V>>,
    connections: HashMap<Id, Entry<V>>,
}

impl<Id: Ord + Copy + std::hash::Hash, V: Clone> Membership<Id, V> {
    /// An empty index allowing each connection `max_groups_per_connection` groups.
    pub fn new(max_groups_per_connection: usize) -> Self {
        Self {
            max_groups_per_connection,
            groups: HashMap::new(),
            users: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// Registers a connection, which may then join groups and get a user. Registering an
    /// id again replaces its value everywhere and keeps its memberships.
    pub fn add_connection(&mut self, id: Id, value: V) {
        let Some(entry) = self.connections.get_mut(&id) else {
            self.connections.insert(
                id,
                Entry {
                    value,
                    groups: Vec::new(),
                    user: None,
                },
            );
            return;
        };
        entry.value = value.clone();
        for g in &entry.groups {
            if let Some(members) = self.groups.get_mut(g) {
                members.insert(id, value.clone());
            }
        }
        if let Some(members) = entry.user.as_ref().and_then(|u| self.users.get_mut(u)) {
            members.insert(id, value);
        }
    }

    /// Adds `id` to `group`. `Ok(false)`: it already was a member.
    pub fn join(&mut self, id: Id, group: &str) -> Result<bool, MembershipError> {
        if !valid_name(group) {
            return Err(MembershipError::InvalidGroup);
        }
        let entry = self
            .connections
            .get_mut(&id)
            .ok_or(MembershipError::NotHeld)?;
        if entry.groups.iter().any(|g| &**g == group) {
            return Ok(false);
        }
        if entry.groups.len() >= self.max_groups_per_connection {
            return Err(MembershipError::TooManyGroups(
                self.max_groups_per_connection,
            ));
        }
        let name: Arc<str> = match self.groups.get_key_value(group) {
            Some((k, _)) => k.clone(),
            None => Arc::from(group),
        };
        entry.groups.push(name.clone());
        self.groups
            .entry(name)
            .or_insert_with(Members::new)
            .insert(id, entry.value.clone());
        Ok(true)
    }

    /// Removes `id` from `group`. Returns whether it was a member.
    pub fn leave(&mut self, id: Id, group: &str) -> bool {
        let Some(entry) = self.connections.get_mut(&id) else {
            return false;
        };
        let Some(pos) = entry.groups.iter().position(|g| &**g == group) else {
            return false;
        };
        entry.groups.swap_remove(pos);
        remove_from(&mut self.groups, group, &id);
        true
    }

    /// Sets (or clears) the connection's user.
    pub fn set_user(&mut self, id: Id, user: Option<&str>) -> Result<(), MembershipError> {
        if user.is_some_and(|u| !valid_name(u)) {
            return Err(MembershipError::InvalidUser);
        }
        let entry = self
            .connections
            .get_mut(&id)
            .ok_or(MembershipError::NotHeld)?;
        if entry.user.as_deref() == user {
            return Ok(());
        }
        if let Some(old) = entry.user.take() {
            remove_from(&mut self.users, &old, &id);
        }
        if let Some(u) = user {
            let name: Arc<str> = match self.users.get_key_value(u) {
                Some((k, _)) => k.clone(),
                None => Arc::from(u),
            };
            entry.user = Some(name.clone());
            self.users
                .entry(name)
                .or_insert_with(Members::new)
                .insert(id, entry.value.clone());
        }
        Ok(())
    }

    /// Forgets a connection: its registration, every group and its user.
    pub fn remove_connection(&mut self, id: Id) {
        let Some(entry) = self.connections.remove(&id) else {
            return;
        };
        for g in entry.groups {
            remove_from(&mut self.groups, &g, &id);
        }
        if let Some(u) = entry.user {
            remove_from(&mut self.users, &u, &id);
        }
    }

    /// The members of a group.
    pub fn members(&self, group: &str) -> impl Iterator<Item = Id> + '_ {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|m| m.by_id.keys())
            .copied()
    }

    /// The values of a group's members, in id order, shared: no per-member work unless
    /// the group changed since the last call.
    pub fn group_values(&self, group: &str) -> Option<Arc<[V]>> {
        self.groups.get(group).map(Members::snapshot)
    }

    /// Whether `id` is a member of `group`.
    pub fn is_member(&self, group: &str, id: &Id) -> bool {
        self.groups
            .get(group)
            .is_some_and(|m| m.by_id.contains_key(id))
    }

    /// How many members a group has.
    pub fn group_len(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, |m| m.by_id.len())
    }

    /// Up to `limit` members after `after` (exclusive), in a stable order.
    pub fn page(&self, group: &str, after: Option<Id>, limit: usize) -> Vec<Id> {
        let Some(members) = self.groups.get(group) else {
            return Vec::new();
        };
        match after {
            Some(a) => members
                .by_id
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                .take(limit)
                .map(|(id, _)| *id)
                .collect(),
            None => members.by_id.keys().take(limit).copied().collect(),
        }
    }

    /// The connections of a user.
    pub fn user_connections(&self, user: &str) -> impl Iterator<Item = Id> + '_ {
        self.users
            .get(user)
            .into_iter()
            .flat_map(|m| m.by_id.keys())
            .copied()
    }

    /// The values of a user's connections, in id order, shared like
    /// [`group_values`](Self::group_values).
    pub fn user_values(&self, user: &str) -> Option<Arc<[V]>> {
        self.users.get(user).map(Members::snapshot)
    }

    /// The values of a user's connections, in id order, without building the snapshot a
    /// fan-out shares (for a count that would otherwise rebuild it after every change).
    pub fn user_values_iter(&self, user: &str) -> impl Iterator<Item = &V> {
        self.users
            .get(user)
            .into_iter()
            .flat_map(|m| m.by_id.values())
    }

    /// The groups of a connection.
    pub fn groups_of(&self, id: Id) -> Vec<Arc<str>> {
        self.connections
            .get(&id)
            .map(|e| e.groups.clone())
            .unwrap_or_default()
    }

    /// The user of a connection.
    pub fn user_of(&self, id: Id) -> Option<Arc<str>> {
        self.connections.get(&id).and_then(|e| e.user.clone())
    }

    /// Number of groups with at least one member.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }
}

/// Whether `name` matches a pattern: exact, or a prefix ending in `*` (`room:*`).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index where connection `i` is registered with the value `i * 10`.
    fn index(max_groups: usize, ids: impl IntoIterator<Item = u32>) -> Membership<u32, u32> {
        let mut m = Membership::new(max_groups);
        for i in ids {
            m.add_connection(i, i * 10);
        }
        m
    }

    fn values(v: Option<Arc<[u32]>>) -> Vec<u32> {
        v.map(|v| v.to_vec()).unwrap_or_default()
    }

    #[test]
    fn join_leave_and_cleanup() {
        let mut m = index(2, [1, 2, 3]);
        assert_eq!(m.join(1, "a"), Ok(true));
        assert_eq!(m.join(1, "a"), Ok(false));
        assert_eq!(m.join(2, "a"), Ok(true));
        assert_eq!(m.join(1, "b"), Ok(true));
        assert_eq!(m.join(1, "c"), Err(MembershipError::TooManyGroups(2)));
        assert_eq!(m.join(1, ""), Err(MembershipError::InvalidGroup));
        assert_eq!(m.join(1, "bad\nname"), Err(MembershipError::InvalidGroup));
        assert_eq!(m.members("a").collect::<Vec<_>>(), [1, 2]);
        assert_eq!(values(m.group_values("a")), [10, 20]);
        assert!(m.leave(1, "a"));
        assert!(!m.leave(1, "a"));
        assert_eq!(m.members("a").collect::<Vec<_>>(), [2]);
        assert_eq!(values(m.group_values("a")), [20]);
        m.set_user(2, Some("ada")).unwrap();
        m.set_user(3, Some("ada")).unwrap();
        assert_eq!(m.user_connections("ada").collect::<Vec<_>>(), [2, 3]);
        assert_eq!(values(m.user_values("ada")), [20, 30]);
        m.remove_connection(2);
        assert_eq!(m.group_len("a"), 0);
        assert!(m.group_values("a").is_none());
        assert_eq!(m.group_count(), 1, "empty groups disappear");
        assert_eq!(m.user_connections("ada").collect::<Vec<_>>(), [3]);
        assert_eq!(values(m.user_values("ada")), [30]);
        m.set_user(3, None).unwrap();
        assert_eq!(m.user_connections("ada").count(), 0);
        assert!(m.user_values("ada").is_none());
        assert!(m.user_of(3).is_none());
    }

    #[test]
    fn a_removed_connection_cannot_join_again() {
        let mut m = index(4, [1, 2]);
        m.join(1, "g").unwrap();
        m.set_user(1, Some("ada")).unwrap();
        m.remove_connection(1);
        // A join or user racing the close arrives after it: refused, not a dead member.
        assert_eq!(m.join(1, "g"), Err(MembershipError::NotHeld));
        assert_eq!(m.set_user(1, Some("ada")), Err(MembershipError::NotHeld));
        assert!(m.group_values("g").is_none());
        assert!(m.user_values("ada").is_none());
        assert!(m.groups_of(1).is_empty());
        assert!(!m.leave(1, "g"));
        // Never registered (another node's connection): the same.
        assert_eq!(m.join(7, "g"), Err(MembershipError::NotHeld));
        assert_eq!(m.join(2, "g"), Ok(true));
        assert_eq!(values(m.group_values("g")), [20]);
    }

    #[test]
    fn registering_again_replaces_the_value_and_keeps_the_memberships() {
        let mut m = index(4, [1, 2]);
        m.join(1, "g").unwrap();
        m.join(2, "g").unwrap();
        m.set_user(1, Some("ada")).unwrap();
        assert_eq!(values(m.group_values("g")), [10, 20]);
        m.add_connection(1, 11);
        assert_eq!(values(m.group_values("g")), [11, 20]);
        assert_eq!(values(m.user_values("ada")), [11]);
        assert_eq!(m.groups_of(1).len(), 1);
    }

    #[test]
    fn snapshots_follow_every_change() {
        // Random joins, leaves, users, closes and re-registrations over a few ids, checked
        // after each step against a model kept beside it.
        use std::collections::BTreeSet;
        let mut m = Membership::<u32, u32>::new(3);
        let mut live: HashMap<u32, u32> = HashMap::new();
        let mut groups: HashMap<u32, BTreeSet<u32>> = HashMap::new();
        let mut users: HashMap<u32, u32> = HashMap::new();
        let names = ["g0", "g1", "g2", "g3"];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as u32
        };
        for step in 0..20_000 {
            let id = next(8);
            let g = next(4);
            match next(6) {
                0 => {
                    let v = id * 100 + next(100);
                    m.add_connection(id, v);
                    live.insert(id, v);
                }
                1 => {
                    m.remove_connection(id);
                    live.remove(&id);
                    users.remove(&id);
                    for members in groups.values_mut() {
                        members.remove(&id);
                    }
                }
                2 | 3 => {
                    let mine = groups.values().filter(|s| s.contains(&id)).count();
                    let expect = match live.contains_key(&id) {
                        false => Err(MembershipError::NotHeld),
                        true if groups.entry(g).or_default().contains(&id) => Ok(false),
                        true if mine >= 3 => Err(MembershipError::TooManyGroups(3)),
                        true => Ok(true),
                    };
                    if expect == Ok(true) {
                        groups.entry(g).or_default().insert(id);
                    }
                    assert_eq!(m.join(id, names[g as usize]), expect, "step {step}");
                }
                4 => {
                    let was = groups.entry(g).or_default().remove(&id);
                    assert_eq!(m.leave(id, names[g as usize]), was, "step {step}");
                }
                _ => {
                    let user = (next(2) == 0).then_some(g);
                    let got = m.set_user(id, user.map(|u| names[u as usize]));
                    if live.contains_key(&id) {
                        assert_eq!(got, Ok(()));
                        match user {
                            Some(u) => users.insert(id, u),
                            None => users.remove(&id),
                        };
                    } else {
                        assert_eq!(got, Err(MembershipError::NotHeld));
                    }
                }
            }
            for (g, name) in names.iter().enumerate() {
                let ids: Vec<u32> = groups
                    .get(&(g as u32))
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default();
                let want: Vec<u32> = ids.iter().map(|id| live[id]).collect();
                assert_eq!(values(m.group_values(name)), want, "step {step} {name}");
                assert_eq!(m.members(name).collect::<Vec<_>>(), ids);
                let mut of_user: Vec<u32> = users
                    .iter()
                    .filter(|(_, u)| **u == g as u32)
                    .map(|(id, _)| *id)
                    .collect();
                of_user.sort();
                let want: Vec<u32> = of_user.iter().map(|id| live[id]).collect();
                assert_eq!(values(m.user_values(name)), want, "step {step} user {name}");
            }
        }
    }

    #[test]
    fn paging_is_stable_and_complete() {
        let mut m = index(4, 0..250);
        for i in (0..250).rev() {
            m.join(i, "g").unwrap();
        }
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = m.page("g", after, 100);
            if page.is_empty() {
                break;
            }
            after = page.last().copied();
            all.extend(page);
        }
        assert_eq!(all, (0..250).collect::<Vec<_>>());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("room:*", "room:lobby"));
        assert!(!pattern_matches("room:*", "admin"));
        assert!(pattern_matches("lobby", "lobby"));
        assert!(!pattern_matches("lobby", "lobby2"));
        assert!(pattern_matches("*", "anything"));
    }
}
