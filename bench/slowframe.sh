#!/usr/bin/env bash
# Slow-frame memory benchmark for the switchboard gateway, on loopback only: what a client
# costs the gateway when it announces a large frame and sends only a little of it (issue
# 14, flaw 2: the decoder used to reserve the whole announced frame at once).
#   idle: a fresh gateway, RSS before, N idle WebSocket connections, settle, RSS after
#   slow: a fresh gateway, the same with N connections that each announce an ANNOUNCE-byte
#         binary frame and trickle SEND bytes of it (512-byte writes), then stop
# -> KiB of gateway RSS per connection for both, and slow − idle against the bytes each
# slow client sent. The claim it checks: N slow-frame clients ≈ N idle clients + the
# bytes they sent. Also the gateway's virtual data size (VmData) per connection: memory
# reserved but never touched does not show in RSS, yet it counts against the address space
# and, with strict overcommit, against what the kernel will grant. RUNS rounds, the order
# of the two swapped every round.
#
# Usage: bench/slowframe.sh
# Environment knobs (defaults in brackets):
#   N [3000]           connections of each kind (at most 15,000)
#   ANNOUNCE [131072]  payload length each slow client's frame header announces, bytes
#   SEND [3584]        payload bytes each slow client actually sends
#   RUNS [2]           rounds (each kind on a fresh gateway every round)
#   SETTLE [3]         seconds between the last connection opening and the RSS reading
#   CONFIG [examples/echo/switchboard.toml]  gateway config (its max_frame_bytes is 64 MiB)
#   GATEWAY_BIN [target/release/switchboard]
#   NO_BUILD [0]       1: skip the cargo build (use the binaries in target/release)
# Raw results: target/slowframe-bench/<timestamp>/{results.jsonl,summary.md,*.log}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "" N ANNOUNCE SEND RUNS SETTLE CONFIG NO_BUILD
bench_args "$@"

N="${N:-3000}"
ANNOUNCE="${ANNOUNCE:-131072}"
SEND="${SEND:-3584}"
RUNS="${RUNS:-2}"
SETTLE="${SETTLE:-3}"
CONFIG="${CONFIG:-examples/echo/switchboard.toml}"
[ "$N" -le 15000 ] || { echo "slowframe.sh: N is at most 15000" >&2; exit 2; }

bench_init
GATEWAY="${GATEWAY_BIN:-$GATEWAY}"
SLOWFRAME="$BIN/slowframe"
ulimit -n "$(ulimit -Hn)"
trap 'bench_cleanup 2>/dev/null' EXIT

bench_build
bench_need switchboard slowframe
[ -x "$GATEWAY" ] || die "$GATEWAY missing"
[ -f "$CONFIG" ] || die "gateway config $CONFIG missing"

# vm_data_kib PID: the process's data segment size (heap and anonymous mappings), KiB.
vm_data_kib() { awk '/^VmData:/ { print $2 }' "/proc/$1/status"; }

# round KIND RUN: a fresh gateway, RSS before, N connections of KIND held by slowframe,
# settle, RSS after; one result line.
round() {
    local kind="$1" run="$2" name="$1-$2"
    GW_PORT=$(bench_free_port)
    GW_MPORT=$(bench_free_port)
    bench_start_gateway "gateway-$name" "$CONFIG" SWITCHBOARD_LIMITS__MAX_CONNECTIONS=20000
    local pid="$GW_PID"
    sleep 1
    local before after vbefore vafter
    before=$(bench_rss_kib "$pid")
    vbefore=$(vm_data_kib "$pid")
    local -a args=(--url "$GW_URL" --connections "$N" --max-hold 300)
    [ "$kind" = idle ] || args+=(--announce "$ANNOUNCE" --send "$SEND")
    local fifo="$OUT/$name.fifo"
    mkfifo "$fifo"
    "$SLOWFRAME" "$kind" "${args[@]}" <"$fifo" >"$OUT/$name.json" 2>"$OUT/$name.log" &
    local client=$!
    PIDS+=("$client")
    exec 3>"$fifo"
    local opened=""
    for _ in $(seq 1 1200); do
        opened=$(sed -n 's/^READY //p' "$OUT/$name.log")
        [ -n "$opened" ] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$opened" ] || { exec 3>&-; die "slowframe $kind never got READY (see $OUT/$name.log)"; }
    sleep "$SETTLE"
    after=$(bench_rss_kib "$pid")
    vafter=$(vm_data_kib "$pid")
    exec 3>&-
    wait "$client" || true
    bench_forget "$client"
    rm -f "$fifo"
    local line
    line=$(tail -n 1 "$OUT/$name.json")
    [ -n "$line" ] || die "slowframe $kind printed no result (see $OUT/$name.log)"
    [ "$opened" = "$N" ] || log "warning: only $opened/$N $kind connections opened"
    local per vper
    per=$(python3 -c 'import sys; b, a, n = map(float, sys.argv[1:]); print(round((a - b) / n, 3))' "$before" "$after" "$opened")
    vper=$(python3 -c 'import sys; b, a, n = map(float, sys.argv[1:]); print(round((a - b) / n, 3))' "$vbefore" "$vafter" "$opened")
    log "$kind run $run: $opened connections, RSS $before -> $after KiB = $per KiB/connection; VmData $vper KiB/connection"
    bench_record "$RESULTS" "$line" kind="$kind" run="$run" rss_before_kib="$before" \
        rss_after_kib="$after" kib_per_conn="$per" vm_data_before_kib="$vbefore" \
        vm_data_after_kib="$vafter" vm_kib_per_conn="$vper"
    bench_stop "$pid"
}

