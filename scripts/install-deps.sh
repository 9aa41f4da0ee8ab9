#!/usr/bin/env bash
# Install what the switchboard test suite needs on a fresh Debian machine.
# Idempotent: every step checks first and does nothing when its thing is there,
# and apt-get update runs at most once, only when some apt package is missing.
# Add new dependencies as small ensure_* functions called from main().
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

# Pinned versions of Python tools installed into .venv.
KOSOKU_VERSION="0.1.0"
# The real AWS SDK for Python that tests/compat/boto3_client.py drives; botocore pinned too,
# since boto3 accepts any botocore of its minor version.
BOTO3_VERSION="1.44.5"
BOTOCORE_VERSION="1.44.5"
# The real AWS Lambda Runtime Interface Client for Python, which the lambda function tests
# (crates/switchboard-functions/tests/lambda.rs) run handlers under; manylinux wheels, no build.
AWSLAMBDARIC_VERSION="4.2.2"
# Charts in docs/benchmarks.md (bench/report.py); wheels for CPython 3.11 on manylinux.
MATPLOTLIB_VERSION="3.10.7"
# The AWS SDK for JavaScript v3 needs this Node.js major or later.
NODE_MIN_MAJOR=20
COMPAT_DIR="$ROOT/tests/compat"

log() { printf 'install-deps: %s\n' "$*"; }

APT_UPDATED=0
# apt_install PKG...: install the given Debian packages, running apt-get update once.
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        $sudo apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# have_deb PKG: true if the Debian package is installed.
have_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

ensure_python() {
    # Prefer the system interpreter; the venv must not depend on a pyenv shim.
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
        log "python3 with venv: present"
        return
    fi
    log "python3 with venv: installing python3 python3-venv"
    apt_install python3 python3-venv
}

ensure_venv() {
    if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        log "venv $VENV: present"
        return
    fi
    log "venv $VENV: creating"
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
}

# pip_pin NAME VERSION: install NAME==VERSION into the venv unless already there.
pip_pin() {
    local name="$1" version="$2" have
    have="$("$VENV/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
    if [ "$have" = "$version" ]; then
        log "pip $name==$version: present"
        return
    fi
    log "pip $name==$version: installing${have:+ (had $have)}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$name==$version"
}

ensure_kosoku() { pip_pin kosoku "$KOSOKU_VERSION"; }

ensure_boto3() {
    pip_pin botocore "$BOTOCORE_VERSION"
    pip_pin boto3 "$BOTO3_VERSION"
}

ensure_awslambdaric() { pip_pin awslambdaric "$AWSLAMBDARIC_VERSION"; }

ensure_matplotlib() { pip_pin matplotlib "$MATPLOTLIB_VERSION"; }

ensure_node() {
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        log "node $(node --version) and npm: present"
    elif command -v node >/dev/null 2>&1; then
        log "npm: installing npm"
        apt_install npm
    else
        log "node: installing nodejs npm"
        apt_install nodejs npm
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$major" -lt "$NODE_MIN_MAJOR" ]; then
        log "warning: node $(node --version) is older than $NODE_MIN_MAJOR, which the AWS JS SDK in tests/compat needs"
    fi
}

# The JS SDK for tests/compat/awssdk_client.mjs, exactly as package-lock.json pins it. npm
# writes node_modules/.package-lock.json on every install, so it dates the install.
# npm_ci DIR: `npm ci` in DIR when node_modules is missing or older than the lock file.
npm_ci() {
    local dir="$1" rel="${1#"$ROOT"/}"
    local stamp="$dir/node_modules/.package-lock.json"
    if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ]; then
        log "npm packages in $rel: present"
        return
    fi
    log "npm packages in $rel: npm ci"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

ensure_compat_npm() { npm_ci "$COMPAT_DIR"; }

# The browser tests drive Debian's chromium with playwright-core (no browser download).
ensure_chromium() {
    if [ -x /usr/bin/chromium ]; then
        log "chromium: present"
        return
    fi
    log "chromium: installing"
    apt_install chromium
}

ensure_browser_npm() { npm_ci "$ROOT/tests/browser"; }

ensure_js_sdk_npm() { npm_ci "$ROOT/clients/js"; }

# The echo-server peers of the benchmarks (bench/peers/): Node's ws from bench/peers'
# lock file, Python's websockets at the version bench/peers/requirements.txt pins.
ensure_bench_peers() {
    npm_ci "$ROOT/bench/peers"
    local line
    while read -r line; do
        line="${line%%#*}"
        [ -n "${line// /}" ] || continue
        pip_pin "${line%%==*}" "${line#*==}"
    done <"$ROOT/bench/peers/requirements.txt"
}

# The cluster backplane tests (crates/switchboard-cluster/tests) start their own
# redis-server (plus redis-cli, from redis-tools, to form a Redis Cluster) and nats-server
# on free ports; the packaged services are not used.
ensure_backplane_servers() {
    local missing=() pkg
    for pkg in redis-server redis-tools nats-server; do
        have_deb "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "redis-server, redis-tools, nats-server: present"
        return
    fi
    log "backplane servers: installing ${missing[*]}"
    apt_install "${missing[@]}"
}

main() {
    ensure_python
    ensure_venv
    ensure_kosoku
    ensure_boto3
    ensure_awslambdaric
    ensure_matplotlib
    ensure_node
    ensure_compat_npm
    ensure_chromium
    ensure_browser_npm
    ensure_js_sdk_npm
    ensure_bench_peers
    ensure_backplane_servers
    log "done"
}

main "$@"
