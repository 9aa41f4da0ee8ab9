use serde_json::Value;
use switchboard_core::ops::Op;

use super::answer::ApiError;
use super::batch::{to_op, BatchOp};
use super::parse::{parse_ids, query, state_changes};

/// Batch items and query strings come from management callers: arbitrary JSON shaped
/// like batch items (known and unknown ops, every field with values of every type) and
/// arbitrary query strings are parsed into operations or refused with a 4xx
/// AWS-shaped error, never a panic; an operation built from them carries only names
/// `Op::validate` judges, and a query's accepted keys are only those allowed.
#[test]
fn fuzz_api_batch_items_and_queries() {
    use switchboard_fuzz::proptest::prelude::*;
    let id = switchboard_core::id::IdGenerator::new("n")
        .connection_id()
        .to_string();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        "[A-Za-z0-9+/=]{0,12}".prop_map(Value::from),
        Just(Value::from(id.clone())),
        Just(Value::from("x".repeat(129))),
    ];
    let value = leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((".{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    });
    let field = prop_oneof![
        Just("connectionId".to_owned()),
        Just("group".to_owned()),
        Just("user".to_owned()),
        Just("exclude".to_owned()),
        Just("data".to_owned()),
        Just("dataBase64".to_owned()),
        Just("state".to_owned()),
        Just("userId".to_owned()),
        ".{0,8}",
    ];
    let op = prop_oneof![
        Just("send".to_owned()),
        Just("broadcast".to_owned()),
        Just("join".to_owned()),
        Just("leave".to_owned()),
        Just("close".to_owned()),
        Just("setState".to_owned()),
        Just("setUser".to_owned()),
        ".{0,8}",
    ];
    let item = (op, prop::collection::vec((field, value), 0..6)).prop_map(|(op, fields)| {
        let mut m: serde_json::Map<String, Value> = fields.into_iter().collect();
        m.insert("op".into(), Value::from(op));
        Value::Object(m)
    });
    switchboard_fuzz::run(
        "fuzz_api_batch_items_and_queries",
        20_000,
        (item, ".{0,60}", 0usize..64),
        |(item, q, max)| {
            let refused = |e: &ApiError| {
                let s = e.status.as_u16();
                (400..500).contains(&s) && e.kind.ends_with("Exception")
            };
            let item_state = item.get("state").cloned().unwrap_or(Value::Null);
            if let Ok(parsed) = serde_json::from_value::<BatchOp>(item) {
                match to_op(max, parsed) {
                    Ok((op, _)) => {
                        if let Op::Send { data, .. } = &op {
                            prop_assert!(data.len() <= max);
                        }
                        if let Err(e) = op.validate() {
                            prop_assert!(refused(&ApiError::from(e)));
                        }
                    }
                    Err(e) => prop_assert!(refused(&e), "{} {}", e.status, e.kind),
                }
            }
            // `exclude=` lists: every accepted id is a real id, a bad one is a 400.
            let list = format!("{q},{id}");
            match parse_ids(Some(&list)) {
                Ok(ids) => prop_assert!(ids.iter().any(|i| i.to_string() == id)),
                Err(e) => prop_assert!(refused(&e)),
            }
            // State patches from any JSON: strings and nulls only, or a 400.
            if let Err(e) = state_changes(&item_state) {
                prop_assert!(refused(&e));
            }
            match query(Some(q), &["limit", "after"]) {
                Ok(pairs) => {
                    prop_assert!(pairs.iter().all(|(k, _)| k == "limit" || k == "after"))
                }
                Err(e) => prop_assert!(refused(&e)),
            }
            Ok(())
        },
    );
}
