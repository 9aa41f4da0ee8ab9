//! The operations every entry point performs on connections, as data: what the management
//! API, `/v1/batch`, `@connections`, builtins, function answers and other nodes ask for.
//!
//! An [`Op`] names one operation; applying it (in `switchboard-edge::ops`) gives an
//! [`Outcome`] or an [`OpError`]. The same values travel between nodes, so an operation
//! applied on the node that holds a connection answers the same whichever node was asked.
//! [`OpError`] is the one place that chooses the HTTP status, the AWS error type and the
//! metric label of a failed operation.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::groups::valid_name;
use crate::ConnectionId;

/// Whom a send or a close addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// One connection.
    Connection {
        /// The connection.
        id: ConnectionId,
    },
    /// Every member of a group but those excluded.
    Group {
        /// The group.
        group: String,
        /// Members not to address.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<ConnectionId>,
    },
    /// Every connection of a user.
    User {
        /// The user.
        user: String,
    },
    /// Every connection of the cluster.
    All,
}

impl Target {
    /// The connection addressed, if one is.
    pub fn connection(&self) -> Option<ConnectionId> {
        match self {
            Target::Connection { id } => Some(*id),
            _ => None,
        }
    }

    /// Checks the group name or user id the target carries.
    pub fn validate(&self) -> Result<(), OpError> {
        match self {
            Target::Group { group, .. } => check_group(group),
            Target::User { user } => check_user(user),
            Target::Connection { .. } | Target::All => Ok(()),
        }
    }
}

/// One operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Op {
    /// Queue a message.
    Send {
        /// To whom.
        to: Target,
        /// The payload.
        #[serde(with = "crate::b64")]
        data: Bytes,
        /// A binary frame (else text).
        binary: bool,
    },
    /// Close: one connection, a group's members, a user's connections.
    Close {
        /// Whom.
        to: Target,
        /// Why, which decides the close code (1000 unless said otherwise).
        #[serde(default, skip_serializing_if = "CloseWhy::is_deleted")]
        why: CloseWhy,
    },
    /// Add a connection to a group.
    Join {
        /// The connection.
        id: ConnectionId,
        /// The group.
        group: String,
    },
    /// Take a connection out of a group.
    Leave {
        /// The connection.
        id: ConnectionId,
        /// The group.
        group: String,
    },
    /// Merge into a connection's state (`None` removes the key).
    SetState {
        /// The connection.
        id: ConnectionId,
        /// The changes, in order.
        changes: Vec<(String, Option<String>)>,
    },
    /// Set (or with `None` clear) a connection's user.
    SetUser {
        /// The connection.
        id: ConnectionId,
        /// The user.
        user: Option<String>,
    },
    /// Read a connection.
    Get {
        /// The connection.
        id: ConnectionId,
    },
    /// Count a user's connections (and those older than `rank_of`) and list its `oldest`
    /// ones (at most [`Op::MAX_OLDEST`]), oldest first: what
    /// `access.max_connections_per_user` checks.
    UserConnections {
        /// The user.
        user: String,
        /// How many of the oldest to list.
        oldest: u32,
        /// A connection whose rank by age is wanted: the answer counts those older.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rank_of: Option<UserConnection>,
    },
    /// List a group's members: up to `limit` after `after`, in id order.
    Members {
        /// The group.
        group: String,
        /// The last id of the previous page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<ConnectionId>,
        /// The most ids wanted.
        limit: u32,
    },
}

/// Why connections are closed, which picks the close code and reason the client gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CloseWhy {
    /// Asked for (the management API, a builtin): 1000.
    #[default]
    Deleted,
    /// A newer connection of its user went over `access.max_connections_per_user` with
    /// `on_user_limit = "close_oldest"`: 1008.
    UserLimit,
}

impl CloseWhy {
    fn is_deleted(&self) -> bool {
        *self == CloseWhy::Deleted
    }
}

impl Op {
    /// Most connections an [`Op::UserConnections`] lists per node.
    pub const MAX_OLDEST: u32 = 64;

    /// A close with 1000, as the management API asks for it.
    pub fn close(to: Target) -> Op {
        Op::Close {
            to,
            why: CloseWhy::Deleted,
        }
    }

    /// How many ids a listing answers with at most (its page, or the oldest connections
    /// of a user, bounded by [`Op::MAX_OLDEST`]); `None` for an operation that lists none.
    pub fn listed(&self) -> Option<usize> {
        match self {
            Op::Members { limit, .. } => Some(*limit as usize),
            Op::UserConnections { oldest, .. } => Some((*oldest).min(Op::MAX_OLDEST) as usize),
            _ => None,
        }
    }

