#!/usr/bin/env bash
# Cluster benchmark, on loopback only: three switchboard nodes (node-a, node-b, node-c)
# sharing a backplane, first a Redis, then a NATS (each on a free port with a scratch
# directory, started and stopped here). For each backplane:
#
#   direct: DIRECT_CONNS connections on node-b join group `bench-b` (builtin join_group);
#     their ids come from node-b's `GET /v1/groups/bench-b/members`. Sends
#     `POST /prod/@connections/{id}` go either through node-b's own management API
#     (same-node) or through node-a's (cross-node: over the backplane), runs of the two
#     alternating back to back. DIRECT_CONCURRENCY POSTs in flight, each worker on its own
#     keep-alive connection, targets in turn; every message is numbered and each socket
#     checks it gets exactly its own (losses, duplicates, misrouted). Two pacings:
#       http:      next POST as soon as the previous answered 200 (what an API caller
#                  sees; a cross-node 200 only means "handed to the backplane", so the
#                  drain after the run is counted);
#       delivered: next POST once the previous message reached its socket (end to end).
#     msgs/s = messages delivered / (last delivery - first POST); ratio = cross / same,
#     the median of back-to-back pairs. Target (issue): cross >= 50 % of same.
#   fanout: PER_NODE connections on each of the three nodes join group `bench`; publishes
#     of FAN_SIZE bytes go through node-a's `POST /v1/groups/bench/messages`.
#     single-shot: time from just before the call until the last member (of all, and of
#     each node) has it; median of SHOTS after one warm-up. sustained: INFLIGHT
#     publishers in a closed loop for FAN_SECS, then a drain until every member has every
#     message; deliveries/s counted at the clients (every member checked for every
#     message: losses exact); median of FAN_RUNS.
#
# One client process (target/release/xnode) per phase holds all sockets (15,000 for the
# fan-out, spread over 127.0.0.1-16 as sources); its RLIMIT_NOFILE soft limit is raised to
# the hard limit. Every run reports the CPU seconds of each node, the engine and the
# client, and the machine's busy share: on a 2-core machine they all share it.
#
# Usage: bench/cluster.sh
# Environment knobs (defaults in brackets):
#   BACKPLANES ["redis nats"]
#   DIRECT_CONNS [100] DIRECT_CONCURRENCY [64] DIRECT_SIZE [64] DIRECT_SECS [3]
#   DIRECT_RUNS [5] DIRECT_PACINGS ["http,delivered"]
#   PER_NODE [5000] FAN_SIZE [1024] SHOTS [5] FAN_SECS [10] FAN_RUNS [3] INFLIGHT [2]
#   WINDOW [0]     >0: at most WINDOW fan-out messages published but not yet everywhere
#   NO_BUILD [0]   1: skip the cargo build (use the binaries in target/release)
# Needs redis-server, nats-server (with JetStream), curl, python3.
# Raw results: target/cluster-bench/<timestamp>/{summary.md,*.jsonl,*.log,*.toml,*.metrics}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The command as run, with the knobs set in the environment.
bench_command "$*" BACKPLANES DIRECT_CONNS DIRECT_CONCURRENCY DIRECT_SIZE DIRECT_SECS DIRECT_RUNS \
    DIRECT_PACINGS PER_NODE FAN_SIZE SHOTS FAN_SECS FAN_RUNS INFLIGHT WINDOW NO_BUILD
bench_args "$@"

BACKPLANES="${BACKPLANES:-redis nats}"
DIRECT_CONNS="${DIRECT_CONNS:-100}"
DIRECT_CONCURRENCY="${DIRECT_CONCURRENCY:-64}"
DIRECT_SIZE="${DIRECT_SIZE:-64}"
DIRECT_SECS="${DIRECT_SECS:-3}"
DIRECT_RUNS="${DIRECT_RUNS:-5}"
DIRECT_PACINGS="${DIRECT_PACINGS:-http,delivered}"
PER_NODE="${PER_NODE:-5000}"
FAN_SIZE="${FAN_SIZE:-1024}"
SHOTS="${SHOTS:-5}"
FAN_SECS="${FAN_SECS:-10}"
FAN_RUNS="${FAN_RUNS:-3}"
INFLIGHT="${INFLIGHT:-2}"
WINDOW="${WINDOW:-0}"
NODES=(node-a node-b node-c)

