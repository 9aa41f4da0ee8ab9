//! `/v1/batch`: up to [`MAX_BATCH`] operations in one request, each answered in its own
//! entry (a failing item does not fail the batch).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use switchboard_core::ops::{Op, OpError, Target};
use switchboard_edge::ops::Counted;

use super::answer::{bad_request, json_ok, run_counted, ApiError};
use super::parse::{connection_id, parse_ids, state_changes};
use super::Api;

/// Largest batch accepted.
const MAX_BATCH: usize = 100;

/// One batch operation.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub(super) enum BatchOp {
    Send {
        #[serde(rename = "connectionId")]
        connection_id: Option<String>,
        group: Option<String>,
        user: Option<String>,
        #[serde(default)]
        exclude: Vec<String>,
        data: Option<String>,
        #[serde(rename = "dataBase64")]
        data_base64: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    Broadcast {
        data: Option<String>,
        #[serde(rename = "dataBase64")]
        data_base64: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    Join {
        group: String,
        #[serde(rename = "connectionId")]
        connection_id: String,
    },
    Leave {
        group: String,
        #[serde(rename = "connectionId")]
        connection_id: String,
    },
    Close {
        #[serde(rename = "connectionId")]
        connection_id: Option<String>,
        group: Option<String>,
        user: Option<String>,
        #[serde(default)]
        wait: bool,
    },
    SetState {
        #[serde(rename = "connectionId")]
        connection_id: String,
        state: Value,
    },
    SetUser {
        #[serde(rename = "connectionId")]
        connection_id: String,
        /// `null` clears it.
        #[serde(rename = "userId")]
        user_id: Option<String>,
    },
}

#[derive(Deserialize)]
pub(super) struct Batch {
    operations: Vec<Value>,
}

pub(super) fn op_payload(
    data: Option<String>,
    b64: Option<String>,
) -> Result<(Bytes, bool), ApiError> {
    use base64::Engine;
    match (data, b64) {
        (Some(d), None) => Ok((Bytes::from(d), false)),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map(|d| (Bytes::from(d), true))
            .map_err(|_| bad_request("dataBase64 is not base64")),
        _ => Err(bad_request("give exactly one of data or dataBase64")),
    }
}

/// A batch item as the operation it names.
pub(super) fn to_op(max_message_bytes: usize, item: BatchOp) -> Result<(Op, Counted), ApiError> {
    let wait = match &item {
        BatchOp::Send { wait, .. }
        | BatchOp::Broadcast { wait, .. }
        | BatchOp::Close { wait, .. } => *wait,
        _ => false,
    };
    let counted = if wait {
        Counted::Cluster
    } else {
        Counted::Here
    };
    let too_big = |d: &Bytes| d.len() > max_message_bytes;
    let one_of =
        |c: Option<String>, g: Option<String>, u: Option<String>, ex: Vec<String>, what| {
            Ok(match (c, g, u) {
                (Some(id), None, None) if ex.is_empty() => Target::Connection {
                    id: connection_id(&id)?,
                },
                (None, Some(group), None) => Target::Group {
                    group,
                    exclude: parse_ids(Some(&ex.join(",")))?,
                },
                (None, None, Some(user)) if ex.is_empty() => Target::User { user },
                _ => return Err(bad_request(what)),
            })
        };
    let op = match item {
        BatchOp::Send {
            connection_id,
            group,
            user,
            exclude,
            data,
            data_base64,
            ..
        } => {
            let (data, binary) = op_payload(data, data_base64)?;
            if too_big(&data) {
                return Err(OpError::PayloadTooLarge.into());
            }
            let to = one_of(
                connection_id,
                group,
                user,
                exclude,
                "send needs exactly one of connectionId, group (with optional exclude), user",
            )?;
            Op::Send { to, data, binary }
        }
        BatchOp::Broadcast {
            data, data_base64, ..
        } => {
            let (data, binary) = op_payload(data, data_base64)?;
            if too_big(&data) {
                return Err(OpError::PayloadTooLarge.into());
            }
            Op::Send {
                to: Target::All,
                data,
                binary,
            }
        }
        BatchOp::Join {
            group,
            connection_id: id,
        } => Op::Join {
            id: connection_id(&id)?,
            group,
        },
        BatchOp::Leave {
            group,
            connection_id: id,
        } => Op::Leave {
            id: connection_id(&id)?,
            group,
        },
        BatchOp::Close {
            connection_id,
            group,
            user,
            ..
        } => Op::close(one_of(
            connection_id,
            group,
            user,
            Vec::new(),
            "close needs exactly one of connectionId, group, user",
        )?),
        BatchOp::SetState {
            connection_id: id,
            state,
        } => Op::SetState {
            id: connection_id(&id)?,
            changes: state_changes(&state)?,
        },
        BatchOp::SetUser {
            connection_id: id,
            user_id,
        } => Op::SetUser {
            id: connection_id(&id)?,
            user: user_id,
        },
    };
    Ok((op, counted))
}

pub(super) async fn batch(State(api): State<Api>, body: Bytes) -> Response {
    // (Each item's failure becomes its entry; the batch itself succeeds.)
    let Ok(batch) = serde_json::from_slice::<Batch>(&body) else {
        return bad_request(r#"body must be {"operations": [...]}"#).into_response();
    };
    if batch.operations.len() > MAX_BATCH {
        return bad_request("at most 100 operations per batch").into_response();
    }
    let mut results = Vec::with_capacity(batch.operations.len());
    for raw in batch.operations {
        let result = match serde_json::from_value::<BatchOp>(raw) {
            Ok(item) => match to_op(api.max_message_bytes, item) {
                Ok((op, counted)) => run_counted(&api, op, counted).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(bad_request(&format!("invalid operation: {e}"))),
        };
        results.push(match result {
            Ok(mut v) => {
                if let Value::Object(m) = &mut v {
                    m.insert("ok".into(), Value::Bool(true));
                }
                v
            }
            Err(e) => e.to_json(),
        });
    }
    json_ok(json!({ "results": results }))
}
