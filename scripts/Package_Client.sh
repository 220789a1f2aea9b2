#!/usr/bin/env bash
# Build nxt_client.tgz (unpacks to nxt/client/bin/UpdateClient.sh), carrying the server's public
# key as its trust anchor: Package_Client.sh [--trust path/to/release.pub] [--out DIR]
# Without --trust it uses state/server/release.pub, creating that key if there is none.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -d node_modules ] || npm ci
# NXT_SKIP_BUILD=1: package the dist/ that is there (the tests do, so that rebuilding it cannot
# pull files from under the other tests' running processes).
if [ -z "${NXT_SKIP_BUILD:-}" ]; then npm run --silent build; fi
exec node scripts/package.mjs client "$@"