    /// The connection the operation addresses, if it addresses exactly one.
    pub fn connection(&self) -> Option<ConnectionId> {
        match self {
            Op::Send { to, .. } | Op::Close { to, .. } => to.connection(),
            Op::Join { id, .. }
            | Op::Leave { id, .. }
            | Op::SetState { id, .. }
            | Op::SetUser { id, .. }
            | Op::Get { id } => Some(*id),
            Op::Members { .. } | Op::UserConnections { .. } => None,
        }
    }

    /// Checks what can be checked without the connection: names and the shape of the
    /// state. An operation that fails here is refused the same on every node.
    pub fn validate(&self) -> Result<(), OpError> {
        match self {
            Op::Send { to, .. } | Op::Close { to, .. } => to.validate(),
            Op::UserConnections { user, .. } => check_user(user),
            Op::Join { group, .. } | Op::Leave { group, .. } | Op::Members { group, .. } => {
                check_group(group)
            }
            Op::SetUser { user, .. } => user.as_deref().map_or(Ok(()), check_user),
            Op::SetState { .. } | Op::Get { .. } => Ok(()),
        }
    }

    /// A name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Send { .. } => "send",
            Op::Close { .. } => "close",
            Op::Join { .. } => "join",
            Op::Leave { .. } => "leave",
            Op::SetState { .. } => "set_state",
            Op::SetUser { .. } => "set_user",
            Op::Get { .. } => "get",
            Op::Members { .. } => "members",
            Op::UserConnections { .. } => "user_connections",
        }
    }
}

fn check_group(g: &str) -> Result<(), OpError> {
    if valid_name(g) {
        Ok(())
    } else {
        Err(OpError::InvalidGroup)
    }
}

fn check_user(u: &str) -> Result<(), OpError> {
    if valid_name(u) {
        Ok(())
    } else {
        Err(OpError::InvalidUser)
    }
}

/// How many nodes an answer covers: those that answered, of those live when it was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Nodes whose part is in the answer (this one included).
    pub answered: u32,
    /// Nodes that were asked (this one included).
    pub expected: u32,
}

impl Coverage {
    /// This node alone, on its own.
    pub const ONE: Coverage = Coverage {
        answered: 1,
        expected: 1,
    };

    /// Whether every node asked answered.
    pub fn complete(&self) -> bool {
        self.answered >= self.expected
    }
}

/// What a fan-out did: recipients found, messages queued, recipients dropped (full queue).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Connections addressed.
    pub recipients: u64,
    /// Messages queued.
    pub delivered: u64,
    /// Recipients whose queue was full (they are closed with 1013).
    pub dropped: u64,
}

impl Counts {
    /// Adds another node's counts.
    pub fn add(&mut self, other: Counts) {
        self.recipients += other.recipients;
        self.delivered += other.delivered;
        self.dropped += other.dropped;
    }
}

/// A connection as the management API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    /// The connection.
    pub id: ConnectionId,
    /// When it opened (ms since the epoch).
    pub connected_at_ms: u64,
    /// Its latest frame from the client (ms since the epoch).
    pub last_active_at_ms: u64,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// Its user.
    pub user_id: Option<String>,
    /// Its groups, sorted.
    pub groups: Vec<String>,
    /// Its state, sorted by key.
    pub state: Vec<(String, String)>,
    /// The negotiated subprotocol.
    pub subprotocol: Option<String>,
}

/// One of a user's connections, as [`Outcome::UserConnections`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserConnection {
    /// When it opened (ms since the epoch): the order of age.
    pub connected_at_ms: u64,
    /// The connection (ties of age broken by id).
    pub id: ConnectionId,
}

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// A send or close to one connection was queued on the node that holds it (or handed
    /// to that node: AWS's `PostToConnection` semantics).
    Accepted,
    /// A send to many connections.
    Sent {
        /// What it did, summed over the nodes covered.
        counts: Counts,
        /// Which nodes are counted.
        nodes: Coverage,
    },
    /// A close of many connections.
    Closed {
        /// Connections it closed.
        closed: u64,
        /// Which nodes are counted.
        nodes: Coverage,
    },
    /// A join: whether the connection was not yet a member.
    Joined {
        /// Added (false: already a member).
        added: bool,
    },
    /// A leave: whether the connection was a member.
    Left {
        /// Removed (false: was not a member).
        removed: bool,
    },
    /// The connection's state after a change.
    State {
        /// Sorted by key.
        state: Vec<(String, String)>,
    },
    /// The connection's user after a change.
    User {
        /// The user.
        user: Option<String>,
    },
    /// A read connection.
    Connection {
        /// What it shows.
        view: Box<ConnectionView>,
    },
    /// A user's connections.
    UserConnections {
        /// How many, on the nodes counted.
        count: u64,
        /// How many of them are older than the connection asked about (0 if none was).
        older: u64,
        /// The oldest, oldest first, at most the number asked for.
        oldest: Vec<UserConnection>,
        /// Which nodes are counted.
        nodes: Coverage,
    },
    /// A page of a group's members.
    Members {
        /// Sorted, at most the `limit` asked for.
        ids: Vec<ConnectionId>,
        /// Members in all, on the nodes counted.
        size: u64,
        /// Which nodes are listed.
        nodes: Coverage,
    },
}

