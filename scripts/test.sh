#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script):
#   1. install what a fresh machine lacks (scripts/install-deps.sh);
#   2. lint: clippy with warnings as errors, and the ring-only guard (no aws-lc-sys);
#   3. unit and integration tests of every crate (real binary, real sockets);
#   3b. fuzz/property targets for every parser, at CI's fixed case budget (scripts/fuzz.sh);
#   4. browser tests: example pages in Debian's chromium, driven by playwright-core;
#   5. WebSocket conformance: the Autobahn cases via kosoku against the echo example.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
bash scripts/install-deps.sh

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
if cargo tree --workspace -i aws-lc-sys >/dev/null 2>&1; then
    echo "aws-lc-sys is in the dependency tree; switchboard uses ring only" >&2
    exit 1
fi

step "unit and integration tests"
# The fuzz_ targets run in their own step below, with their budget printed per target.
cargo test --workspace --locked -- --skip fuzz_

step "fuzz and property targets (fixed case budget; FUZZ_SECS=600 scripts/fuzz.sh for long runs)"
bash scripts/fuzz.sh

step "JavaScript client SDK (Node, real gateway)"
(cd clients/js && npm test)

step "browser tests (chromium via playwright-core)"
(cd tests/browser && node --test)

step "conformance (Autobahn via kosoku)"
# The debug build from the tests above: no second (release) compile in CI.
CONFORMANCE_PROFILE=debug bash scripts/conformance.sh
