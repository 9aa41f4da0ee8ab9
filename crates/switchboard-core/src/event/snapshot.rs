//! A connection as the cluster registry stores it: enough for another node to answer
//! `GetConnection` and to invoke `$disconnect` for it if its node is lost.

use serde_json::{json, Map, Value};

use super::ConnectionInfo;
use crate::id::ConnectionId;

/// The snapshot JSON of a connection, with its extension (user, groups, state).
pub fn to_json(c: &ConnectionInfo, extension: Option<&Map<String, Value>>) -> Value {
    json!({
        "id": c.id.to_string(),
        "connectedAt": c.connected_at_ms,
        "sourceIp": c.source_ip.to_string(),
        "userAgent": c.user_agent,
        "path": c.path,
        "headers": c.headers,
        "query": c.query,
        "subprotocol": c.subprotocol,
        "tls": c.tls,
        "port": c.port,
        "authorizer": c.authorizer,
        "extension": extension,
    })
}

/// Reads a snapshot back. `None` if it is not one.
pub fn from_json(v: &Value) -> Option<(ConnectionInfo, Option<Map<String, Value>>)> {
    let pairs = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        let p = p.as_array()?;
                        Some((
                            p.first()?.as_str()?.to_owned(),
                            p.get(1)?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let info = ConnectionInfo {
        id: ConnectionId::parse(v.get("id")?.as_str()?)?,
        connected_at_ms: v.get("connectedAt")?.as_u64()?,
        source_ip: v.get("sourceIp")?.as_str()?.parse().ok()?,
        user_agent: v
            .get("userAgent")
            .and_then(Value::as_str)
            .map(str::to_owned),
        path: v
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_owned(),
        headers: pairs(v.get("headers").unwrap_or(&Value::Null)),
        query: pairs(v.get("query").unwrap_or(&Value::Null)),
        subprotocol: v
            .get("subprotocol")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tls: v.get("tls").and_then(Value::as_bool).unwrap_or(false),
        port: v.get("port").and_then(Value::as_u64).unwrap_or(0) as u16,
        authorizer: v.get("authorizer").and_then(Value::as_object).cloned(),
    };
    let ext = v.get("extension").and_then(Value::as_object).cloned();
    Some((info, ext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdGenerator;

    #[test]
    fn round_trip() {
        let c = ConnectionInfo {
            id: IdGenerator::new("n").connection_id(),
            connected_at_ms: 5,
            source_ip: "10.0.0.1".parse().unwrap(),
            user_agent: Some("ua".into()),
            path: "/p".into(),
            headers: vec![("host".into(), "h".into())],
            query: vec![("a".into(), "b".into())],
            subprotocol: Some("chat".into()),
            tls: true,
            port: 443,
            authorizer: None,
        };
        let mut ext = Map::new();
        ext.insert("userId".into(), "u".into());
        let (back, e) = from_json(&to_json(&c, Some(&ext))).unwrap();
        assert_eq!(back.id, c.id);
        assert_eq!(back.headers, c.headers);
        assert_eq!(back.query, c.query);
        assert_eq!(back.source_ip, c.source_ip);
        assert_eq!(e.unwrap()["userId"], "u");
        assert!(from_json(&json!({"id": "x"})).is_none());
    }
}
