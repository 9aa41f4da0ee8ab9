#!/usr/bin/env bash
# Soak test, on loopback only: SOAK_SECS (600) of mixed traffic against one switchboard
# node ("single"), then against three nodes sharing a Redis ("cluster"; redis-server is
# started here on a free port with a scratch directory), with one node killed with
# SIGKILL halfway through the cluster run and restarted SOAK_DOWN_SECS later. Every
# process is started and stopped here; every wait is bounded, and the script stops by
# itself (SOAK_SECS + about 2 minutes per run).
#
# Traffic (target/release/soak load, all at once, for SOAK_SECS):
#   churn      SOAK_CHURN connections/s, each: handshake, one echo, a life of up to
#              1.5 s, then a close handshake (70 %) or a dropped TCP connection
#   echo       SOAK_ECHO_CONNS long-lived connections, SOAK_ECHO_RATE messages/s each,
#              every answer checked byte for byte (half with permessage-deflate)
#   fan-out    SOAK_FAN_MEMBERS members of one group, SOAK_FAN_RATE numbered group
#              messages/s through `POST /v1/groups/{g}/messages` of each node in turn;
#              each member connection checked for gaps and repeats
#   resumable  SOAK_RESUMABLE Rust SDK clients (switchboard.v1) through a TCP proxy that
#              balances without affinity and cuts every socket after a random life in
#              SOAK_CUT_MS (both ends dropped, half of them with a reset): numbered
#              messages each way at SOAK_RESUMABLE_RATE/s, client -> `rec` route -> the
#              events function, and `POST /@connections/{id}` -> client; every number
#              checked for exactly once
#   management SOAK_MIX_RATE calls/s of /v1 and @connections: get, state, user, user
#              sends, batch, member listing, broadcast, join/leave, DELETE of a member
# `$connect` and `$disconnect` of every connection go to an HTTP function
# (target/release/soak events) that pairs them per connection id, per node and per node
# run (a restarted node is a second run: ids carry the node and its incarnation).
#
# Printed per run (summary.md): messages sent/delivered/lost/doubled for the resumable
# clients (target: 0 lost, 0 doubled; a message whose session was replaced by a fresh
# one because its node died is counted apart), each node's RSS once warm (after
# SOAK_WARM_SECS of traffic), at the middle and at the end (target: growth <= 10 %),
# panics in the gateway logs (target 0), and `$disconnect`s against connections opened
# (target: every `$connect` has exactly one `$disconnect`). Exit status 1 when a target
# is missed, after the summary.
#
# Usage: bench/soak.sh          (try it: SOAK_SECS=60 bench/soak.sh)
# Environment knobs (defaults in brackets):
#   SOAK_SECS [600]         seconds of traffic per run
#   SOAK_RUNS ["single cluster"]
#   SOAK_WARM_SECS [min(120, SOAK_SECS/5)]  traffic seconds before the "warm" RSS
#   SOAK_KILL_NODE [node-b] SOAK_DOWN_SECS [15]   which node is killed, and for how long
#                           (above the cluster's node_ttl_secs = 10: survivors reap it)
#   SOAK_KEEP [1]           cluster: [resume] keep_in_backplane
#   SOAK_WINDOW_SECS [20]   [resume] window_secs
#   SOAK_CHURN [20] SOAK_ECHO_CONNS [40] SOAK_ECHO_RATE [10] SOAK_FAN_MEMBERS [150]
#   SOAK_FAN_RATE [5] SOAK_RESUMABLE [24] SOAK_RESUMABLE_RATE [8] SOAK_MIX_RATE [5]
#   SOAK_CUT_MS [300-5000]  life of a proxied connection before its cut, ms
#   SOAK_RSS_EVERY [5]      seconds between RSS samples
#   NO_BUILD [0]            1: skip the cargo build (use the binaries in target/release)
# Needs redis-server (cluster run), curl, python3.
# Raw results: target/soak-bench/<timestamp>/{summary.md,*-load.json,*-events*.json,
#   *-rss.tsv,*.log,*.toml}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "$*" SOAK_SECS SOAK_RUNS SOAK_WARM_SECS SOAK_KILL_NODE SOAK_DOWN_SECS SOAK_KEEP \
    SOAK_WINDOW_SECS SOAK_CHURN SOAK_ECHO_CONNS SOAK_ECHO_RATE SOAK_FAN_MEMBERS SOAK_FAN_RATE \
    SOAK_RESUMABLE SOAK_RESUMABLE_RATE SOAK_MIX_RATE SOAK_CUT_MS SOAK_RSS_EVERY NO_BUILD
