//! Access control at the door: which origins may open a WebSocket, and which addresses
//! may connect at all. Pure functions of the request's `Origin` and `Host` and of the
//! client address; the edge and the management listener call them.
//!
//! Origins are compared as RFC 6454 serializes them: `scheme://host[:port]`, case-folded,
//! with the scheme's default port (80 for `http`/`ws`, 443 for `https`/`wss`) left out.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One entry of `access.allowed_origins`: `*`, an exact origin
/// (`https://chat.example.com`), or every subdomain of a host
/// (`https://*.example.com`, which does not match `https://example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OriginPattern {
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Any,
    Exact(Origin),
    /// `host` holds the suffix with its leading dot: `.example.com`.
    Subdomains(Origin),
}

/// A parsed `Origin`: scheme and host in lower case, the port only when it is not the
/// scheme's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// Why an `allowed_origins` entry is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an origin: write scheme://host[:port] (no path), scheme://*.host, or \"*\"")]
pub struct BadOrigin(String);

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` split at the port (an IPv6 literal keeps its brackets); `None` when the
/// host is empty, holds a character no host has, or the port is not a number.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'*'))
        }
    };
    if !host_ok {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

impl Origin {
    /// Parses an `Origin` header value; `None` for `null` and anything that is not
    /// `scheme://host[:port]`.
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return None;
        }
        let (host, port) = split_host_port(rest)?;
        if host.contains('*') {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        Some(Origin {
            host: host.to_ascii_lowercase(),
            scheme,
            port,
        })
    }

    /// Whether this origin names the host (and port) of a `Host` header: the same-origin
    /// rule when no list is configured. The scheme is not compared, since a gateway behind
    /// a TLS-terminating proxy sees plain HTTP; a `Host` without a port means the default
    /// port of the origin's scheme.
    pub fn is_host(&self, host_header: &str) -> bool {
        let Some((host, port)) = split_host_port(host_header.trim()) else {
            return false;
        };
        let default = default_port(&self.scheme);
        host.eq_ignore_ascii_case(&self.host) && port.or(default) == self.port.or(default)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

impl OriginPattern {
    /// Parses one `allowed_origins` entry.
    pub fn parse(s: &str) -> Result<OriginPattern, BadOrigin> {
        if s == "*" {
            return Ok(OriginPattern {
                kind: PatternKind::Any,
            });
        }
        let bad = || BadOrigin(s.to_owned());
        let (scheme, rest) = s.split_once("://").ok_or_else(bad)?;
        if let Some(suffix) = rest.strip_prefix("*.") {
            // Parsed as an origin with the suffix as its host, so the same rules hold.
            let mut o = Origin::parse(&format!("{scheme}://{suffix}")).ok_or_else(bad)?;
            if o.host.starts_with('[') || o.host.starts_with('.') {
                return Err(bad());
            }
            o.host.insert(0, '.');
            return Ok(OriginPattern {
                kind: PatternKind::Subdomains(o),
            });
        }
        Origin::parse(s)
            .map(|o| OriginPattern {
                kind: PatternKind::Exact(o),
            })
            .ok_or_else(bad)
    }

    /// Whether the `Origin` header value `origin` is allowed by this entry (`*` allows
    /// any value, `null` included).
    pub fn allows(&self, origin: &str) -> bool {
        match &self.kind {
            PatternKind::Any => true,
            PatternKind::Exact(p) => Origin::parse(origin).is_some_and(|o| o == *p),
            PatternKind::Subdomains(p) => Origin::parse(origin).is_some_and(|o| {
                o.scheme == p.scheme
                    && o.port == p.port
                    && o.host.len() > p.host.len()
                    && o.host.ends_with(&p.host)
                    && !o.host.starts_with('[')
            }),
        }
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            PatternKind::Any => f.write_str("*"),
            PatternKind::Exact(o) => o.fmt(f),
            PatternKind::Subdomains(o) => {
                write!(f, "{}://*{}", o.scheme, o.host)?;
                match o.port {
                    Some(p) => write!(f, ":{p}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl TryFrom<String> for OriginPattern {
    type Error = BadOrigin;
    fn try_from(s: String) -> Result<Self, BadOrigin> {
        OriginPattern::parse(&s)
    }
}

impl From<OriginPattern> for String {
    fn from(p: OriginPattern) -> String {
        p.to_string()
    }
}

/// Whether the `Origin` header `origin` (when the request has one) may open a WebSocket:
/// listed in `allowed`, or, with an empty list, naming the request's own `host`. Requests
/// without `Origin` come from clients other than browsers and pass unless `require`.
pub fn origin_allowed(
    allowed: &[OriginPattern],
    require: bool,
    origin: Option<&str>,
    host: Option<&str>,
) -> bool {
    let Some(origin) = origin else {
        return !require;
    };
    if allowed.is_empty() {
        return match (Origin::parse(origin), host) {
            (Some(o), Some(h)) => o.is_host(h),
            _ => false,
        };
    }
    allowed.iter().any(|p| p.allows(origin))
}

/// An allow list and a deny list of networks. Deny wins; a non-empty allow list refuses
/// every address outside it; two empty lists allow everything.
#[derive(Debug, Clone, Copy)]
pub struct IpRules<'a> {
    /// `allow_ips`.
    pub allow: &'a [IpNet],
    /// `deny_ips`.
    pub deny: &'a [IpNet],
}

impl IpRules<'_> {
    /// Whether `ip` may connect. An IPv4 address seen as IPv6 (`::ffff:a.b.c.d`, from a
    /// dual-stack listener) is matched as the IPv4 address it is.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let hit = |nets: &[IpNet]| nets.iter().any(|n| n.contains(&ip));
        !hit(self.deny) && (self.allow.is_empty() || hit(self.allow))
    }
}

#[cfg(test)]
mod tests;