bench_init --no-results
XNODE="$BIN/xnode"

# Nodes, engines and the client hold up to ~15,000 sockets each.
ulimit -n "$(ulimit -Hn)"

SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/sb-cluster-bench.XXXXXX")"
TEMPS+=("$SCRATCH")
trap 'bench_cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# follow PID FILE: copies FILE to stderr (indented) until PID exits, in the background (the
# script itself only waits, so a signal stops it at once).
follow() {
    tail -n +1 -f --pid="$1" "$2" 2>/dev/null | sed -u 's/^/    /' >&2 &
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------
# build

if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building release: switchboard, xnode"
    cargo build --release -p switchboard
    # Only this binary: the bench's other binaries may be mid-edit.
    cargo build --release -p switchboard-bench --bin xnode
fi
bench_need switchboard xnode
command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || die "redis-server not found"
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
[ -x "$NATS_SERVER" ] || [[ " $BACKPLANES " != *" nats "* ]] || die "nats-server not found"
T1=$(date +%s)
LOAD_AT_START="$(cut -d' ' -f1-3 /proc/loadavg)"
ENGINE_VERSIONS="$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/redis \1/p'); $("$NATS_SERVER" --version 2>/dev/null | sed 's/: v/ /')"

# ---------------------------------------------------------------------------------------
# engines and nodes

# start_engine KIND: sets ENGINE_PID, ENGINE_URL (and NATS_MON for nats).
start_engine() {
    local kind="$1" port dir attempt i
    dir="$SCRATCH/$kind"
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        port=$(bench_free_port)
        if [ "$kind" = redis ]; then
            redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
                --dir "$dir" --maxclients 1000 >"$OUT/$kind.log" 2>&1 &
            ENGINE_URL="redis://127.0.0.1:$port"
        else
            NATS_MON=$(bench_free_port)
            "$NATS_SERVER" -a 127.0.0.1 -p "$port" -m "$NATS_MON" -js -sd "$dir/js" \
                >"$OUT/$kind.log" 2>&1 &
            ENGINE_URL="nats://127.0.0.1:$port"
        fi
        ENGINE_PID=$!
        PIDS+=("$ENGINE_PID")
        ENGINE_PORT=$port
        for i in $(seq 1 100); do
            kill -0 "$ENGINE_PID" 2>/dev/null || break
            if port_open "$port"; then
                log "$kind on 127.0.0.1:$port (pid $ENGINE_PID)"
                return 0
            fi
            sleep 0.1
        done
        bench_stop "$ENGINE_PID" 2
        log "warning: $kind did not start on port $port (attempt $attempt)"
    done
    die "$kind did not start (see $OUT/$kind.log)"
}

declare -A WS MGMT NPID
# start_node BACKPLANE NAME: config, process, /readyz.
start_node() {
    local bp="$1" name="$2"
    bench_gateway_toml "$OUT/$bp-$name.toml" "node_id = \"$name\"
log_level = \"warn\"" <<EOF
[cluster]
backplane = "$bp"
urls = ["$ENGINE_URL"]

[management]
auth = "none"

[functions.join]
kind = "builtin"
name = "join_group"
groups = ["bench", "bench-b"]

[routes.join]
function = "join"
two_way = true
EOF
    bench_start_gateway "$bp-$name" "$OUT/$bp-$name.toml"
    NPID[$name]=$GW_PID
    WS[$name]=$GW_URL
    MGMT[$name]="http://127.0.0.1:$GW_MPORT"
}

# after_disconnect BACKPLANE: samples every node's /readyz every 0.25 s until all have been
# ready for 2 s (at most 15 s); one JSON line.
after_disconnect() {
    local i n code not_ready=0 last_bad=0 states=""
    for i in $(seq 1 60); do
        local bad=""
        for n in "${NODES[@]}"; do
            code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "${MGMT[$n]}/readyz" 2>/dev/null || true)
            [ "$code" = 200 ] || bad="$bad $n"
        done
        if [ -n "$bad" ]; then
            not_ready=$((not_ready + 1))
            last_bad=$i
            states="$states $i:${bad# }"
        elif [ $((i - last_bad)) -ge 8 ]; then
            break
        fi
        sleep 0.25
    done
    printf '{"kind": "after-disconnect", "samples": %d, "not_ready_samples": %d, "ready_again_s": %s, "not_ready": "%s"}\n' \
        "$i" "$not_ready" "$(python3 -c "print($last_bad * 0.25)")" "${states# }"
}