bench_args "$@"

SOAK_SECS="${SOAK_SECS:-600}"
case "$SOAK_SECS" in '' | *[!0-9]*) echo "SOAK_SECS must be whole seconds" >&2; exit 2 ;; esac
[ "$SOAK_SECS" -ge 30 ] || { echo "SOAK_SECS must be at least 30" >&2; exit 2; }
SOAK_RUNS="${SOAK_RUNS:-single cluster}"
SOAK_WARM_SECS="${SOAK_WARM_SECS:-$((SOAK_SECS / 5 < 120 ? SOAK_SECS / 5 : 120))}"
SOAK_KILL_NODE="${SOAK_KILL_NODE:-node-b}"
SOAK_DOWN_SECS="${SOAK_DOWN_SECS:-15}"
SOAK_KEEP="${SOAK_KEEP:-1}"
SOAK_WINDOW_SECS="${SOAK_WINDOW_SECS:-20}"
SOAK_CHURN="${SOAK_CHURN:-20}"
SOAK_ECHO_CONNS="${SOAK_ECHO_CONNS:-40}"
SOAK_ECHO_RATE="${SOAK_ECHO_RATE:-10}"
SOAK_FAN_MEMBERS="${SOAK_FAN_MEMBERS:-150}"
SOAK_FAN_RATE="${SOAK_FAN_RATE:-5}"
SOAK_RESUMABLE="${SOAK_RESUMABLE:-24}"
SOAK_RESUMABLE_RATE="${SOAK_RESUMABLE_RATE:-8}"
SOAK_MIX_RATE="${SOAK_MIX_RATE:-5}"
SOAK_CUT_MS="${SOAK_CUT_MS:-300-5000}"
SOAK_RSS_EVERY="${SOAK_RSS_EVERY:-5}"
CONFIG="$ROOT/bench/soak/gateway.toml"
TOKEN="soak-bearer-token-not-a-secret"
# The load's own bounds after the traffic (see `soak load --help`).
DRAIN_SECS=30
SETTLE_SECS=$((SOAK_WINDOW_SECS + 40))

CUT_MIN="${SOAK_CUT_MS%-*}"
CUT_MAX="${SOAK_CUT_MS#*-}"

bench_init --no-results
ulimit -n "$(ulimit -Hn)"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/sb-soak.XXXXXX")"
TEMPS+=("$SCRATCH")
trap 'bench_cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM

bench_build
bench_need switchboard soak
for run in $SOAK_RUNS; do
    case "$run" in
        single) ;;
        cluster) command -v redis-server >/dev/null || die "redis-server not found (the cluster run needs it)" ;;
        *) die "unknown run $run (single, cluster)" ;;
    esac
done
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
T1=$(date +%s)
# What the gateway binary was built from (the tree may hold others' uncommitted work).
GATEWAY_BUILT="$(date -u -r "$GATEWAY" '+%Y-%m-%d %H:%M UTC'); tree at start: commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -c . || true) files modified or new"

