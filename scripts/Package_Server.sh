#!/usr/bin/env bash
# Build nxt_server.tgz (unpacks to nxt/server/bin/UpdateServer.sh): Package_Server.sh [--out DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -d node_modules ] || npm ci
npm run --silent build
exec node scripts/package.mjs server "$@"
