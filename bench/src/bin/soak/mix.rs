//! A mix of management calls (`/v1` and `@connections`) at a steady rate, through each
//! node's API in turn: reads, state and user changes, user and group sends, batches,
//! member listings, broadcasts, joins and leaves, and closing a fan-out member. Each
//! call's answer is counted by kind; a 5xx or a call without an answer is a failure
//! (expected only around the kill).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::api::{Api, Failure};
use crate::plain::FAN_GROUP;
use crate::resumable::Resumable;
use crate::{pacer, Failures, Stop};

/// Answers to one kind of call.
#[derive(Serialize, Default, Clone, Debug)]
pub struct OpCounts {
    pub ok: u64,
    /// 404/410: the connection was gone (it raced a reset or a close).
    pub gone: u64,
    pub client_error: u64,
    pub server_error: u64,
    pub no_answer: u64,
    /// Operations inside a batch that failed, other than 410.
    pub batch_op_errors: u64,
    /// Operations inside a batch that answered 410.
    pub batch_op_gone: u64,
}

/// What the mix did.
#[derive(Default)]
pub struct MixCounters {
    pub ops: Mutex<BTreeMap<&'static str, OpCounts>>,
    pub failures: Failures,
    /// The first unexpected answers, for the report.
    pub examples: Mutex<Vec<String>>,
}

impl MixCounters {
    fn count(&self, op: &'static str, r: &Result<crate::api::Answer, Failure>) {
        let mut ops = self.ops.lock();
        let c = ops.entry(op).or_default();
        let unexpected = match r {
            Ok(a) if (200..300).contains(&a.status) => {
                c.ok += 1;
                if op == "batch" {
                    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
                    for r in v["results"].as_array().into_iter().flatten() {
                        match (r["ok"].as_bool(), r["status"].as_u64()) {
                            (Some(false), Some(410)) => c.batch_op_gone += 1,
                            (Some(false), _) => c.batch_op_errors += 1,
                            _ => {}
                        }
                    }
                }
                None
            }
            Ok(a) if a.status == 404 || a.status == 410 => {
                c.gone += 1;
                None
            }
            Ok(a) if a.status < 500 => {
                c.client_error += 1;
                Some(format!(
                    "{op}: {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                ))
            }
            Ok(a) => {
                c.server_error += 1;
                self.failures.record();
                Some(format!(
                    "{op}: {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.body)
                ))
            }
            Err(e) => {
                c.no_answer += 1;
                self.failures.record();
                Some(format!("{op}: {e}"))
            }
        };
        drop(ops);
        if let Some(e) = unexpected {
            let mut ex = self.examples.lock();
            if ex.len() < 10 {
                ex.push(e);
            }
        }
    }
}

/// Runs the mix at `per_sec` calls a second until `stop`. `clients` are the resumable
/// clients (their current ids are the targets of per-connection calls).
pub async fn run(
    mut apis: Vec<Api>,
    clients: Arc<Vec<Arc<Resumable>>>,
    per_sec: f64,
    c: Arc<MixCounters>,
    mut stop: Stop,
) {
    const OPS: u64 = 10;
    let mut tick = pacer(per_sec);
    let mut members: Vec<String> = Vec::new();
    let mut t = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait() => return,
        }
        t += 1;
        let nodes = apis.len();
        let api = &mut apis[(t as usize) % nodes];
        let cycle = t / OPS;
        let client = &clients[(cycle as usize) % clients.len().max(1)];
        let rid = client
            .ledger
            .lock()
            .current()
            .map(|(_, id)| id.to_owned())
            .unwrap_or_default();
        let user = format!("soak-user-{}", cycle % 4);
        let (op, r) = match t % OPS {
            0 => (
                "get_connection",
                api.request("GET", &format!("/v1/connections/{rid}"), b"")
                    .await,
            ),
            1 => (
                "patch_state",
                api.request(
                    "PATCH",
                    &format!("/v1/connections/{rid}/state"),
                    format!(r#"{{"soak":"{t}"}}"#).as_bytes(),
                )
                .await,
            ),
            2 => (
                "set_user",
                api.request(
                    "PUT",
                    &format!("/v1/connections/{rid}/user"),
                    format!(r#"{{"userId":"{user}"}}"#).as_bytes(),
                )
                .await,
            ),
            3 => (
                "user_send",
                api.request(
                    "POST",
                    &format!("/v1/users/{user}/messages"),
                    format!("u{t}").as_bytes(),
                )
                .await,
            ),
            4 => {
                let body = serde_json::json!({"operations": [
                    {"op": "send", "group": FAN_GROUP, "data": format!("x{t}")},
                    {"op": "setState", "connectionId": rid, "state": {"batch": t.to_string()}},
                    {"op": "send", "connectionId": rid, "data": format!("x{t}")},
                ]});
                (
                    "batch",
                    api.request("POST", "/v1/batch", body.to_string().as_bytes())
                        .await,
                )
            }
            5 => {
                let r = api
                    .request(
                        "GET",
                        &format!("/v1/groups/{FAN_GROUP}/members?limit=100"),
                        b"",
                    )
                    .await;
                if let Ok(a) = &r {
                    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
                    if let Some(m) = v["members"].as_array() {
                        members = m
                            .iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect();
                    }
                }
                ("list_members", r)
            }
            6 => (
                "get_connection_aws",
                api.request("GET", &format!("/@connections/{rid}"), b"")
                    .await,
            ),
            7 if cycle.is_multiple_of(2) && !members.is_empty() => {
                let victim = members.swap_remove((cycle as usize / 2) % members.len());
                (
                    "delete_member",
                    api.request("DELETE", &format!("/@connections/{victim}"), b"")
                        .await,
                )
            }
            7 => continue,
            8 => (
                "broadcast",
                api.request("POST", "/v1/broadcast", format!("b{t}").as_bytes())
                    .await,
            ),
            _ if cycle.is_multiple_of(2) => (
                "join_group",
                api.request("PUT", &format!("/v1/groups/soak-mix/members/{rid}"), b"")
                    .await,
            ),
            _ => (
                "leave_group",
                api.request("DELETE", &format!("/v1/groups/soak-mix/members/{rid}"), b"")
                    .await,
            ),
        };
        c.count(op, &r);
    }
}