# node_summary BACKPLANE: metrics and log findings of every node, as one JSON line.
node_summary() {
    local bp="$1" n
    for n in "${NODES[@]}"; do
        curl -fsS --max-time 5 "${MGMT[$n]}/metrics" >"$OUT/$bp-$n.metrics" 2>/dev/null || true
    done
    if [ "$bp" = redis ]; then
        redis-cli -p "$ENGINE_PORT" info >"$OUT/redis-info.txt" 2>/dev/null || true
    else
        curl -fsS --max-time 5 "http://127.0.0.1:$NATS_MON/varz" >"$OUT/nats-varz.json" 2>/dev/null || true
    fi
    python3 - "$OUT" "$bp" "${NODES[@]}" <<'EOF'
import json, re, sys, os
out, bp, *nodes = sys.argv[1:]
res = {"kind": "nodes", "backplane": bp, "nodes": {}}
for n in nodes:
    m = {}
    try:
        for line in open(f"{out}/{bp}-{n}.metrics"):
            if line.startswith("#"):
                continue
            mm = re.match(r'^(switchboard_[a-z_]+)(\{[^}]*\})?\s+([0-9.e+-]+)', line)
            if not mm:
                continue
            name, labels, v = mm.groups()
            if name in ("switchboard_outbound_queue_drops_total", "switchboard_messages_out_total",
                        "switchboard_connections_total", "switchboard_backplane_up"):
                m[name] = m.get(name, 0) + float(v)
            elif name == "switchboard_closes_total":
                code = re.search(r'code="([^"]*)"', labels or "")
                m.setdefault("closes", {})[code.group(1) if code else "?"] = float(v)
    except OSError:
        pass
    warn = [l.rstrip() for l in open(f"{out}/{bp}-{n}.log", errors="replace")
            if re.search(r"WARN|ERROR", l)]
    m["log_warnings"] = len(warn)
    m["log_first_warnings"] = warn[:3]
    m["inbox_full"] = sum("inbox full" in l for l in warn)
    m["backplane_down"] = sum("switchboard_cluster" in l and "backplane down" in l for l in warn)
    m["registry_failures"] = sum(("backplane operation failed" in l or "backplane unreachable" in l) for l in warn)
    ops = {}
    for l in warn:
        mm = re.search(r'op="([^"]+)"', l)
        if mm:
            ops[mm.group(1)] = ops.get(mm.group(1), 0) + 1
    m["failed_ops"] = ops
    res["nodes"][n] = m
if bp == "nats":
    try:
        v = json.load(open(f"{out}/nats-varz.json"))
        res["engine"] = {"slow_consumers": v.get("slow_consumers"), "in_msgs": v.get("in_msgs"), "out_msgs": v.get("out_msgs")}
    except (OSError, ValueError):
        pass
else:
    try:
        info = dict(l.strip().split(":", 1) for l in open(f"{out}/redis-info.txt") if ":" in l)
        res["engine"] = {k: info.get(k) for k in ("client_output_buffer_limit_disconnections",
                         "total_commands_processed", "pubsub_channels", "used_memory_human")
                         if k in info}
    except OSError:
        pass
print(json.dumps(res))
EOF
}

# run_xnode BACKPLANE PHASE LIMIT_SECS ARGS...: `xnode PHASE ARGS` with every process's pid,
# bounded by LIMIT_SECS; its JSON lines in BACKPLANE-PHASE.jsonl, its log copied to stderr.
run_xnode() {
    local bp="$1" phase="$2" limit="$3" pid
    shift 3
    : >"$OUT/$bp-$phase.log"
    timeout -k 5 "$limit" "$XNODE" "$phase" "$@" --pids "$PIDSPEC" \
        >"$OUT/$bp-$phase.jsonl" 2>"$OUT/$bp-$phase.log" &
    pid=$!
    PIDS+=("$pid")
    follow "$pid" "$OUT/$bp-$phase.log"
    wait "$pid" || log "warning: xnode $phase ($bp) failed: $(tail -n 2 "$OUT/$bp-$phase.log" | tr '\n' ' ')"
    bench_forget "$pid"
}