for run in $(seq 1 "$RUNS"); do
    for kind in $(bench_rotate $((run - 1)) idle slow); do round "$kind" "$run"; done
done

python3 - "$RESULTS" "$COMMAND" "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" "$(($(date +%s) - T0))" \
    "$CONFIG" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
path, command, date, commit, took, config = sys.argv[1:]
rows = [json.loads(l) for l in open(path) if l.strip()]
idle = [r for r in rows if r["kind"] == "idle"]
slow = [r for r in rows if r["kind"] == "slow"]

def mmm(rs, key, digits=2):
    v = [r[key] for r in rs]
    if not v:
        return "–"
    return f"{statistics.median(v):,.{digits}f} ({min(v):,.{digits}f}–{max(v):,.{digits}f})"

out = [f"## Slow-frame memory — {date}", ""]
out.append(f"- command: `{command}` (commit {commit}, took {took} s; gateway config `{config}`)")
out.append("- loopback only; a fresh gateway per kind and run; RSS of the gateway process")
out.append("")
if idle and slow:
    n = slow[0]["requested"]
    announced, sent = slow[0]["announced_bytes"], slow[0]["sent_payload_bytes"]
    wire_kib = (sent + 14) / 1024  # payload plus a masked 64-bit-length header
    extra = statistics.median(r["kib_per_conn"] for r in slow) - statistics.median(r["kib_per_conn"] for r in idle)
    out.append("Median (min–max) over runs.")
    out.append("")
    out.append("| figure | value |")
    out.append("| --- | ---: |")
    out.append(f"| idle: gateway RSS per connection, KiB ({n:,} connections, {len(idle)} runs) | {mmm(idle, 'kib_per_conn')} |")
    out.append(f"| slow frame: gateway RSS per connection, KiB ({n:,} clients announcing {announced:,} B and sending {sent:,} B) | {mmm(slow, 'kib_per_conn')} |")
    out.append(f"| slow − idle, KiB per connection | {extra:,.2f} |")
    out.append(f"| bytes each slow client sent (frame header + payload), KiB | {wire_kib:,.2f} |")
    out.append(f"| slow − idle, as a multiple of the bytes sent | {extra / wire_kib:,.2f} × |")
    vextra = statistics.median(r["vm_kib_per_conn"] for r in slow) - statistics.median(r["vm_kib_per_conn"] for r in idle)
    out.append(f"| idle: gateway VmData per connection, KiB | {mmm(idle, 'vm_kib_per_conn')} |")
    out.append(f"| slow frame: gateway VmData per connection, KiB | {mmm(slow, 'vm_kib_per_conn')} |")
    out.append(f"| slow − idle VmData (reserved, touched or not), KiB per connection | {vextra:,.2f} |")
    closed = sum(r["closed_by_server"] for r in rows)
    out.append(f"| connections the gateway closed during the hold (all runs; expected 0) | {closed} |")
print("\n".join(out))
EOF
bench_done
