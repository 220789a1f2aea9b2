#!/usr/bin/env bash
# Build nxt_client.tgz (unpacks to nxt/client/bin/UpdateClient.sh), carrying the server's public
# key as its trust anchor: Package_Client.sh [--trust path/to/release.pub] [--out DIR]
# Without --trust it uses state/server/release.pub, creating that key if there is none.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -d node_modules ] || npm ci
npm run --silent build
exec node scripts/package.mjs client "$@"
