//! The binaries' results: one JSON object per line on stdout.

use serde_json::Value;

/// One JSON line on stdout, flushed at once (the driving script reads it as it comes).
pub fn emit(v: Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}
