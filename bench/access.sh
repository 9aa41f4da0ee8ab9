#!/usr/bin/env bash
# `[access]` overhead benchmark (issue 17: echo and function round trip with `[access]`
# fully configured against unconfigured, same run, target ≤ 3 % difference), on loopback.
#
# Two gateways per path, started once and kept for the whole run: A without `[access]`,
# B with every `[access]` key set (origin patterns, require_origin, allow/deny CIDRs and,
# with ACCESS_KEYS=full, the per-IP and per-user connection limits and the per-user
# message rate, all too high to trip). Both have the same JWT authorizer (HS256, a secret
# made at start, `userId` from `sub`, token from the `Authorization: Bearer` header), so
# the per-user rules have a user; the token is minted here with a 10-year `exp`.
# - echo: `$default` is the builtin echo (two-way); `loadgen echo`, CONNS connections,
#   SIZE-byte text, closed loop: msgs/s and gateway CPU µs per message;
# - function: `$default` is an `http` function served by fn-backend (`--mode lambda`,
#   shared by both gateways); the same load: msgs/s and gateway CPU µs per message;
# - connect: `loadgen connect-rate` (CONNECT_CONCURRENCY workers) against the echo
#   gateways: connections/s (TCP, handshake with origin, IP and token checks, clean close).
# ROUNDS rounds; each runs A and B back to back for each path, which one first alternating
# round by round. CPU is utime+stime of the gateway from /proc/PID/stat before and after
# each loadgen run (connect, warmup, measurement, close), divided by every message of it.
# Prints, per metric, each round's ratio B/A, the median ratio and both medians.
#
# Clients of both gateways send the same two headers: `Authorization: Bearer TOKEN` and an
# `Origin`. B's is `https://bench.example.com` (allowed by B). A gateway without `[access]`
# allows only its own origin (docs/config.md, `allowed_origins` empty), so A's clients send
# A's own, `http://127.0.0.1:PORT`, as a page served by the gateway would (A_ORIGIN=none:
# no Origin at A, which then skips the origin check altogether).
# Before measuring, sanity checks abort the run unless: every gateway echoes with the
# token; every gateway refuses a handshake without a token (401); B refuses the origin
# https://evil.example.net and a handshake without Origin (403).
#
# Usage: bench/access.sh
# Environment knobs (defaults in brackets):
#   ROUNDS [5]               rounds (each: A and B once per path)
#   SECS [5] WARMUP [1]      measured seconds and warmup of each echo/function run
#   CONNS [100] SIZE [64]    connections and message bytes of the echo/function runs
#   CONNECT_SECS [SECS]      seconds of each connect-rate run
#   CONNECT_CONCURRENCY [50] connect-rate workers
#   PATHS ["echo function connect"]  which of the three to run
#   ACCESS_KEYS [full]       full: B's [access] has all nine keys; basic: only
#                            allowed_origins, require_origin, allow_ips, deny_ips (for a
#                            build without the per-IP/per-user limits, which refuses them)
#   A_ORIGIN [same]          same: A's clients send A's own origin; none: no Origin to A
#   BACKEND_SERVER [minimal] fn-backend's HTTP server: minimal or hyper
#   NO_BUILD [0]             1: skip the cargo build (use the binaries in target/release)
# Needs: curl, python3.
# Raw results: target/access-bench/<timestamp>/{results.jsonl,summary.md,*.toml,*.log}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "" ROUNDS SECS WARMUP CONNS SIZE CONNECT_SECS CONNECT_CONCURRENCY PATHS ACCESS_KEYS A_ORIGIN \
    BACKEND_SERVER NO_BUILD
bench_args "$@"

ROUNDS="${ROUNDS:-5}"
SECS="${SECS:-5}"
WARMUP="${WARMUP:-1}"
CONNS="${CONNS:-100}"
SIZE="${SIZE:-64}"
CONNECT_SECS="${CONNECT_SECS:-$SECS}"
CONNECT_CONCURRENCY="${CONNECT_CONCURRENCY:-50}"
PATHS="${PATHS:-echo function connect}"
ACCESS_KEYS="${ACCESS_KEYS:-full}"
A_ORIGIN="${A_ORIGIN:-same}"
BACKEND_SERVER="${BACKEND_SERVER:-minimal}"
bad() { echo "access.sh: $*" >&2; exit 2; }
case "$ACCESS_KEYS" in basic | full) ;; *) bad "ACCESS_KEYS must be basic or full, not $ACCESS_KEYS" ;; esac
case "$A_ORIGIN" in same | none) ;; *) bad "A_ORIGIN must be same or none, not $A_ORIGIN" ;; esac
case "$BACKEND_SERVER" in minimal | hyper) ;; *) bad "BACKEND_SERVER must be minimal or hyper, not $BACKEND_SERVER" ;; esac
for p in $PATHS; do
    case "$p" in echo | function | connect) ;; *) bad "unknown path $p (echo, function, connect)" ;; esac
