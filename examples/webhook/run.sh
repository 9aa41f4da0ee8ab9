#!/usr/bin/env bash
# Runs the webhook chat example: the Python function server and the gateway, then prints
# the page to open in two browser tabs. Ctrl-C stops both.
#
# Ports are free ones picked at start unless set: WS_PORT (the page and the WebSocket),
# MGMT_PORT (management API), FN_PORT (the function server). The gateway is
# $SWITCHBOARD_BIN if set, else an already built target/release or target/debug binary,
# else `cargo run --release`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
WS_PORT=${WS_PORT:-$(free_port)}
MGMT_PORT=${MGMT_PORT:-$(free_port)}
FN_PORT=${FN_PORT:-$(free_port)}

if [[ -n ${SWITCHBOARD_BIN:-} ]]; then
    gateway=("$SWITCHBOARD_BIN")
elif [[ -x target/release/switchboard ]]; then
    gateway=(target/release/switchboard)
elif [[ -x target/debug/switchboard ]]; then
    gateway=(target/debug/switchboard)
else
    gateway=(cargo run --release --)
fi

PORT=$FN_PORT SWITCHBOARD_MANAGEMENT="http://127.0.0.1:$MGMT_PORT/prod" \
    python3 examples/webhook/functions.py &
fn=$!
trap 'kill $fn 2>/dev/null' EXIT

echo "gateway: ${gateway[*]}; function server on port $FN_PORT"
echo "open http://127.0.0.1:$WS_PORT/ in two browser tabs"
# The function's URL in switchboard.toml names port 3000: the override points it at FN_PORT.
SWITCHBOARD_FUNCTIONS__CHAT__URL="http://127.0.0.1:$FN_PORT/events" \
    "${gateway[@]}" serve --config examples/webhook/switchboard.toml \
    --listen "127.0.0.1:$WS_PORT" --management-listen "127.0.0.1:$MGMT_PORT"
