#!/bin/sh
# Copies the client (clients/js/switchboard.js, the one source) to the example apps that
# serve it from their [static] dir. test/sync.test.mjs fails when a copy differs.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
for dest in examples/chat/public/switchboard.js; do
    cp "$here/switchboard.js" "$root/$dest"
    echo "synced $dest"
done