/// Where a failure comes from: it decides the log level and whom to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    /// The caller asked for something that cannot be done.
    Client,
    /// Another node or the backplane failed.
    Backplane,
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OpError {
    /// The connection is closed or closing, or was never known.
    #[error("connection is gone")]
    Gone,
    /// A group name is empty, too long or has control characters.
    #[error("invalid group name (1-128 bytes, no control characters)")]
    InvalidGroup,
    /// A user id is empty, too long or has control characters.
    #[error("invalid user id (1-128 bytes, no control characters)")]
    InvalidUser,
    /// The connection is in as many groups as it may be.
    #[error("connection is in too many groups (limit {limit})")]
    TooManyGroups {
        /// `max_groups_per_connection`.
        limit: u64,
    },
    /// The state would exceed its bound.
    #[error("connection state would exceed {limit} bytes")]
    StateTooLarge {
        /// `max_state_bytes`.
        limit: u64,
    },
    /// The message is larger than a connection may be sent.
    #[error("message too large")]
    PayloadTooLarge,
    /// The connection's outbound queue is full; it is being closed.
    #[error("the connection's outbound queue is full; it is being closed")]
    QueueFull,
    /// The backplane is down (or refused the command).
    #[error("the cluster backplane is unavailable")]
    Unavailable,
    /// The node that holds the connection did not answer within `op_timeout_ms`.
    #[error("no answer from the node that holds the connection")]
    Timeout,
    /// Too many operations are waiting for other nodes.
    #[error("too many operations waiting for other nodes")]
    Busy,
}

impl OpError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            OpError::Gone => 410,
            OpError::InvalidGroup | OpError::InvalidUser => 400,
            OpError::TooManyGroups { .. } => 409,
            OpError::StateTooLarge { .. } | OpError::PayloadTooLarge => 413,
            OpError::QueueFull => 429,
            OpError::Unavailable | OpError::Timeout | OpError::Busy => 503,
        }
    }

    /// The AWS error type (`x-amzn-ErrorType`).
    pub fn aws_type(&self) -> &'static str {
        match self {
            OpError::Gone => "GoneException",
            OpError::InvalidGroup | OpError::InvalidUser => "BadRequestException",
            OpError::TooManyGroups { .. } | OpError::QueueFull => "LimitExceededException",
            OpError::StateTooLarge { .. } | OpError::PayloadTooLarge => "PayloadTooLargeException",
            OpError::Unavailable | OpError::Timeout | OpError::Busy => {
                "ServiceUnavailableException"
            }
        }
    }

    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            OpError::Gone => "gone",
            OpError::InvalidGroup => "invalid_group",
            OpError::InvalidUser => "invalid_user",
            OpError::TooManyGroups { .. } => "too_many_groups",
            OpError::StateTooLarge { .. } => "state_too_large",
            OpError::PayloadTooLarge => "payload_too_large",
            OpError::QueueFull => "queue_full",
            OpError::Unavailable => "unavailable",
            OpError::Timeout => "timeout",
            OpError::Busy => "busy",
        }
    }

    /// Whose fault it is.
    pub fn source(&self) -> ErrorSource {
        match self {
            OpError::Unavailable | OpError::Timeout | OpError::Busy => ErrorSource::Backplane,
            _ => ErrorSource::Client,
        }
    }
}

