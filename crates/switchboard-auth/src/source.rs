//! Where credentials come from in a handshake: the JWT token sources and the REQUEST
//! authorizer's identity sources. Sans-IO: both read a [`Handshake`] only.

use std::borrow::Cow;

use http::header::{HeaderName, AUTHORIZATION};
use switchboard_core::config::TokenSource;

use crate::Handshake;

/// A token found in a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FoundToken<'h> {
    pub(crate) token: &'h str,
    /// The whole `Sec-WebSocket-Protocol` entry, when the token came from one.
    pub(crate) protocol: Option<&'h str>,
}

/// The first token in `sources` order. A source that is present but empty or not a
/// bearer credential counts as absent; the first token found is the only one tried,
/// so a bad header token is not rescued by a good query token.
pub(crate) fn find_token<'h>(
    hs: &Handshake<'h>,
    sources: &[TokenSource],
    query_param: &str,
    protocol_prefix: &str,
) -> Option<FoundToken<'h>> {
    sources.iter().find_map(|source| {
        let (token, protocol) = match source {
            TokenSource::Header => (bearer(hs)?, None),
            TokenSource::Query => (
                hs.query
                    .iter()
                    .find(|(k, v)| k == query_param && !v.is_empty())
                    .map(|(_, v)| v.as_str())?,
                None,
            ),
            TokenSource::Protocol => {
                let entry = hs
                    .offered_protocols
                    .iter()
                    .find(|p| p.len() > protocol_prefix.len() && p.starts_with(protocol_prefix))?;
                (&entry[protocol_prefix.len()..], Some(entry.as_str()))
            }
        };
        Some(FoundToken { token, protocol })
    })
}

/// `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer<'h>(hs: &Handshake<'h>) -> Option<&'h str> {
    hs.headers.get_all(AUTHORIZATION).iter().find_map(|v| {
        let v = v.to_str().ok()?;
        let (scheme, token) = v.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    })
}

/// Why an identity source is refused; names the spec as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("{0:?}: expected \"header:<name>\" or \"query:<name>\"")]
    Unknown(String),
    #[error("{0:?}: not a valid header name")]
    BadHeaderName(String),
}

/// One REQUEST authorizer identity source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IdentitySource {
    /// A header, matched case-insensitively.
    Header(HeaderName),
    /// A query parameter, matched exactly.
    Query(String),
}

