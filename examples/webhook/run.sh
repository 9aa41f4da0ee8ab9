#!/usr/bin/env bash
# Runs the webhook chat example: the Python function server and the gateway.
# Open http://127.0.0.1:8080/ in two browser tabs. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
python3 examples/webhook/functions.py &
fn=$!
trap 'kill $fn 2>/dev/null' EXIT
cargo run --release -- serve --config examples/webhook/switchboard.toml