done
[ "$ROUNDS" -ge 1 ] 2>/dev/null || bad "ROUNDS must be a positive integer"

bench_init
trap 'bench_cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM

bench_build
bench_need switchboard loadgen fn-backend
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# credentials

SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
TOKEN="$(bench_hs256_token "$SECRET" bench-user)"
AUTH="Authorization: Bearer $TOKEN"
GOOD_ORIGIN="https://bench.example.com"
EVIL_ORIGIN="https://evil.example.net"

AUTHORIZER="[authorizer]
kind = \"jwt\"
algorithms = [\"HS256\"]
secret = \"$SECRET\"
token_sources = [\"header\"]
user_id_claim = \"sub\""

ACCESS='[access]
allowed_origins = ["https://bench.example.com", "https://*.example.org"]
require_origin = true
allow_ips = ["127.0.0.0/8", "::1/128"]
deny_ips = ["10.0.0.0/8", "192.0.2.0/24"]'
if [ "$ACCESS_KEYS" = full ]; then
    ACCESS+='
max_connections_per_ip = 100000
max_connections_per_user = 100000
on_user_limit = "reject"
messages_per_sec_per_user = 10000000
messages_burst_per_user = 10000000'
fi

# ---------------------------------------------------------------------------------------
# gateways

BACKEND_ADDR="127.0.0.1:$(bench_free_port)"
bench_start_listener fn-backend "fn-backend (lambda, $BACKEND_SERVER)" "$BIN/fn-backend" \
    --mode lambda --server "$BACKEND_SERVER" --listen "$BACKEND_ADDR"
BACKEND_PID=$LISTENER_PID

declare -A GW_PIDS GW_URLS ORIGIN
# start PATH SIDE: the gateway of PATH (echo, function) for SIDE (A, B).
start() {
    local path="$1" side="$2" name="gateway-$1-$2" function access=""
    if [ "$path" = echo ]; then
        function='[functions.echo]
kind = "builtin"
name = "echo"'
    else
        function="[functions.echo]
kind = \"http\"
url = \"http://$BACKEND_ADDR/\"
max_concurrency = 256"
    fi
    [ "$side" = A ] || access="$ACCESS"
    bench_gateway_toml "$OUT/$name.toml" <<EOF
[management]
auth = "none"

$AUTHORIZER

$function

[routes."\$default"]
function = "echo"
two_way = true

$access
EOF
    if ! bench_try_gateway "$name" "$OUT/$name.toml"; then
        local hint=""
        if [ "$side" = B ] && [ "$ACCESS_KEYS" = full ]; then
            hint="; a build without the per-IP/per-user [access] keys refuses them (ACCESS_KEYS=basic leaves them out)"
        fi
        [ "$NOT_READY" != exited ] || NOT_READY="exited at start"
        die "switchboard ($name) $NOT_READY (see $OUT/$name.log)$hint"
    fi
    GW_PIDS[$path-$side]=$GW_PID # set by bench_start_gateway
    GW_URLS[$path-$side]=$GW_URL
    if [ "$side" = B ]; then
        ORIGIN[$path-$side]="$GOOD_ORIGIN"
    elif [ "$A_ORIGIN" = same ]; then
        ORIGIN[$path-$side]="http://127.0.0.1:$GW_PORT"
    else
        ORIGIN[$path-$side]=""
    fi
    log "$path gateway $side ready on 127.0.0.1:$GW_PORT"
}
for path in echo function; do
    for side in A B; do start "$path" "$side"; done
done

# headers KEY: the --header arguments the clients of gateway KEY (PATH-SIDE) send.
headers() {
    HEADERS=(--header "$AUTH")
    [ -z "${ORIGIN[$1]}" ] || HEADERS+=(--header "Origin: ${ORIGIN[$1]}")
}

# ---------------------------------------------------------------------------------------
# sanity checks: the figure must not be measured against a misconfigured gateway

# probe NAME URL [LOADGEN_ARGS...]: one handshake; sets STATUS to 101 when it opened, else
# to the HTTP status of the refusal (or "error: ..." when there was none).
probe() {
    local name="$1" url="$2"
    shift 2
    bench_loadgen "probe-$name" 30 connect-rate --url "$url" --concurrency 1 --duration 5 \
        --max-connections 1 "$@"
    STATUS=$(python3 -c '
import json, re, sys
r = json.loads(sys.argv[1] or "{}")
if r.get("connections") == 1:
    print(101)
else:
    e = r.get("first_error") or "no result"
    m = re.search(r"handshake answered Some\((\d+)\)", e)
    print(m.group(1) if m else "error: " + e)' "$LINE")
}

# expect NAME WANT URL [LOADGEN_ARGS...]: probe, dying unless STATUS is WANT.
expect() {
    local name="$1" want="$2"
    shift 2
    probe "$name" "$@"
    [ "$STATUS" = "$want" ] || die "sanity check $name: expected $want, got $STATUS (see $OUT/probe-$name.log)"
}

for key in echo-A echo-B function-A function-B; do
    headers "$key"
    # One echo through every gateway, with the headers of the measured runs.
    bench_loadgen "smoke-$key" 30 echo --url "${GW_URLS[$key]}" "${HEADERS[@]}" --connections 1 \
        --size "$SIZE" --duration 0.5 --warmup 0
    python3 -c 'import json, sys; r = json.loads(sys.argv[1]); sys.exit(0 if r["errors"] == 0 and r["messages"] > 0 else 1)' \
        "$LINE" 2>/dev/null || die "smoke test against $key failed (see $OUT/smoke-$key.log)"
    # The same headers without the token.
    expect "$key-no-token" 401 "${GW_URLS[$key]}" "${HEADERS[@]:2}"
done
for path in echo function; do
    url="${GW_URLS[$path-B]}"
    expect "$path-B-evil-origin" 403 "$url" --header "$AUTH" --header "Origin: $EVIL_ORIGIN"
    expect "$path-B-no-origin" 403 "$url" --header "$AUTH"
done
log "sanity checks passed: all four echo with the token and refuse a handshake without it (401); B refuses $EVIL_ORIGIN and no Origin (403)"

# ---------------------------------------------------------------------------------------
# runs

# measure PATH SIDE ROUND POSITION: one loadgen run; appends a result line.
measure() {
    local path="$1" side="$2" round="$3" pos="$4" key name limit g0 b0 g1 b1 gw="$1"
    [ "$path" = connect ] && gw="echo"
    key="$gw-$side"
    name="$path-$side-$round"
    headers "$key"
    g0=$(bench_cpu_ticks "${GW_PIDS[$key]}"); b0=$(bench_cpu_ticks "$BACKEND_PID")
    if [ "$path" = connect ]; then
        limit=$(python3 -c "import math; print(math.ceil($CONNECT_SECS) + 40)")
        bench_loadgen "$name" "$limit" connect-rate --url "${GW_URLS[$key]}" "${HEADERS[@]}" \
            --concurrency "$CONNECT_CONCURRENCY" --duration "$CONNECT_SECS"
    else
        limit=$(python3 -c "import math; print(math.ceil($SECS + $WARMUP) + 40)")
        bench_loadgen "$name" "$limit" echo --url "${GW_URLS[$key]}" "${HEADERS[@]}" \
            --connections "$CONNS" --size "$SIZE" --duration "$SECS" --warmup "$WARMUP"
    fi
    g1=$(bench_cpu_ticks "${GW_PIDS[$key]}"); b1=$(bench_cpu_ticks "$BACKEND_PID")
    [ -n "$LINE" ] || die "loadgen failed against $key (see $OUT/$name.log): $(tail -n 3 "$OUT/$name.log")"
    bench_record "$RESULTS" "$LINE" path="$path" side="$side" round="$round" position="$pos" \
        gateway_cpu_s="$(bench_cpu_secs $((g1 - g0)))" backend_cpu_s="$(bench_cpu_secs $((b1 - b0)))"
    python3 -c '
import json, sys
r = json.loads(sys.argv[1])
if r["path"] == "connect":
    print("connect %s round %d: %.0f connections/s, handshake p50 %.2f ms, gateway CPU %.1f µs/connection, %d errors" % (
        r["side"], r["round"], r["conns_per_s"], r["handshake_p50_us"] / 1e3, 1e6 * r["gateway_cpu_s"] / max(r["connections"], 1), r["errors"]))
else:
    print("%s %s round %d: %.0f msgs/s, p50 %.2f ms, gateway CPU %.2f µs/msg, %d errors" % (
        r["path"], r["side"], r["round"], r["msgs_per_s"], r["p50_us"] / 1e3, 1e6 * r["gateway_cpu_s"] / max(r["messages_total"], 1), r["errors"]))' \
        "$(tail -n 1 "$RESULTS")" | while read -r l; do log "$l"; done
}

for round in $(seq 1 "$ROUNDS"); do
    for path in $PATHS; do
        pos=1
        while read -r side; do
            measure "$path" "$side" "$round" "$pos"
            pos=$((pos + 1))
        done < <(bench_rotate $((round - 1)) A B)
    done
done

# ---------------------------------------------------------------------------------------
# summary

python3 - "$RESULTS" "$COMMAND" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$ACCESS_KEYS" "$A_ORIGIN" "$CONNS" "$SIZE" "$SECS" "$WARMUP" "$CONNECT_SECS" "$CONNECT_CONCURRENCY" \
    "$BACKEND_SERVER" "$(nproc)" "$LOAD_AT_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(($(date +%s) - T0))" \
    "$ACCESS" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys, time
(path, command, commit, keys, a_origin, conns, size, secs, warmup, csecs, cconc, backend, nproc,
 load0, load1, took, access) = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
for r in rows:
    n = r.get("messages_total", r.get("connections", 0))
    r["cpu_us"] = 1e6 * r["gateway_cpu_s"] / n if n else None

# (path, label, key, better, unit, decimals): better is +1 when higher is better.
METRICS = [
    ("echo", "echo msgs/s", "msgs_per_s", 1, 0),
    ("echo", "echo gateway CPU µs / message", "cpu_us", -1, 2),
    ("function", "function msgs/s", "msgs_per_s", 1, 0),
    ("function", "function gateway CPU µs / message", "cpu_us", -1, 2),
    ("connect", "connections/s", "conns_per_s", 1, 0),
    ("connect", "gateway CPU µs / connection", "cpu_us", -1, 1),
]

def f(x, d):
    return "–" if x is None else f"{x:,.{d}f}"

out = [f"## `[access]` overhead — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", ""]
out.append(f"A: no `[access]`; B: `[access]` with {'all nine keys' if keys == 'full' else 'the four basic keys (ACCESS_KEYS=basic)'}. "
           f"Both: the same JWT authorizer (HS256, `userId` from `sub`, `Authorization: Bearer`). echo: builtin echo "
           f"as `$default`; function: `$default` to an `http` function (fn-backend, `--server {backend}`); "
           f"{conns} connections, {size} B text, closed loop, {warmup} s warmup + {secs} s per run. connect: "
           f"`loadgen connect-rate`, {cconc} workers, {csecs} s per run, against the echo gateways. Each round runs "
           f"A and B back to back per path, the first of the two alternating round by round. B's clients send "
           f"`Origin: https://bench.example.com`; A's " + ("their gateway's own origin (A allows only that)." if a_origin == "same" else "no Origin."))
out.append("")
out.append("| metric | A median | B median | B/A median | B/A per round | difference | target ≤ 3 % |")
out.append("| --- | ---: | ---: | ---: | --- | ---: | --- |")
for p, label, key, better, d in METRICS:
    a = {r["round"]: r for r in rows if r["path"] == p and r["side"] == "A" and r.get(key) is not None}
    b = {r["round"]: r for r in rows if r["path"] == p and r["side"] == "B" and r.get(key) is not None}
    if not a or not b:
        continue
    ratios = [b[k][key] / a[k][key] for k in sorted(a) if k in b and a[k][key]]
    if not ratios:
        continue
    m = statistics.median(ratios)
    # A cost of B's: lower throughput or higher CPU, in percent of A.
    cost = (1 - m) * 100 if better > 0 else (m - 1) * 100
    verdict = "met" if cost <= 3 else "**NOT met**"
    out.append(f"| {label} | {f(statistics.median(r[key] for r in a.values()), d)} | "
               f"{f(statistics.median(r[key] for r in b.values()), d)} | {m:.3f} | "
               f"{', '.join(f'{x:.3f}' for x in ratios)} | {cost:+.1f} % | {verdict} |")
out.append("")
out.append("\"difference\" is B's cost: how much lower B's rate, or higher its CPU, is than A's (median of the "
           "per-round ratios; negative: B did better, i.e. noise). Gateway CPU spans each whole loadgen run "
           "(connect, warmup, measurement, close) divided by every message (connection) of it.")
errs = [r for r in rows if r.get("errors")]
for r in errs:
    out.append(f"- ⚠ {r['path']} {r['side']} round {r['round']}: {r['errors']} errors ({r.get('first_error')})")
out.append(f"- Machine: `nproc` = {nproc}; load average {load0} at start, {load1} at end. Gateways, fn-backend "
           f"and loadgen share the same cores.")
out.append(f"- command: `{command}` (commit {commit}; took {took} s).")
out.append("")
out.append("<details><summary>B's [access] and all runs</summary>")
out.append("")
out.append("```toml")
out.append(access)
out.append("```")
out.append("")
out.append("| path | round | position | side | rate | p50 ms | gateway CPU s | gateway CPU µs / unit | errors |")
out.append("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
for r in sorted(rows, key=lambda r: (r["round"], r["path"], r["position"])):
    rate = r.get("msgs_per_s", r.get("conns_per_s"))
    p50 = r.get("p50_us", r.get("handshake_p50_us"))
    out.append(f"| {r['path']} | {r['round']} | {r['position']} | {r['side']} | {f(rate, 0)} | {p50 / 1e3:.2f} | "
               f"{r['gateway_cpu_s']:.2f} | {f(r['cpu_us'], 2)} | {r['errors']} |")
out.append("")
out.append("</details>")
print("\n".join(out))
EOF
bench_done