impl IdentitySource {
    /// `header:<name>` or `query:<name>`; AWS's own spelling
    /// (`route.request.header.<name>`, `route.request.querystring.<name>`) is accepted too,
    /// so a configuration can be copied from a SAM or serverless template.
    pub(crate) fn parse(spec: &str) -> Result<Self, SourceError> {
        let lower = spec.to_ascii_lowercase();
        let (kind_len, is_header) = [
            ("header:", true),
            ("query:", false),
            ("route.request.header.", true),
            ("route.request.querystring.", false),
        ]
        .iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(prefix, is_header)| (prefix.len(), *is_header))
        .ok_or_else(|| SourceError::Unknown(spec.to_owned()))?;
        let name = &spec[kind_len..];
        if name.is_empty() {
            return Err(SourceError::Unknown(spec.to_owned()));
        }
        if is_header {
            HeaderName::from_bytes(name.as_bytes())
                .map(Self::Header)
                .map_err(|_| SourceError::BadHeaderName(spec.to_owned()))
        } else {
            Ok(Self::Query(name.to_owned()))
        }
    }

    /// A stable name for the cache key.
    pub(crate) fn key_name(&self) -> &str {
        match self {
            Self::Header(h) => h.as_str(),
            Self::Query(q) => q,
        }
    }

    /// The source's value; several occurrences are joined with `,` as HTTP does for
    /// repeated headers. Absent or empty is `None` (AWS answers 401 for both).
    pub(crate) fn value<'h>(&self, hs: &Handshake<'h>) -> Option<Cow<'h, str>> {
        let mut values: Vec<Cow<'h, str>> = match self {
            Self::Header(name) => hs
                .headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect(),
            Self::Query(name) => hs
                .query
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| Cow::Borrowed(v.as_str()))
                .collect(),
        };
        values.retain(|v| !v.is_empty());
        match values.len() {
            0 => None,
            1 => values.pop(),
            _ => Some(Cow::Owned(values.join(","))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::handshake_parts;

    #[test]
    fn token_sources_in_order() {
        let (mut headers, conn) = handshake_parts();
        headers.insert(AUTHORIZATION, "bEaReR  h.h.h ".parse().unwrap());
        let query = vec![("token".to_owned(), "q.q.q".to_owned())];
        let protocols = vec!["chat".to_owned(), "bearer.p.p.p".to_owned()];
        let hs = Handshake {
            headers: &headers,
            query: &query,
            offered_protocols: &protocols,
            connection: &conn,
            request_id: "r",
            request_time_ms: 0,
        };
        use TokenSource::*;
        let find = |s: &[TokenSource]| find_token(&hs, s, "token", "bearer.");
        assert_eq!(find(&[Header, Query]).unwrap().token, "h.h.h");
        assert_eq!(find(&[Query, Header]).unwrap().token, "q.q.q");
        let p = find(&[Protocol, Header]).unwrap();
        assert_eq!((p.token, p.protocol), ("p.p.p", Some("bearer.p.p.p")));
        assert_eq!(find_token(&hs, &[Query], "other", "bearer."), None);
        assert_eq!(find_token(&hs, &[Protocol], "token", "jwt."), None);

        // Not a bearer credential, an empty value, a bare prefix: absent.
        let mut headers = http::HeaderMap::new();
        headers.insert(AUTHORIZATION, "Basic dTpw".parse().unwrap());
        let query = vec![("token".to_owned(), String::new())];
        let protocols = vec!["bearer.".to_owned()];
        let hs = Handshake {
            headers: &headers,
            query: &query,
            offered_protocols: &protocols,
            ..hs
        };
        assert_eq!(
            find_token(&hs, &[Header, Query, Protocol], "token", "bearer."),
            None
        );
    }

    #[test]
    fn identity_source_specs() {
        assert_eq!(
            IdentitySource::parse("header:Authorization").unwrap(),
            IdentitySource::Header(AUTHORIZATION)
        );
        assert_eq!(
            IdentitySource::parse("HEADER:X-Api-Key")
                .unwrap()
                .key_name(),
            "x-api-key"
        );
        assert_eq!(
            IdentitySource::parse("query:Token").unwrap(),
            IdentitySource::Query("Token".into())
        );
        assert_eq!(
            IdentitySource::parse("route.request.querystring.t").unwrap(),
            IdentitySource::Query("t".into())
        );
        assert_eq!(
            IdentitySource::parse("route.request.header.Auth").unwrap(),
            IdentitySource::Header(HeaderName::from_static("auth"))
        );
        assert_eq!(
            IdentitySource::parse("header:bad name"),
            Err(SourceError::BadHeaderName("header:bad name".into()))
        );
        for bad in ["header:", "cookie:a", "Authorization", "header:bad name"] {
            let e = IdentitySource::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{bad:?}: ")), "{e}");
        }
    }

    #[test]
    fn identity_source_values() {
        let (mut headers, conn) = handshake_parts();
        headers.append("x-key", "a".parse().unwrap());
        headers.append("x-key", "b".parse().unwrap());
        headers.insert("x-empty", "".parse().unwrap());
        let query = vec![
            ("t".to_owned(), "1".to_owned()),
            ("e".to_owned(), String::new()),
        ];
        let hs = Handshake {
            headers: &headers,
            query: &query,
            offered_protocols: &[],
            connection: &conn,
            request_id: "r",
            request_time_ms: 0,
        };
        let v = |s: &str| {
            IdentitySource::parse(s)
                .unwrap()
                .value(&hs)
                .map(|c| c.into_owned())
        };
        assert_eq!(v("header:X-KEY").as_deref(), Some("a,b"));
        assert_eq!(v("query:t").as_deref(), Some("1"));
        assert_eq!(v("query:T"), None);
        assert_eq!(v("query:e"), None);
        assert_eq!(v("header:x-empty"), None);
        assert_eq!(v("header:x-missing"), None);
    }
}
