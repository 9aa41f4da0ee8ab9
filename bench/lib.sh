# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are read by the sourcing script
# Helpers shared by the benchmark scripts under bench/ (sourced, not run). Everything
# listens on 127.0.0.1 and is started by the sourcing script, which keeps the pids in its
# PIDS array and stops them on exit (bench_cleanup).
#
# Sourcing sets ROOT (the repository) and works from there. A script then sets COMMAND
# (bench_command), reads its arguments (bench_args), and makes its results directory OUT
# (bench_init), after which log and die are defined. BENCH_NAME, the script's name without
# `.sh`, names its log lines (`[NAME  12s] ...`) and its results, target/NAME-bench/.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
BENCH_NAME="$(basename "$0" .sh)"
BIN="${BIN:-$ROOT/target/release}"
LOADGEN="$BIN/loadgen"
# The gateway binary bench_start_gateway runs.
GATEWAY="$BIN/switchboard"
CLK_TCK="$(getconf CLK_TCK)"
PEERS_DIR="$ROOT/bench/peers"
VENV_PY="$ROOT/.venv/bin/python"
PIDS=()
# Files and directories bench_cleanup removes.
TEMPS=()

# bench_command ARGS VAR...: sets COMMAND, the command as run: the VARs set in the
# environment (VAR=VALUE, quoted when VALUE has a space), bench/NAME.sh and ARGS.
bench_command() {
    local v
    COMMAND="bench/$BENCH_NAME.sh${1:+ $1}"
    shift
    for v in "$@"; do
        if [ -n "${!v+x}" ]; then
            case "${!v}" in *" "*) COMMAND="$v=\"${!v}\" $COMMAND" ;; *) COMMAND="$v=${!v} $COMMAND" ;; esac
        fi
    done
}

# bench_arg ARG: -h/--help prints the script's header comment and exits; anything else is
# an unknown argument (exit 2). For the arguments a script does not take itself.
bench_arg() {
    case "$1" in
        -h|--help) sed -n '2,/^set -/s/^#\( \|$\)//p' "$0"; exit 0 ;;
        *) echo "$BENCH_NAME.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
}

# bench_args ARG...: bench_arg for each, for a script that takes no argument of its own.
bench_args() {
    local arg
    for arg in "$@"; do bench_arg "$arg"; done
}

# bench_init [--no-results]: makes OUT, target/NAME-bench/<timestamp>, with an empty
# RESULTS (results.jsonl) in it unless --no-results, and starts the clock of log (T0).
# shellcheck disable=SC2120 # the argument is optional
bench_init() {
    OUT="$ROOT/target/$BENCH_NAME-bench/$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$OUT"
    if [ "${1:-}" != --no-results ]; then
        RESULTS="$OUT/results.jsonl"
        : >"$RESULTS"
    fi
    T0=$(date +%s)
}

