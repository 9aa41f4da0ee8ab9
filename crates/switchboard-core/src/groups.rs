//! Groups and users: which connections are in which group, and whose they are.
//!
//! One index holds both directions (group → members, connection → groups and user) so a
//! connection's memberships end together with it in one call. Members are kept ordered so
//! a listing can be paged with a stable cursor. The caller owns the lock around it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

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
}

/// Checks a group name or user id.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.chars().any(char::is_control)
}

#[derive(Debug, Default)]
struct Entry {
    groups: Vec<Arc<str>>,
    user: Option<Arc<str>>,
}

/// The membership index for one node.
#[derive(Debug)]
pub struct Membership<Id: Ord + Copy + std::hash::Hash> {
    max_groups_per_connection: usize,
    groups: HashMap<Arc<str>, BTreeSet<Id>>,
    users: HashMap<Arc<str>, BTreeSet<Id>>,
    connections: HashMap<Id, Entry>,
}

impl<Id: Ord + Copy + std::hash::Hash> Membership<Id> {
    /// An empty index allowing each connection `max_groups_per_connection` groups.
    pub fn new(max_groups_per_connection: usize) -> Self {
        Self {
            max_groups_per_connection,
            groups: HashMap::new(),
            users: HashMap::new(),
            connections: HashMap::new(),
        }
    }

    /// Adds `id` to `group`. `Ok(false)`: it already was a member.
    pub fn join(&mut self, id: Id, group: &str) -> Result<bool, MembershipError> {
        if !valid_name(group) {
            return Err(MembershipError::InvalidGroup);
        }
        let entry = self.connections.entry(id).or_default();
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
        self.groups.entry(name).or_default().insert(id);
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
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(&id);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
        true
    }

    /// Sets (or clears) the connection's user.
    pub fn set_user(&mut self, id: Id, user: Option<&str>) -> Result<(), MembershipError> {
        if user.is_some_and(|u| !valid_name(u)) {
            return Err(MembershipError::InvalidUser);
        }
        let entry = self.connections.entry(id).or_default();
        if let Some(old) = entry.user.take() {
            if let Some(set) = self.users.get_mut(&old) {
                set.remove(&id);
                if set.is_empty() {
                    self.users.remove(&old);
                }
            }
        }
        if let Some(u) = user {
            let name: Arc<str> = Arc::from(u);
            entry.user = Some(name.clone());
            self.users.entry(name).or_default().insert(id);
        }
        Ok(())
    }

    /// Forgets a connection: every group and its user.
    pub fn remove_connection(&mut self, id: Id) {
        let Some(entry) = self.connections.remove(&id) else {
            return;
        };
        for g in entry.groups {
            if let Some(members) = self.groups.get_mut(&g) {
                members.remove(&id);
                if members.is_empty() {
                    self.groups.remove(&g);
                }
            }
        }
        if let Some(u) = entry.user {
            if let Some(set) = self.users.get_mut(&u) {
                set.remove(&id);
                if set.is_empty() {
                    self.users.remove(&u);
                }
            }
        }
    }

    /// The members of a group.
    pub fn members(&self, group: &str) -> impl Iterator<Item = Id> + '_ {
        self.groups.get(group).into_iter().flatten().copied()
    }

    /// How many members a group has.
    pub fn group_len(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, BTreeSet::len)
    }

    /// Up to `limit` members after `after` (exclusive), in a stable order.
    pub fn page(&self, group: &str, after: Option<Id>, limit: usize) -> Vec<Id> {
        let Some(members) = self.groups.get(group) else {
            return Vec::new();
        };
        match after {
            Some(a) => members
                .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))
                .take(limit)
                .copied()
                .collect(),
            None => members.iter().take(limit).copied().collect(),
        }
    }

    /// The connections of a user.
    pub fn user_connections(&self, user: &str) -> impl Iterator<Item = Id> + '_ {
        self.users.get(user).into_iter().flatten().copied()
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

    #[test]
    fn join_leave_and_cleanup() {
        let mut m = Membership::<u32>::new(2);
        assert_eq!(m.join(1, "a"), Ok(true));
        assert_eq!(m.join(1, "a"), Ok(false));
        assert_eq!(m.join(2, "a"), Ok(true));
        assert_eq!(m.join(1, "b"), Ok(true));
        assert_eq!(m.join(1, "c"), Err(MembershipError::TooManyGroups(2)));
        assert_eq!(m.join(1, ""), Err(MembershipError::InvalidGroup));
        assert_eq!(m.join(1, "bad\nname"), Err(MembershipError::InvalidGroup));
        assert_eq!(m.members("a").collect::<Vec<_>>(), [1, 2]);
        assert!(m.leave(1, "a"));
        assert!(!m.leave(1, "a"));
        assert_eq!(m.members("a").collect::<Vec<_>>(), [2]);
        m.set_user(2, Some("ada")).unwrap();
        m.set_user(3, Some("ada")).unwrap();
        assert_eq!(m.user_connections("ada").collect::<Vec<_>>(), [2, 3]);
        m.remove_connection(2);
        assert_eq!(m.group_len("a"), 0);
        assert_eq!(m.group_count(), 1, "empty groups disappear");
        assert_eq!(m.user_connections("ada").collect::<Vec<_>>(), [3]);
        m.set_user(3, None).unwrap();
        assert_eq!(m.user_connections("ada").count(), 0);
        assert!(m.user_of(3).is_none());
    }

    #[test]
    fn paging_is_stable_and_complete() {
        let mut m = Membership::<u32>::new(4);
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