now_ms() { date +%s%3N; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start_redis: redis-server on a free port (5 tries); sets REDIS_PID and REDIS_URL.
start_redis() {
    local port attempt i
    mkdir -p "$SCRATCH/redis"
    for attempt in 1 2 3 4 5; do
        port=$(bench_free_port)
        redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
            --dir "$SCRATCH/redis" >"$OUT/redis.log" 2>&1 &
        REDIS_PID=$!
        PIDS+=("$REDIS_PID")
        for i in $(seq 1 100); do
            kill -0 "$REDIS_PID" 2>/dev/null || break
            if port_open "$port"; then
                REDIS_URL="redis://127.0.0.1:$port"
                log "redis on 127.0.0.1:$port (pid $REDIS_PID)"
                return 0
            fi
            sleep 0.1
        done
        bench_stop "$REDIS_PID" 2
        log "warning: redis did not start on port $port (attempt $attempt)"
    done
    die "redis did not start (see $OUT/redis.log)"
}

declare -A NODE_WS NODE_MPORT NODE_ENV
# start_node RUN NAME: a gateway with CONFIG and the run's overrides, on the node's ports
# (picked on its first start, kept for a restart); its pid in OUT/RUN-pids/NAME.
start_node() {
    local run="$1" name="$2"
    if [ -z "${NODE_WS[$name]:-}" ]; then
        GW_PORT=$(bench_free_port)
        GW_MPORT=$(bench_free_port)
        NODE_WS[$name]=$GW_PORT
        NODE_MPORT[$name]=$GW_MPORT
    fi
    GW_PORT=${NODE_WS[$name]}
    GW_MPORT=${NODE_MPORT[$name]}
    # shellcheck disable=SC2086 # NODE_ENV holds VAR=VALUE words without spaces
    bench_start_gateway "$run-$name" "$CONFIG" SWITCHBOARD_SERVER__NODE_ID="$name" ${NODE_ENV[$run]}
    echo "$GW_PID" >"$OUT/$run-pids/$name"
}

# sample_rss RUN NAME...: appends `unix_ms node pid rss_kib` for each node every
# SOAK_RSS_EVERY s until killed (a restarted node has a new pid).
sample_rss() {
    local run="$1" n pid rss
    shift
    while true; do
        for n in "$@"; do
            pid=$(cat "$OUT/$run-pids/$n" 2>/dev/null || true)
            [ -n "$pid" ] || continue
            rss=$(bench_rss_kib "$pid" 2>/dev/null || true)
            [ -n "$rss" ] && echo "$(now_ms) $n $pid $rss" >>"$OUT/$run-rss.tsv"
        done
        sleep "$SOAK_RSS_EVERY"
    done
}

# soak_run RUN: one run (single or cluster), start to summary inputs.
soak_run() {
    local run="$1" n i ready_ms load_pid sampler_pid fn_pid kill_at
    local -a names node_args
    if [ "$run" = cluster ]; then names=(node-a node-b node-c); else names=(node-a); fi
    log "== $run: ${names[*]}, ${SOAK_SECS}s of traffic =="
    mkdir -p "$OUT/$run-pids"
    : >"$OUT/$run-rss.tsv"
    NODE_WS=()
    NODE_MPORT=()

    bench_start_listener "$run-events" "soak events" "$BIN/soak" events \
        --listen 127.0.0.1:0 --nodes "$(IFS=,; echo "${names[*]}")"
    fn_pid=$LISTENER_PID
    local fn_url="http://$ADDR"

    NODE_ENV[$run]="SWITCHBOARD_FUNCTIONS__EVENTS__URL=$fn_url/ SWITCHBOARD_RESUME__WINDOW_SECS=$SOAK_WINDOW_SECS"
    if [ "$run" = cluster ]; then
        start_redis
        local keep=false
        [ "$SOAK_KEEP" = 1 ] && keep=true
        NODE_ENV[$run]+=" SWITCHBOARD_CLUSTER__BACKPLANE=redis SWITCHBOARD_CLUSTER__URLS=[\"$REDIS_URL\"] SWITCHBOARD_RESUME__KEEP_IN_BACKPLANE=$keep"
    fi
    for n in "${names[@]}"; do
        start_node "$run" "$n"
        node_args+=(--node "$n,ws://127.0.0.1:${NODE_WS[$n]}/,http://127.0.0.1:${NODE_MPORT[$n]}")
    done
    log "nodes: $(for n in "${names[@]}"; do printf '%s ws %s mgmt %s; ' "$n" "${NODE_WS[$n]}" "${NODE_MPORT[$n]}"; done)"

    sample_rss "$run" "${names[@]}" &
    sampler_pid=$!
    PIDS+=("$sampler_pid")

    rm -f "$OUT/$run-kill.json"
    timeout -k 5 $((SOAK_SECS + DRAIN_SECS + SETTLE_SECS + 180)) "$BIN/soak" load "${node_args[@]}" \
        --events-url "$fn_url" --token "$TOKEN" --secs "$SOAK_SECS" \
        --churn-per-sec "$SOAK_CHURN" --echo-conns "$SOAK_ECHO_CONNS" --echo-per-sec "$SOAK_ECHO_RATE" \
        --fan-members "$SOAK_FAN_MEMBERS" --fan-per-sec "$SOAK_FAN_RATE" \
        --resumable "$SOAK_RESUMABLE" --resumable-per-sec "$SOAK_RESUMABLE_RATE" \
        --cut-min-ms "$CUT_MIN" --cut-max-ms "$CUT_MAX" --mix-per-sec "$SOAK_MIX_RATE" \
        --drain-secs "$DRAIN_SECS" --settle-secs "$SETTLE_SECS" --kill-file "$OUT/$run-kill.json" \
        >"$OUT/$run-load.json" 2>"$OUT/$run-load.log" &
    load_pid=$!
    PIDS+=("$load_pid")
    tail -n +1 -f --pid="$load_pid" "$OUT/$run-load.log" 2>/dev/null | sed -u 's/^/    /' >&2 &

    for i in $(seq 1 1200); do
        grep -q '^READY' "$OUT/$run-load.log" 2>/dev/null && break
        kill -0 "$load_pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^READY' "$OUT/$run-load.log" || die "soak load never got READY (see $OUT/$run-load.log)"
    ready_ms=$(now_ms)
    echo "{\"traffic_start_ms\": $ready_ms}" >"$OUT/$run-times.json"

    if [ "$run" = cluster ]; then
        kill_at=$((ready_ms + SOAK_SECS * 500))
        while [ "$(now_ms)" -lt "$kill_at" ] && kill -0 "$load_pid" 2>/dev/null; do sleep 0.2; done
        local victim_pid killed_ms
        victim_pid=$(cat "$OUT/$run-pids/$SOAK_KILL_NODE")
        killed_ms=$(now_ms)
        kill -KILL "$victim_pid"
        wait "$victim_pid" 2>/dev/null || true
        bench_forget "$victim_pid"
        echo "{\"killed_ms\": $killed_ms}" >"$OUT/$run-kill.json"
        log "killed $SOAK_KILL_NODE (pid $victim_pid) with SIGKILL; restarting it in ${SOAK_DOWN_SECS}s"
        sleep "$SOAK_DOWN_SECS"
        local restarted_ms
        restarted_ms=$(now_ms)
        start_node "$run" "$SOAK_KILL_NODE"
        echo "{\"killed_ms\": $killed_ms, \"restarted_ms\": $restarted_ms, \"ready_ms\": $(now_ms), \"node\": \"$SOAK_KILL_NODE\", \"old_pid\": $victim_pid, \"new_pid\": $GW_PID}" \
            >"$OUT/$run-kill.json"
        log "$SOAK_KILL_NODE is back (pid $GW_PID)"
    fi

    wait "$load_pid" || log "warning: soak load ($run) exited with an error: $(tail -n 2 "$OUT/$run-load.log" | tr '\n' ' ')"
    bench_forget "$load_pid"
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    bench_forget "$sampler_pid"

    # What the function has now; then stop the nodes (a `$disconnect` invoked at shutdown
    # belongs to a connection that had not ended) and look again.
    curl -fsS --max-time 10 "$fn_url/stats" >"$OUT/$run-events-before-shutdown.json" || true
    for n in "${names[@]}"; do
        curl -fsS --max-time 5 "http://127.0.0.1:${NODE_MPORT[$n]}/metrics" >"$OUT/$run-$n.metrics" 2>/dev/null || true
    done
    for n in "${names[@]}"; do bench_stop "$(cat "$OUT/$run-pids/$n")" 10; done
    curl -fsS --max-time 10 "$fn_url/stats" >"$OUT/$run-events-after-shutdown.json" || true
    bench_stop "$fn_pid" 5
    [ "$run" != cluster ] || bench_stop "$REDIS_PID" 5
    for n in "${names[@]}"; do
        echo "$n $(grep -c 'panicked' "$OUT/$run-$n.log" || true)"
    done >"$OUT/$run-panics.txt"
}

for run in $SOAK_RUNS; do soak_run "$run"; done
LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# summary

set +e
python3 - "$OUT" "$SOAK_RUNS" "$COMMAND" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T1))" \
    "$LOAD_AT_START" "$LOAD_AT_END" "$SOAK_SECS" "$SOAK_WARM_SECS" "$SOAK_KILL_NODE" "$SOAK_KEEP" \
    "$SOAK_WINDOW_SECS" "$SOAK_DOWN_SECS" "$(redis-server --version 2>/dev/null | sed -n 's/.*v=\([^ ]*\).*/redis \1/p')" \
    "$GATEWAY_BUILT" \
    >"$OUT/summary.md" <<'EOF'