impl From<crate::groups::MembershipError> for OpError {
    fn from(e: crate::groups::MembershipError) -> Self {
        use crate::groups::MembershipError as M;
        match e {
            M::InvalidGroup => OpError::InvalidGroup,
            M::InvalidUser => OpError::InvalidUser,
            M::TooManyGroups(n) => OpError::TooManyGroups { limit: n as u64 },
            M::NotHeld => OpError::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ConnectionId {
        crate::id::IdGenerator::new("n1").connection_id()
    }

    #[test]
    fn operations_and_answers_round_trip_as_json() {
        let ops = [
            Op::Send {
                to: Target::Group {
                    group: "room".into(),
                    exclude: vec![id()],
                },
                data: Bytes::from_static(&[0, 255]),
                binary: true,
            },
            Op::close(Target::All),
            Op::Close {
                to: Target::User { user: "u".into() },
                why: CloseWhy::UserLimit,
            },
            Op::UserConnections {
                user: "u".into(),
                oldest: 2,
                rank_of: Some(UserConnection {
                    connected_at_ms: 3,
                    id: id(),
                }),
            },
            Op::Join {
                id: id(),
                group: "g".into(),
            },
            Op::SetState {
                id: id(),
                changes: vec![("a".into(), None), ("b".into(), Some("c".into()))],
            },
            Op::SetUser {
                id: id(),
                user: None,
            },
            Op::Members {
                group: "g".into(),
                after: Some(id()),
                limit: 10,
            },
        ];
        for op in ops {
            let text = serde_json::to_string(&op).unwrap();
            assert_eq!(serde_json::from_str::<Op>(&text).unwrap(), op, "{text}");
        }
        let answers: [Result<Outcome, OpError>; 4] = [
            Ok(Outcome::UserConnections {
                count: 2,
                older: 1,
                oldest: vec![UserConnection {
                    connected_at_ms: 7,
                    id: id(),
                }],
                nodes: Coverage::ONE,
            }),
            Ok(Outcome::Sent {
                counts: Counts {
                    recipients: 3,
                    delivered: 2,
                    dropped: 1,
                },
                nodes: Coverage::ONE,
            }),
            Err(OpError::TooManyGroups { limit: 4 }),
            Ok(Outcome::Members {
                ids: vec![id()],
                size: 1,
                nodes: Coverage::ONE,
            }),
        ];
        for a in answers {
            let text = serde_json::to_string(&a).unwrap();
            assert_eq!(
                serde_json::from_str::<Result<Outcome, OpError>>(&text).unwrap(),
                a
            );
        }
    }

    /// A close for 1000 reads as nodes of the previous release wrote it, without `why`.
    #[test]
    fn a_plain_close_carries_no_reason_on_the_wire() {
        let text = serde_json::to_string(&Op::close(Target::All)).unwrap();
        assert!(!text.contains("why"), "{text}");
        let limited = Op::Close {
            to: Target::All,
            why: CloseWhy::UserLimit,
        };
        let text = serde_json::to_string(&limited).unwrap();
        assert!(text.contains(r#""why":"userLimit""#), "{text}");
    }

    #[test]
    fn invalid_names_are_refused_before_anything_is_done() {
        let long = "x".repeat(129);
        for op in [
            Op::Join {
                id: id(),
                group: long.clone(),
            },
            Op::Send {
                to: Target::Group {
                    group: long.clone(),
                    exclude: vec![],
                },
                data: Bytes::new(),
                binary: false,
            },
            Op::close(Target::Group {
                group: String::new(),
                exclude: vec![],
            }),
            Op::Members {
                group: "a\nb".into(),
                after: None,
                limit: 1,
            },
        ] {
            assert_eq!(op.validate(), Err(OpError::InvalidGroup), "{op:?}");
        }
        assert_eq!(
            Op::SetUser {
                id: id(),
                user: Some(long)
            }
            .validate(),
            Err(OpError::InvalidUser)
        );
        assert_eq!(OpError::InvalidGroup.status(), 400);
        assert_eq!(OpError::InvalidGroup.aws_type(), "BadRequestException");
    }

    #[test]
    fn every_error_has_one_status_type_and_label() {
        let all = [
            OpError::Gone,
            OpError::InvalidGroup,
            OpError::InvalidUser,
            OpError::TooManyGroups { limit: 1 },
            OpError::StateTooLarge { limit: 1 },
            OpError::PayloadTooLarge,
            OpError::QueueFull,
            OpError::Unavailable,
            OpError::Timeout,
            OpError::Busy,
        ];
        let mut labels = std::collections::HashSet::new();
        for e in all {
            assert!((400..600).contains(&e.status()));
            assert!(e.aws_type().ends_with("Exception"));
            assert!(labels.insert(e.label()), "{e:?}");
            assert_eq!(e.source() == ErrorSource::Backplane, e.status() == 503);
        }
    }
}