log() { printf '[%s %3ds] %s\n' "$BENCH_NAME" "$(($(date +%s) - T0))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# bench_build [PACKAGE...]: `cargo build --release` of the PACKAGEs (switchboard and
# switchboard-bench by default) unless NO_BUILD=1.
# shellcheck disable=SC2120 # the argument is optional
bench_build() {
    local -a pkgs=("$@") args=()
    local p list=""
    [ "${#pkgs[@]}" -gt 0 ] || pkgs=(switchboard switchboard-bench)
    [ "${NO_BUILD:-0}" != 1 ] || return 0
    for p in "${pkgs[@]}"; do
        args+=(-p "$p")
        list+=", $p"
    done
    log "building release: ${list#, }"
    cargo build --release "${args[@]}"
}

# bench_need BINARY...: dies unless each BINARY is in BIN.
bench_need() {
    local b
    for b in "$@"; do
        [ -x "$BIN/$b" ] || die "$BIN/$b missing"
    done
}

# bench_apt_install WHAT PACKAGE [NOTE]: installs PACKAGE for WHAT, which is missing, with
# apt-get (as root only; after an apt-get update when the first try fails), its output in
# OUT/apt.log.
bench_apt_install() {
    local what="$1" pkg="$2"
    [ "$(id -u)" = 0 ] || die "$what missing; install it with: sudo apt-get install -y $pkg"
    log "installing $pkg${3:+ ($3)}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "$pkg" >"$OUT/apt.log" 2>&1; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update >>"$OUT/apt.log" 2>&1
        apt-get install -y "$pkg" >>"$OUT/apt.log" 2>&1 || die "could not install $pkg (see $OUT/apt.log)"
    fi
}

# bench_rotate SHIFT ITEM...: the ITEMs, one a line, from the one at SHIFT (modulo their
# count) on, wrapping around: a round's order, rotated round by round.
bench_rotate() {
    local first="$1" k
    shift
    for ((k = 0; k < $#; k++)); do
        echo "${@:$(((k + first) % $# + 1)):1}"
    done
}

# bench_done: the closing log line, then summary.md on stdout.
bench_done() {
    log "done; raw results in ${OUT#"$ROOT"/}"
    echo
    cat "$OUT/summary.md"
}

bench_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_hs256_token SECRET SUB: an HS256 JWT for `sub` SUB, signed with SECRET, valid for
# ten years (for gateways with a `jwt` authorizer).
bench_hs256_token() {
    python3 - "$1" "$2" <<'EOF'
import base64, hashlib, hmac, json, sys, time

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
body = b64(json.dumps({"sub": sys.argv[2], "iat": now, "exp": now + 10 * 365 * 86400},
                      separators=(",", ":")).encode())
sig = hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(sig)}")
EOF
}

# bench_cpu_ticks PID...: user + system CPU of the processes (all their threads), in clock
# ticks (0 for one that is gone); parsed after the last ')' so a command name with spaces
# cannot shift the fields.
bench_cpu_ticks() {
    local sum=0 pid line
    local -a f
    for pid in "$@"; do
        if read -r line 2>/dev/null <"/proc/$pid/stat"; then
            read -r -a f <<<"${line##*) }"
            sum=$((sum + f[11] + f[12]))
        fi
    done
    echo "$sum"
}

# bench_cpu_secs TICKS: clock ticks in seconds.
bench_cpu_secs() { python3 -c "print($1 / $CLK_TCK)"; }

# bench_busy_ticks: CPU ticks the whole machine spent busy (all cores), from /proc/stat.
bench_busy_ticks() {
    local -a f
    # cpu user nice system idle iowait irq softirq steal ...
    read -r -a f </proc/stat
    echo $((f[1] + f[2] + f[3] + f[6] + f[7] + f[8]))
}

bench_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# bench_forget PID: drops PID from the cleanup list.
bench_forget() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# bench_stop PID [SECS]: SIGTERM, up to SECS (5) to exit, then SIGKILL; forgets it.
bench_stop() {
    local i
    kill "$1" 2>/dev/null || true
    for i in $(seq 1 $((${2:-5} * 10))); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    bench_forget "$1"
}

# bench_cleanup [SECS]: SIGTERM to every process in PIDS at once, up to SECS (5) for all of
# them to exit (a gateway drains for its shutdown_grace_secs), then SIGKILL; removes TEMPS.
# shellcheck disable=SC2120 # the argument is optional
bench_cleanup() {
    local p i alive
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for i in $(seq 1 $((${1:-5} * 10))); do
        alive=0
        for p in "${PIDS[@]}"; do
            if kill -0 "$p" 2>/dev/null; then alive=1; fi
        done
        [ "$alive" = 1 ] || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    PIDS=()
    for p in "${TEMPS[@]}"; do rm -rf "$p"; done
    TEMPS=()
}

# bench_wait_listening FILE PID WHAT: waits (10 s at most) for `listening on ADDR` in
# FILE; sets ADDR.
bench_wait_listening() {
    local file="$1" pid="$2" what="$3" i
    for i in $(seq 1 100); do
        # The file may not exist yet: the background child opens it after the fork.
        ADDR=$(sed -n 's/^listening on //p' "$file" 2>/dev/null || true)
        [ -n "$ADDR" ] && return 0
        kill -0 "$pid" 2>/dev/null || die "$what exited at start (see $file)"
        sleep 0.1
    done
    die "$what did not report its address (see $file)"
}

# bench_start_listener NAME WHAT CMD...: starts CMD, a server that prints `listening on
# ADDR`, with its output in OUT/NAME.log, and waits for that line; sets LISTENER_PID and
# ADDR. WHAT names it in errors.
bench_start_listener() {
    local name="$1" what="$2"
    shift 2
    "$@" >"$OUT/$name.log" 2>&1 &
    LISTENER_PID=$!
    PIDS+=("$LISTENER_PID")
    bench_wait_listening "$OUT/$name.log" "$LISTENER_PID" "$what"
}

# bench_try_ready PID URL [SECS [STATUS]]: waits (SECS, 30 by default) until URL answers
# HTTP STATUS (a glob; any 2xx by default). Returns 1 when PID exits first (NOT_READY=
# exited) or time runs out (NOT_READY="not ready after SECS s (last HTTP status ...)").
bench_try_ready() {
    local pid="$1" url="$2" secs="${3:-30}" want="${4:-2??}" code=000 i
    for i in $(seq 1 $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            NOT_READY=exited
            return 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" 2>/dev/null || true)
        # shellcheck disable=SC2254 # STATUS is a pattern
        case "$code" in $want) return 0 ;; esac
        sleep 0.1
    done
    NOT_READY="not ready after $secs s (last HTTP status $code)"
    return 1
}

# bench_wait_ready PID URL WHAT LOG [SECS [STATUS]]: bench_try_ready, dying naming WHAT
# and its LOG when PID exits first or time runs out.
bench_wait_ready() {
    bench_try_ready "$1" "$2" "${5:-30}" "${6:-2??}" && return 0
    case "$NOT_READY" in
        exited) die "$3 exited at start (see $4)" ;;
        *) die "$3 $NOT_READY; see $4" ;;
    esac
}