import json, sys
(out, runs, command, nproc, date, commit, took, load0, load1, secs, warm, victim, keep,
 window, down, redis, built) = sys.argv[1:]
secs, warm = int(secs), int(warm)
runs = runs.split()
failed = []

def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default

def n(x):
    return "–" if x is None else f"{x:,}"

o = [f"## Soak — {date}", ""]
o.append(f"- command: `{command}` (commit {commit}; took {took} s after the build)")
o.append(f"- machine: `nproc` = {nproc}; load average {load0} at start, {load1} at the end; "
         "nodes, Redis, the events function and the load share it, loopback only")
o.append(f"- gateway binary built {built}")
o.append(f"- {secs} s of traffic per run; RSS warm after {warm} s; resume window {window} s"
         + (f"; cluster: Redis backplane ({redis or 'redis'}), keep_in_backplane = {'true' if keep == '1' else 'false'}, "
            f"{victim} killed with SIGKILL at half time and restarted {down} s later" if "cluster" in runs else ""))
o.append("")

for run in runs:
    r = load(f"{out}/{run}-load.json")
    ev_after = load(f"{out}/{run}-events-after-shutdown.json", {})
    times = load(f"{out}/{run}-times.json", {})
    kill = load(f"{out}/{run}-kill.json")
    o.append(f"### {run}" + (f" (3 nodes, {kill['node']} killed at {(kill['killed_ms'] - times.get('traffic_start_ms', kill['killed_ms'])) / 1000:.0f} s, back {(kill['ready_ms'] - kill['killed_ms']) / 1000:.1f} s later)" if kill and 'ready_ms' in kill else " (1 node)"))
    o.append("")
    if not r:
        o.append(f"**no result** (see {run}-load.log)")
        o.append("")
        failed.append(f"{run}: no result")
        continue
    res = r["resumable"]
    s2c, c2s = res["server_to_client"], res["client_to_server"]
    ev = r["events"]
    lost_bad = s2c["lost_in_session"] + c2s["lost"]
    dbl_bad = s2c["doubled"] + c2s["doubled_same_connection"]
    o.append("| check | figure | target |")
    o.append("| --- | --- | --- |")
    o.append(f"| resumable server → client (`@connections` by id): sent / delivered / lost / doubled | "
             f"{n(s2c['sent'])} / {n(s2c['delivered'])} / **{n(s2c['lost'])}** / **{n(s2c['doubled'])}** | 0 lost, 0 doubled |")
    if s2c["lost_with_session"] or s2c["fresh_sessions_around_kill"] or s2c["doubled_after_unanswered_retry"]:
        o.append(f"| … of which lost with a session that could not be resumed (its node was killed) | "
                 f"{n(s2c['lost_with_session'])} in {n(s2c['fresh_sessions_around_kill'])} fresh sessions around the kill; "
                 f"{n(s2c['doubled_after_unanswered_retry'])} repeats of sends retried after no answer | see the notes |")
    o.append(f"| resumable client → server (`rec` route → function): sent / delivered / lost / doubled | "
             f"{n(c2s['sent'])} / {n(c2s['delivered'])} / **{n(c2s['lost'])}** / **{n(c2s['doubled_same_connection'])}** "
             f"(+ {n(c2s['doubled_other_connection'])} resent into a fresh session) | 0 lost, 0 doubled |")
    o.append(f"| resumable sessions: resumes / fresh sessions outside the kill / out of order | "
             f"{n(s2c['resumes'])} resumes over {n(res['proxy']['cuts'])} cuts / **{n(s2c['fresh_sessions_elsewhere'])}** / {n(s2c['out_of_order'])} | 0 fresh, 0 out of order |")
    o.append(f"| resumable clients closed for good by the gateway (replaced by a new client) / messages lost with them | "
             f"**{n(s2c['closed_early'])}** / **{n(s2c['lost_with_closed_client'])}**"
             + (f" ({'; '.join(s2c['closed_early_examples'][:3])})" if s2c['closed_early'] else "") + " | 0 |")
    if lost_bad or dbl_bad or s2c["fresh_sessions_elsewhere"] or s2c["out_of_order"] or s2c["closed_early"]:
        failed.append(f"{run}: resumable lost {lost_bad + s2c['lost_with_closed_client']}, doubled {dbl_bad}, fresh sessions {s2c['fresh_sessions_elsewhere']}, "
                      f"out of order {s2c['out_of_order']}, clients closed for good {s2c['closed_early']}")

    # RSS: per node process, warm / middle / end of the traffic.
    t0 = times.get("traffic_start_ms", r["started_ms"])
    t_warm, t_mid, t_end = t0 + warm * 1000, t0 + secs * 500, t0 + secs * 1000
    samples = {}
    try:
        for line in open(f"{out}/{run}-rss.tsv"):
            ms, node, pid, rss = line.split()
            samples.setdefault((node, pid), []).append((int(ms), int(rss)))
    except OSError:
        pass
    def at(s, t, before=True):
        c = [x for x in s if (x[0] <= t if before else x[0] >= t)]
        if not c:
            return None
        return (c[-1] if before else c[0])[1]
    rows = []
    for (node, pid), s in sorted(samples.items(), key=lambda kv: kv[1][0][0]):
        restarted = kill and str(kill.get("new_pid")) == pid
        start = s[0][0]
        w = at(s, max(t_warm, start + warm * 1000), before=False) if restarted else at(s, t_warm, before=False)
        m = None if restarted else at(s, t_mid)
        e = at(s, min(t_end, (kill or {}).get("killed_ms", t_end)) if (kill and str(kill.get("old_pid")) == pid) else t_end)
        peak = max(x[1] for x in s if x[0] <= t_end) if any(x[0] <= t_end for x in s) else None
        growth = None if not (w and e) else 100.0 * (e - w) / w
        label = node + (" (restarted)" if restarted else (" (until the kill)" if kill and str(kill.get("old_pid")) == pid else ""))
        short = restarted and (t_end - start) < 2 * warm * 1000
        rows.append((label, w, m, e, peak, growth, short))
        if growth is not None and growth > 10 and not short:
            failed.append(f"{run}: {label} RSS grew {growth:.1f} % once warm")
    cells = "; ".join(f"{l}: {n(w)} / {n(m)} / {n(e)} KiB ({'–' if g is None else f'{g:+.1f} %'}{', short window' if sh else ''})"
                      for l, w, m, e, p, g, sh in rows)
    o.append(f"| gateway RSS warm / middle / end (growth once warm) | {cells} | ≤ +10 % |")

    panics = {}
    try:
        for line in open(f"{out}/{run}-panics.txt"):
            node, c = line.split()
            panics[node] = int(c)
    except OSError:
        pass
    o.append(f"| panics in the gateway logs (`panicked`) | {', '.join(f'{k}: {v}' for k, v in panics.items()) or '–'} | 0 |")
    if sum(panics.values()):
        failed.append(f"{run}: {sum(panics.values())} panics")

    churn = r["churn"]
    o.append(f"| `$disconnect` vs connections opened (`$connect` accepted) | "
             f"{n(ev['disconnected'])} / {n(ev['connections'])}: **{n(ev['missing_disconnect'])} missing**, "
             f"{n(ev['doubled_disconnect'])} doubled, {n(ev['disconnect_without_connect'])} without `$connect` | every one exactly once |")
    per_run = "; ".join(f"{x['node']}#{x['run']}: {n(x['connections'])} opened, {n(x['missing_disconnect'])} missing, {n(x['doubled_disconnect'])} doubled"
                        for x in ev["runs"])
    o.append(f"| … per node run | {per_run} | |")
    late = ev_after.get("disconnected", 0) - ev["disconnected"] if ev_after else None
    if late:
        o.append(f"| … `$disconnect`s that only came at the nodes' shutdown | {n(late)} | 0 |")
    if ev["missing_disconnect"] or ev["doubled_disconnect"] or ev["disconnect_without_connect"]:
        failed.append(f"{run}: $disconnect missing {ev['missing_disconnect']}, doubled {ev['doubled_disconnect']}")
    reasons = ", ".join(f"`{k}` {n(v)}" for k, v in sorted(ev["reasons"].items(), key=lambda kv: -kv[1]))
    o.append(f"| … by code and reason | {reasons} | |")

    # Traffic and failures.
    fan, echo, mix = r["fanout"], r["echo"], r["mix"]
    fc = fan["check"]
    o.append(f"| churn: connections opened / failed / echo failed | {n(churn['opened'])} / {n(churn['failed'])} / {n(churn['echo_failed'])} "
             f"({n(churn['closed_clean'])} closed cleanly, {n(churn['dropped'])} dropped) | |")
    o.append(f"| echo: sent / echoed / mismatched / timeouts | {n(echo['sent'])} / {n(echo['echoed'])} / **{n(echo['mismatched'])}** / {n(echo['timeouts'])} | 0 mismatched |")
    o.append(f"| fan-out: publishes accepted / member deliveries / missing / doubled | {n(fan['accepted'])} of {n(fan['published'])} / {n(fc['received'])} / **{n(fc['missing'])}** / **{n(fc['doubled'])}** "
             f"({n(fan['joins'])} joins, {n(fan['deleted_by_api'])} members closed by the API) | 0 missing, 0 doubled |")
    if echo["mismatched"] or fc["missing"] or fc["doubled"]:
        failed.append(f"{run}: echo mismatched {echo['mismatched']}, fan-out missing {fc['missing']}, doubled {fc['doubled']}")
    ops = mix["ops"]
    tot = lambda k: sum(v[k] for v in ops.values())
    o.append(f"| management calls: 2xx / gone (404, 410) / other 4xx / 5xx / no answer | {n(tot('ok'))} / {n(tot('gone'))} / {n(tot('client_error'))} / {n(tot('server_error'))} / {n(tot('no_answer'))} | |")
    fails = {k: v for k, v in (("churn", churn["failures"]), ("echo", echo["failures"]), ("fan-out members", fan["failures"]),
                               ("publishes", fan["publish_failures"]), ("management", mix["failures"]), ("resumable posts", res["post_failures"]))}
    elsewhere = sum(v["elsewhere"] for v in fails.values())
    o.append(f"| failures around the kill / elsewhere | {n(sum(v['around_kill'] for v in fails.values()))} / **{n(elsewhere)}** "
             f"({', '.join(k + ' ' + str(v['around_kill']) + '/' + str(v['elsewhere']) for k, v in fails.items())}) | 0 elsewhere |")
    if elsewhere:
        failed.append(f"{run}: {elsewhere} failures outside the kill window")
    o.append("")
    notes = []
    if s2c["lost_with_session"] or c2s["doubled_other_connection"]:
        notes.append(f"{n(s2c['lost_with_session'])} server → client messages were accepted for sessions that could not be resumed "
                     f"({n(s2c['fresh_sessions_around_kill'])} fresh sessions, all while {victim} was down or just after): such a session was "
                     "attached to the killed node, or its home was the killed node, so its replay buffer died with that node and the "
                     "client's resume elsewhere started afresh (docs/protocol.md, \"Resuming on another node\", limits). The SDK resent "
                     f"what the lost session had not acknowledged: the {n(c2s['doubled_other_connection'])} client → server repeats, each on "
                     "another connection id (at least once for those, by design).")
    if s2c["closed_early"]:
        notes.append(f"{n(s2c['closed_early'])} resumable clients were closed for good by a gateway (the SDK does not reconnect after "
                     "1002): a close `1002 switchboard.v1 sequence gap` right after a resume means a node resumed a stale state of the "
                     "session while another node held the live one; that other node's copy then ends with its window, a second "
                     "`$disconnect` for the same connection.")
    if ev["runs"] and any(x["reasons"].get("1006 node lost") for x in ev["runs"]):
        lost = sum(x["reasons"].get("1006 node lost", 0) for x in ev["runs"])
        def log_has(node, text):
            try:
                return any(text in line for line in open(f"{out}/{run}-{node}.log", errors="replace"))
            except OSError:
                return False
        by = []
        if any(log_has(x, "node lost: taking over its connections") for x in r["nodes"] if x != victim):
            by.append("a survivor, once the killed node's heartbeat expired (node_ttl_secs)")
        if log_has(victim, "taking over the connections of this node's previous run"):
            by.append("the restarted node itself, from its previous run's leftovers (it came back before node_ttl_secs)")
        notes.append(f"{n(lost)} `$disconnect`s `1006 node lost` were invoked for the killed node's connections, from their registry "
                     f"snapshots, by {' and by '.join(by) or 'a node'}.")
    gone = {k: v for k, v in ops.items() if v["gone"] > 0.05 * max(1, sum(v[x] for x in ("ok", "gone", "client_error", "server_error", "no_answer")))}
    if gone:
        notes.append("Management calls on the resumable clients' current (live) connection ids answered 404/410 often: "
                     + ", ".join(f"`{k}` {n(v['gone'])} of {n(sum(v[x] for x in ('ok', 'gone', 'client_error', 'server_error', 'no_answer')))}" for k, v in gone.items())
                     + (f"; and {n(ops['batch']['batch_op_gone'])} operations inside {n(ops['batch']['ok'])} batches" if ops.get("batch", {}).get("batch_op_gone") else "")
                     + " (the calls rotate over the nodes; a call through a node that does not hold the connection is refused as gone).")
    for t in notes:
        o.append(f"- {t}")
    if notes:
        o.append("")
    if ev["missing"]:
        o.append("Connections without `$disconnect` (first ones): " + ", ".join(
            f"`{m['id']}` ({m['node']}#{m['run']}, connected at {m['connected_ms']})" for m in ev["missing"][:10]))
        o.append("")
    if ev.get("doubled"):
        o.append("Connections with more than one `$disconnect` (first ones): " + ", ".join(
            f"`{d['id']}` ({d['node']}#{d['run']}: {' then '.join(d['reasons'])})" for d in ev["doubled"][:10]))
        o.append("")
    batch_errors = ops.get("batch", {}).get("batch_op_errors", 0)
    if batch_errors:
        o.append(f"{n(batch_errors)} operations inside batches failed with a status other than 410.")
        o.append("")
    if mix["examples"]:
        o.append("Management calls answered neither 2xx nor 404/410 (first ones; the failure row above says when): " + "; ".join(f"`{e[:120]}`" for e in mix["examples"][:5]))
        o.append("")

o.append("### Verdict")
o.append("")
o.append("every target met" if not failed else "targets missed:\n" + "\n".join(f"- {f}" for f in failed))
print("\n".join(o))
sys.exit(1 if failed else 0)
EOF
status=$?
set -e
bench_done
exit "$status"