# ---------------------------------------------------------------------------------------
# runs

for bp in $BACKPLANES; do
    case "$bp" in redis|nats) ;; *) die "unknown backplane $bp" ;; esac
    log "== $bp =="
    start_engine "$bp"
    for n in "${NODES[@]}"; do start_node "$bp" "$n"; done
    log "nodes: $(for n in "${NODES[@]}"; do printf '%s %s %s; ' "$n" "${WS[$n]}" "${MGMT[$n]}"; done)"
    PIDSPEC="node-a=${NPID[node-a]},node-b=${NPID[node-b]},node-c=${NPID[node-c]},$bp=$ENGINE_PID"

    # direct: 100 connections on node-b; same = node-b's API, cross = node-a's.
    pacings=$(tr ',' '\n' <<<"$DIRECT_PACINGS" | grep -c .)
    log "direct: $DIRECT_CONNS connections on node-b, $DIRECT_RUNS runs x {$DIRECT_PACINGS} x {same, cross}, ${DIRECT_SECS}s each"
    run_xnode "$bp" direct $((30 + DIRECT_RUNS * pacings * 2 * (DIRECT_SECS + 25))) \
        --ws-url "${WS[node-b]}" --same-url "${MGMT[node-b]}" --cross-url "${MGMT[node-a]}" \
        --connections "$DIRECT_CONNS" --group bench-b --size "$DIRECT_SIZE" \
        --concurrency "$DIRECT_CONCURRENCY" --secs "$DIRECT_SECS" --runs "$DIRECT_RUNS" \
        --pacings "$DIRECT_PACINGS"
    sleep 1

    # fan-out: PER_NODE on each node, published through node-a.
    log "fanout: $PER_NODE members on each of ${NODES[*]}, published on node-a; $SHOTS shots, $FAN_RUNS x ${FAN_SECS}s sustained"
    run_xnode "$bp" fanout $((210 + PER_NODE * 3 / 250 + SHOTS * 20 + FAN_RUNS * (FAN_SECS + 45))) \
        --ws-urls "${WS[node-a]},${WS[node-b]},${WS[node-c]}" --names "node-a,node-b,node-c" \
        --publish-url "${MGMT[node-a]}" --per-node "$PER_NODE" --group bench --size "$FAN_SIZE" \
        --shots "$SHOTS" --runs "$FAN_RUNS" --secs "$FAN_SECS" --inflight "$INFLIGHT" \
        --window "$WINDOW"

    # The client's exit closed every member at once: watch the nodes' /readyz (false while
    # a node considers its backplane down) for a few seconds.
    after_disconnect "$bp" >>"$OUT/$bp-fanout.jsonl"
    node_summary "$bp" >"$OUT/$bp-nodes.jsonl"
    for n in "${NODES[@]}"; do bench_stop "${NPID[$n]}" 8; done
    bench_stop "$ENGINE_PID" 5
done

LOAD_AT_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# summary

python3 - "$OUT" "$BACKPLANES" "$COMMAND" "$(nproc)" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T1))" \
    "$LOAD_AT_START" "$LOAD_AT_END" "$ENGINE_VERSIONS" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
out, bps, command, nproc, date, commit, took, load0, load1, engines = sys.argv[1:]
bps = bps.split()

def lines(path):
    try:
        return [json.loads(l) for l in open(path) if l.strip()]
    except OSError:
        return []

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None

def fmt(x, d=0):
    return "–" if x is None else f"{x:,.{d}f}"

o = [f"## Cluster benchmark — {date}", ""]
o.append(f"- command: `{command}` (commit {commit}; took {took} s after the build)")
o.append(f"- machine: `nproc` = {nproc}; load average {load0} at start, {load1} at the end; three switchboard nodes, the engine and the client process share it, loopback only")
o.append(f"- engines: {engines}")
o.append("")

# direct
o.append("### Same-node vs cross-node `POST /prod/@connections/{id}`")
o.append("")
drows = {bp: [r for r in lines(f"{out}/{bp}-direct.jsonl") if r.get("kind") == "direct"] for bp in bps}
any_d = next((r for rs in drows.values() for r in rs), None)
if any_d:
    o.append(f"{any_d['connections']} connections on node-b, {any_d['concurrency']} POSTs in flight, {any_d['size']} B text, {any_d['secs']} s per run; "
             "same = node-b's API, cross = node-a's. msgs/s = delivered / (last delivery − first POST), median of runs; "
             "cross/same = median of back-to-back pairs (range). `http`: next POST when the previous answered; `delivered`: when its message arrived.")
    o.append("")