# bench_gateway_toml FILE [SERVER_KEYS]: a gateway config on free ports (sets GW_PORT and
# GW_MPORT) that drains for 2 s at shutdown, with limits raised for 15,000+ connections
# and no keepalive pings; SERVER_KEYS go into [server], and the TOML on stdin (the
# [management] table, the functions and routes) after the rest.
bench_gateway_toml() {
    local server="shutdown_grace_secs = 2"
    [ -z "${2:-}" ] || server+=$'\n'"$2"
    GW_PORT=$(bench_free_port)
    GW_MPORT=$(bench_free_port)
    {
        cat <<EOF
# Generated by bench/lib.sh for $(basename "$0").
[server]
listen = "127.0.0.1:$GW_PORT"
management_listen = "127.0.0.1:$GW_MPORT"
$server

[limits]
max_connections = 20000
idle_timeout_secs = 3600
max_connection_secs = 0

[keepalive]
ping_interval_secs = 0

EOF
        cat
    } >"$1"
}

# bench_gateway_config FILE [EXTRA_TOML [SERVER_KEYS]]: bench_gateway_toml (with
# SERVER_KEYS) with the management API open and the builtin echo (two-way) as the
# `$default` route, plus EXTRA_TOML (e.g. a [compression] or [resume] table).
bench_gateway_config() {
    bench_gateway_toml "$1" "${3:-}" <<EOF
[management]
auth = "none"

[functions.echo]
kind = "builtin"
name = "echo"

[routes."\$default"]
function = "echo"
two_way = true

${2:-}
EOF
}

# bench_try_gateway NAME CONFIG [VAR=VALUE...]: starts GATEWAY with CONFIG on GW_PORT and
# GW_MPORT (bench_gateway_toml sets them; pick them with bench_free_port for a config
# without ports), with the VARs in its environment and its output appended to
# OUT/NAME.log; waits for /readyz. Sets GW_PID and GW_URL. Returns 1 (NOT_READY says why;
# the gateway stopped) when it exits at start or is not ready in 30 s.
bench_try_gateway() {
    local name="$1" config="$2"
    shift 2
    env "$@" "$GATEWAY" serve --config "$config" --listen "127.0.0.1:$GW_PORT" \
        --management-listen "127.0.0.1:$GW_MPORT" >>"$OUT/$name.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_URL="ws://127.0.0.1:$GW_PORT/"
    bench_try_ready "$GW_PID" "http://127.0.0.1:$GW_MPORT/readyz" && return 0
    bench_stop "$GW_PID"
    return 1
}

# bench_start_gateway NAME CONFIG [VAR=VALUE...]: bench_try_gateway, dying (naming the
# log) when the gateway does not get ready.
bench_start_gateway() {
    local what="switchboard"
    [ "$1" = switchboard ] || what="switchboard ($1)"
    bench_try_gateway "$@" && return 0
    case "$NOT_READY" in
        exited) die "$what exited at start (see $OUT/$1.log)" ;;
        *) die "$what $NOT_READY; see $OUT/$1.log" ;;
    esac
}

