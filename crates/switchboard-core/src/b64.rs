//! Serde for `Bytes` as standard base64 (`#[serde(with = "switchboard_core::b64")]`): how
//! payloads travel between nodes and in handovers.
#![allow(missing_docs)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&STANDARD.encode(b))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    STANDARD
        .decode(s.as_bytes())
        .map(Bytes::from)
        .map_err(serde::de::Error::custom)
}
