#!/usr/bin/env bash
# What `[access] max_connections_per_user` costs a handshake in a cluster (issue 17): the
# user's connections are counted on every node, one gather through the backplane per
# handshake of a user. Two 2-node clusters on one Redis (namespaces apart): N without the
# limit, L with `max_connections_per_user` set too high to trip. Both have the same JWT
# authorizer (HS256, `userId` from `sub`); every handshake is the same user. `loadgen
# connect-rate` (CONCURRENCY workers) through the first node of each, ROUNDS rounds, N and
# L alternating which goes first: connections/s and handshake p50/p99, with L/N per round.
#
# Usage: bench/user-limit-cluster.sh
# Environment knobs (defaults in brackets):
#   ROUNDS [5]           rounds (each: N and L once)
#   SECS [5]             seconds of each connect-rate run
#   CONCURRENCY [50]     connect-rate workers
#   NO_BUILD [0]         1: skip the cargo build (use the binaries in target/release)
# Needs: redis-server, python3.
# Raw results: target/user-limit-cluster-bench/<timestamp>/{results.jsonl,summary.md,*.log}
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_command "" ROUNDS SECS CONCURRENCY NO_BUILD
bench_args "$@"

ROUNDS="${ROUNDS:-5}"
SECS="${SECS:-5}"
CONCURRENCY="${CONCURRENCY:-50}"
bench_init

[ "${NO_BUILD:-0}" = 1 ] || bench_build
bench_need switchboard loadgen
command -v redis-server >/dev/null || die "redis-server not found (scripts/install-deps.sh installs it)"
trap 'bench_cleanup 2>/dev/null' EXIT
trap 'exit 130' INT TERM

SECRET="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
TOKEN="$(bench_hs256_token "$SECRET" bench-user)"

REDIS_PORT=$(bench_free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

# node NAME CLUSTER EXTRA_TOML: starts a node of CLUSTER; sets GW_URL.
node() {
    local name="$1" cluster="$2" extra="$3"
    bench_gateway_config "$OUT/$name.toml" "$(cat <<EOF
[cluster]
backplane = "redis"
urls = ["redis://127.0.0.1:$REDIS_PORT"]
namespace = "$cluster"

[authorizer]
kind = "jwt"
algorithms = ["HS256"]
secret = "$SECRET"
token_sources = ["header"]

$extra
EOF
)" "node_id = \"$name\""
    bench_start_gateway "$name" "$OUT/$name.toml"
}

declare -A URL MPORT
node n1 none ""
URL[N]="$GW_URL" MPORT[N]="$GW_MPORT"
node n2 none ""
LIMIT=$'[access]\nmax_connections_per_user = 1000000'
node l1 limited "$LIMIT"
URL[L]="$GW_URL" MPORT[L]="$GW_MPORT"
node l2 limited "$LIMIT"
# Each first node counts its peer's connections once it has heard from it.
for side in N L; do
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:${MPORT[$side]}/v1/groups/g/members" 2>/dev/null |
            grep -q '"nodes":2' && break
        sleep 0.1
    done
done
log "two clusters of two nodes on redis :$REDIS_PORT; N without the per-user limit, L with it"

for round in $(seq "$ROUNDS"); do
    order="N L"
    [ $((round % 2)) = 0 ] && order="L N"
    for side in $order; do
        name="connect-$side-$round"
        bench_loadgen "$name" $((SECS + 40)) connect-rate --url "${URL[$side]}" \
            --header "Authorization: Bearer $TOKEN" --concurrency "$CONCURRENCY" --duration "$SECS"
        [ -n "$LINE" ] || die "loadgen failed against $side (see $OUT/$name.log)"
        bench_record "$RESULTS" "$LINE" side="$side" round="$round"
        log "round $round $side: $(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print("{:,.0f} conn/s, p50 {} µs, errors {}".format(r["conns_per_s"], r["handshake_p50_us"], r["errors"]))
' "$LINE")"
    done
done

python3 - "$RESULTS" "$COMMAND" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["side"], r["round"]): r for r in rows}
rounds = sorted({r["round"] for r in rows})
def med(side, key):
    return statistics.median(by[(side, n)][key] for n in rounds)
print("| metric | N (no limit) | L (limit) | L/N median | L/N per round |")
print("| --- | ---: | ---: | ---: | --- |")
for key, name in (("conns_per_s", "connections/s"), ("handshake_p50_us", "handshake p50 µs"),
                  ("handshake_p99_us", "handshake p99 µs")):
    ratios = [by[("L", n)][key] / by[("N", n)][key] for n in rounds]
    print(f"| {name} | {med('N', key):,.0f} | {med('L', key):,.0f} | {statistics.median(ratios):.3f} | "
          + ", ".join(f"{x:.3f}" for x in ratios) + " |")
print(f"\n- command: `{sys.argv[2]}` (commit {sys.argv[3]}); every handshake one user; 2 nodes per "
      "cluster on one Redis, all on this machine's cores.")
EOF
bench_done