o.append("| backplane | pacing | same-node msgs/s | cross-node msgs/s | cross / same | ≥ 50 %? | server CPU µs/msg same / cross | of which API node: node-b / node-a | node-b in cross runs | delivery p50 ms same / cross | delivery p99 ms same / cross | POST p50 ms same / cross | drain ms cross (max) | losses same / cross | HTTP errors same / cross | runs |")
o.append("| --- | --- | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

def node_cpu_per(rows, node):
    return med([1e6 * r["cpu"]["cpu_s"].get(node, 0) / r["deliveries"] for r in rows if r.get("deliveries")])

def server_cpu(r, bp):
    c = r["cpu"]["cpu_s"]
    return sum(c.get(k, 0) for k in ("node-a", "node-b", "node-c", bp))

def cpu_per(rows, bp, key):
    return med([1e6 * server_cpu(r, bp) / r[key] for r in rows if r.get(key)])
for bp in bps:
    rs = drows[bp]
    for pacing in sorted({r["pacing"] for r in rs}, key=lambda p: ["http", "delivered"].index(p) if p in ("http", "delivered") else 9):
        s = [r for r in rs if r["pacing"] == pacing and r["path"] == "same"]
        c = [r for r in rs if r["pacing"] == pacing and r["path"] == "cross"]
        ms_, mc = med([r["deliveries_per_s"] for r in s]), med([r["deliveries_per_s"] for r in c])
        pairs = sorted(x["deliveries_per_s"] / y["deliveries_per_s"] for x in c for y in s
                       if x["run"] == y["run"] and y["deliveries_per_s"])
        if pairs:
            ratio = statistics.median(pairs)
            rtxt = f"{100 * ratio:.0f} % ({100 * pairs[0]:.0f}–{100 * pairs[-1]:.0f})"
            ok = "yes" if ratio >= 0.5 else "**no**"
        else:
            rtxt, ok = "–", "–"
        def pm(rows, k):
            return fmt(med([r[k] for r in rows]), 2)
        o.append(f"| {bp} | {pacing} | {fmt(ms_)} | {fmt(mc)} | {rtxt} | {ok} | {fmt(cpu_per(s, bp, 'deliveries'), 1)} / {fmt(cpu_per(c, bp, 'deliveries'), 1)} | {fmt(node_cpu_per(s, 'node-b'), 1)} / {fmt(node_cpu_per(c, 'node-a'), 1)} | {fmt(node_cpu_per(c, 'node-b'), 1)} | {pm(s, 'delivery_ms_p50')} / {pm(c, 'delivery_ms_p50')} | "
                 f"{pm(s, 'delivery_ms_p99')} / {pm(c, 'delivery_ms_p99')} | {pm(s, 'http_ms_p50')} / {pm(c, 'http_ms_p50')} | "
                 f"{fmt(max([r['drain_ms'] for r in c] or [0]), 1)} | "
                 f"{sum(r['losses'] for r in s)} / {sum(r['losses'] for r in c)} | {sum(r['http_errors'] for r in s)} / {sum(r['http_errors'] for r in c)} | {len(s)} + {len(c)} |")
o.append("")

# fanout
o.append("### Group fan-out over three nodes, published on node-a")
o.append("")
frows = {bp: lines(f"{out}/{bp}-fanout.jsonl") for bp in bps}
ready = next((r for rs in frows.values() for r in rs if r.get("kind") == "fanout-ready"), None)
sus_any = next((r for rs in frows.values() for r in rs if r.get("kind") == "sustained"), None)
if ready:
    o.append(f"{ready['requested']:,} members requested ({', '.join(f'{k}: {v:,}' for k, v in ready['joined_per_node'].items())} joined), "
             + (f"{sus_any['size']} B messages, {sus_any['inflight']} publishers in a closed loop, {sus_any['secs']} s per sustained run" if sus_any else "")
             + ". sustained deliveries/s = every delivery of every message of a run / (last delivery − first publish), drain included; median of runs. "
             "single-shot: time until the last member has one message (median), per node in brackets.")
    o.append("")
o.append("| backplane | members | single-shot last delivery ms [a / b / c] | single-shot deliveries/s | sustained deliveries/s (median) | runs (range) | per node a / b / c (share) | publishes/s | losses | failed publishes (their deliveries a / b / c) | members lost | drain ms (max) | last-member p50 / p99 ms | nodes + engine CPU µs / delivery | CPU s per run: a / b / c / engine / client | machine busy % |")
o.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
fig = {}
for bp in bps:
    rs = frows[bp]
    rd = next((r for r in rs if r.get("kind") == "fanout-ready"), None)
    shots = [r for r in rs if r.get("kind") == "shots"]
    sus = [r for r in rs if r.get("kind") == "sustained"]
    err = next((r for r in rs if r.get("kind") == "error"), None)
    if not shots and not sus:
        o.append(f"| {bp} | {rd['joined'] if rd else '–'} | failed: {err['error'] if err else 'no result'} | | | | | | | | | | | | | |")
        continue
    sh = shots[0] if shots else {}
    pn = sh.get("last_delivery_ms_median_per_node", {})
    rate = med([r["deliveries_per_s"] for r in sus])
    fig[bp] = dict(rate=rate, shot=sh.get("deliveries_per_s"), last=sh.get("last_delivery_ms_median"))
    rng = f"{fmt(min(r['deliveries_per_s'] for r in sus))}–{fmt(max(r['deliveries_per_s'] for r in sus))}" if sus else "–"
    tot = {}
    for r in sus:
        for k, v in r["deliveries_per_node"].items():
            tot[k] = tot.get(k, 0) + v
    alld = sum(tot.values()) or 1
    split = " / ".join(f"{100 * v / alld:.0f} %" for v in tot.values())
    cpu = {}
    for r in sus:
        for k, v in r["cpu"]["cpu_s"].items():
            cpu.setdefault(k, []).append(v)
    cpu_txt = " / ".join(fmt(med(cpu.get(k, [])), 1) for k in ("node-a", "node-b", "node-c", bp, "xnode"))
    busy = med([r["cpu"]["machine_busy_pct"] for r in sus])
    losses = sum(r["losses"] for r in sus) + sum(s.get("losses", 0) for s in shots)
    lost = sum(r["members_lost"] for r in sus)
    perr = sum(r["publish_errors"] for r in sus)
    part = {}
    for r in sus:
        for k, v in r.get("failed_publish_deliveries_per_node", {}).items():
            part[k] = part.get(k, 0) + v
    perr_txt = f"{perr}" + (f" ({' / '.join(f'{v:,}' for v in part.values())})" if perr and part else "")
    if perr and any(r.get("publish_error") for r in sus):
        perr_txt += f": {next(r['publish_error'] for r in sus if r.get('publish_error'))[:60]}…"
    o.append(f"| {bp} | {sus[0]['members_at_start'] if sus else sh.get('members', '–'):,} | {fmt(sh.get('last_delivery_ms_median'), 1)} [{' / '.join(fmt(v, 1) for v in pn.values())}] | "
             f"{fmt(sh.get('deliveries_per_s'))} | **{fmt(rate)}** | {len(sus)} ({rng}) | {split} | {fmt(med([r['publishes_per_s'] for r in sus]), 1)} | "
             f"{losses:,} | {perr_txt} | {lost} | {fmt(max([r['drain_ms'] for r in sus] or [0]), 0)} | "
             f"{fmt(med([r['last_member_ms_p50'] for r in sus]), 1)} / {fmt(med([r['last_member_ms_p99'] for r in sus]), 1)} | {fmt(cpu_per(sus, bp, 'deliveries'), 2)} | {cpu_txt} | {fmt(busy)} |")
if "redis" in fig and "nats" in fig and fig["redis"]["rate"] and fig["nats"]["rate"]:
    o.append("")
    o.append(f"NATS / Redis: sustained {fig['nats']['rate'] / fig['redis']['rate']:.2f}×"
             + (f", single-shot {fig['nats']['shot'] / fig['redis']['shot']:.2f}×" if fig['nats']['shot'] and fig['redis']['shot'] else "")
             + " (measured one after the other, not interleaved: compare with the load averages).")
o.append("")

o.append("| backplane | nodes quiet after the joins, s | listing every member through node-a: found / expected (unique) | pages | total ms | slowest page ms | after the client closed all members at once: `/readyz` |")
o.append("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
for bp in bps:
    rs = frows[bp]
    st = next((r for r in rs if r.get("kind") == "settle"), {})
    li = next((r for r in rs if r.get("kind") == "listing"), {})
    ad = next((r for r in rs if r.get("kind") == "after-disconnect"), None)
    if ad is None:
        adt = "–"
    elif ad["not_ready_samples"]:
        adt = f"**not ready** in {ad['not_ready_samples']} samples (every 0.25 s), all ready again after {ad['ready_again_s']} s ({ad['not_ready']})"
    else:
        adt = "always ready"
    if "error" in li:
        lt = f"error: {li['error']} | | {fmt(li.get('total_ms'))} |"
    elif li:
        lt = f"{li['members']:,} / {li['expected']:,} ({li['unique']:,}) | {li['pages']} | {fmt(li['total_ms'])} | {fmt(max(li['page_ms'] or [0]))} |"
    else:
        lt = "– | | | |"
    o.append(f"| {bp} | {fmt(st.get('settle_s'), 1)} | {lt} {adt} |")
o.append("")

# nodes
o.append("### Nodes after each pass")
o.append("")
o.append("| backplane | node | messages out | slow-consumer drops | closes by code | warnings in log | inbox full (lines) | backplane down | failed backplane ops | engine |")
o.append("| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |")
for bp in bps:
    for r in lines(f"{out}/{bp}-nodes.jsonl"):
        for n, m in r["nodes"].items():
            closes = ", ".join(f"{k}: {int(v)}" for k, v in sorted(m.get("closes", {}).items())) or "–"
            eng = json.dumps(r.get("engine", {})) if n == "node-a" else ""
            ops = ", ".join(f"{k}: {v}" for k, v in sorted(m.get("failed_ops", {}).items())) or "–"
            o.append(f"| {bp} | {n} | {fmt(m.get('switchboard_messages_out_total'))} | {fmt(m.get('switchboard_outbound_queue_drops_total'))} | {closes} | {m['log_warnings']} | {m['inbox_full']} | {m.get('backplane_down', 0)} | {ops} | {eng} |")
o.append("")

# per run
o.append("<details><summary>per run</summary>")
o.append("")
o.append("| backplane | phase | run | path / pacing | msgs or deliveries/s | in-window/s | POSTs ok/s | drain ms | losses | p50 / p99 ms (delivery or last member) | load at start | CPU s a / b / c / engine / client | busy % |")
o.append("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |")
for bp in bps:
    for r in drows[bp]:
        c = r["cpu"]["cpu_s"]
        o.append(f"| {bp} | direct | {r['run']} | {r['path']} / {r['pacing']} | {fmt(r['deliveries_per_s'])} | {fmt(r['deliveries_per_s_in_window'])} | {fmt(r['ok_per_s'])} | {fmt(r['drain_ms'], 1)} | {r['losses']} | "
                 f"{fmt(r['delivery_ms_p50'], 2)} / {fmt(r['delivery_ms_p99'], 2)} | {r['load_at_start']} | "
                 f"{' / '.join(fmt(c.get(k), 1) for k in ('node-a', 'node-b', 'node-c', bp, 'xnode'))} | {fmt(r['cpu']['machine_busy_pct'])} |")
    for r in frows[bp]:
        if r.get("kind") != "sustained":
            continue
        c = r["cpu"]["cpu_s"]
        o.append(f"| {bp} | fanout | {r['run']} | node-a, {r['inflight']} publishers | {fmt(r['deliveries_per_s'])} | {fmt(r['deliveries_per_s_in_window'])} | {fmt(r['publishes_per_s'], 1)} | {fmt(r['drain_ms'], 1)} | {r['losses']} | "
                 f"{fmt(r['last_member_ms_p50'], 1)} / {fmt(r['last_member_ms_p99'], 1)} | {r['load_at_start']} | "
                 f"{' / '.join(fmt(c.get(k), 1) for k in ('node-a', 'node-b', 'node-c', bp, 'xnode'))} | {fmt(r['cpu']['machine_busy_pct'])} |")
o.append("")
o.append("</details>")
print("\n".join(o))
EOF
bench_done
