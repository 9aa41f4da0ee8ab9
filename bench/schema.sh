#!/usr/bin/env bash
# Message-schema benchmark: the CPU cost of checking one message against its route's
# schema, as the gateway does before invoking the function (issue 17: target ≤ 2 µs for
# a 200-byte chat message against a small schema). One thread, no sockets: the
# schema_check binary parses and validates the message ITERS times per round, ROUNDS
# rounds, and prints ns per check for each round and their median.
#
# Usage: bench/schema.sh
# Environment knobs (defaults in brackets):
#   ITERS [1000000]    checks per round (at most 100,000,000)
#   ROUNDS [5]         rounds
#   SCHEMA []          a schema file instead of the built-in chat schema
#   MESSAGE []         a message file (which must pass SCHEMA) instead of the built-in one
#   NO_BUILD [0]       1: skip the cargo build (use target/release/schema_check)
# Raw results: target/schema-bench/<timestamp>/results.jsonl
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "" ITERS ROUNDS SCHEMA MESSAGE NO_BUILD
bench_args "$@"

ITERS="${ITERS:-1000000}"
ROUNDS="${ROUNDS:-5}"
bench_init

if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release -q -p switchboard-bench --bin schema_check
fi
args=(--iters "$ITERS" --rounds "$ROUNDS")
[ -n "${SCHEMA:-}" ] && args+=(--schema "$SCHEMA")
[ -n "${MESSAGE:-}" ] && args+=(--message "$MESSAGE")
"$BIN/schema_check" "${args[@]}" | tee -a "$RESULTS"
