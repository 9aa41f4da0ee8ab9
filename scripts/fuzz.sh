#!/usr/bin/env bash
# Every fuzz/property target (the #[test] functions named fuzz_*, driven by
# crates/switchboard-fuzz), across the workspace.
#
#   bash scripts/fuzz.sh                 CI's budget: a fixed number of cases per target,
#                                        from a seed per target (reproducible), debug build
#   FUZZ_SECS=600 bash scripts/fuzz.sh   long mode: every target runs new random cases for
#                                        600 s, in the fuzz profile (optimised, overflow checks on); counts are printed per target
#   FUZZ_SCALE=10 bash scripts/fuzz.sh   ten times CI's case budget
#   FUZZ_SEED=<64 hex> cargo test NAME   replay a failure (the seed is in its message)
#
# FUZZ_JOBS (default 2) targets run at once in the long mode.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=()
if [ -n "${FUZZ_SECS:-}" ]; then profile=(--profile fuzz); fi

log="${FUZZ_LOG:-$(mktemp)}"
status=0
cargo test --workspace --locked "${profile[@]}" -- --test-threads "${FUZZ_JOBS:-2}" --nocapture fuzz_ \
    >"$log" 2>&1 || status=$?
# One line per target: "fuzz NAME: N cases in S s", and any failure with its input and seed.
grep -E '^(fuzz |thread .* panicked|---- |  minimal input|  replay)' "$log" || true
targets=$(grep -cE '^fuzz .* cases in' "$log" || true)
echo "fuzz: ${targets} targets run, exit status ${status} (full log: ${log})"
exit "$status"