# bench_ensure_peers: Node's ws (npm ci in bench/peers from its lock file) and Python's
# websockets in .venv, at the versions scripts/install-deps.sh installs; installed here
# when missing so a scenario script runs on its own.
bench_ensure_peers() {
    command -v node >/dev/null || die "node not found (scripts/install-deps.sh installs it)"
    if [ ! -f "$PEERS_DIR/node_modules/.package-lock.json" ] ||
        [ "$PEERS_DIR/package-lock.json" -nt "$PEERS_DIR/node_modules/.package-lock.json" ]; then
        log "installing ws (npm ci in bench/peers)"
        (cd "$PEERS_DIR" && npm ci --no-audit --no-fund --loglevel=error >"$OUT/npm-peers.log" 2>&1) ||
            die "npm ci in bench/peers failed (see $OUT/npm-peers.log)"
    fi
    if [ ! -x "$VENV_PY" ]; then
        # As scripts/install-deps.sh: the system interpreter, not a pyenv shim.
        local py=python3
        [ -x /usr/bin/python3 ] && py=/usr/bin/python3
        log "creating .venv"
        "$py" -m venv "$ROOT/.venv" || die "could not create $ROOT/.venv"
    fi
    if ! "$VENV_PY" - "$PEERS_DIR/requirements.txt" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
for line in open(sys.argv[1]):
    name, _, want = line.split("#")[0].strip().partition("==")
    if name and version(name) != want:
        sys.exit(1)
EOF
        log "installing websockets into .venv (bench/peers/requirements.txt)"
        "$VENV_PY" -m pip install -q --disable-pip-version-check -r "$PEERS_DIR/requirements.txt" \
            >"$OUT/pip-peers.log" 2>&1 || die "pip install failed (see $OUT/pip-peers.log)"
    fi
    WS_VERSION="$(node -p 'require(process.argv[1]).version' "$PEERS_DIR/node_modules/ws/package.json")"
    WEBSOCKETS_VERSION="$("$VENV_PY" -c 'import websockets; print(websockets.__version__)')"
    NODE_VERSION="$(node --version)"
    VENV_PY_VERSION="$("$VENV_PY" -c 'import sys; print(sys.version.split()[0])')"
}

# bench_peer_label KIND: how a server is named in the results.
bench_peer_label() {
    case "$1" in
        ceiling) echo "ceiling-echo (switchboard-ws, nothing else)" ;;
        ws) echo "Node ws ${WS_VERSION:-?} (node ${NODE_VERSION:-?})" ;;
        websockets) echo "Python websockets ${WEBSOCKETS_VERSION:-?} (CPython ${VENV_PY_VERSION:-?}, asyncio)" ;;
        *) echo "$1" ;;
    esac
}

# bench_start_peer KIND NAME [--deflate]: starts an echo server of KIND (ceiling, ws,
# websockets) on a free port; sets PEER_PID and PEER_URL.
bench_start_peer() {
    local kind="$1" name="$2" deflate="${3:-}"
    local -a argv
    case "$kind" in
        ceiling)
            [ -z "$deflate" ] || die "ceiling-echo has no permessage-deflate"
            argv=("$BIN/ceiling-echo" --listen 127.0.0.1:0) ;;
        ws) argv=(node "$PEERS_DIR/ws-echo.mjs" --listen 127.0.0.1:0 ${deflate:+--deflate}) ;;
        websockets) argv=("$VENV_PY" "$PEERS_DIR/websockets_echo.py" --listen 127.0.0.1:0 ${deflate:+--deflate}) ;;
        *) die "unknown peer $kind" ;;
    esac
    bench_start_listener "$name" "$kind" "${argv[@]}"
    PEER_PID=$LISTENER_PID
    PEER_URL="ws://$ADDR/"
}

# bench_loadgen NAME LIMIT_SECS ARGS...: one loadgen run, bounded by LIMIT_SECS; its JSON
# line in LINE (empty when it printed none), its stderr in NAME.log.
bench_loadgen() {
    local name="$1" limit="$2"
    shift 2
    timeout -k 5 "$limit" "$LOADGEN" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log" || true
    LINE=$(tail -n 1 "$OUT/$name.json" 2>/dev/null || true)
}

# bench_record RESULTS JSON KEY=VALUE...: appends JSON with the fields added (a value that
# parses as JSON stays a number/bool, anything else is a string).
bench_record() {
    python3 - "$@" <<'EOF'
import json, sys
path, line = sys.argv[1:3]
r = json.loads(line or "{}")
for kv in sys.argv[3:]:
    k, v = kv.split("=", 1)
    try:
        r[k] = json.loads(v)
    except ValueError:
        r[k] = v
with open(path, "a") as f:
    f.write(json.dumps(r) + "\n")
EOF
}
