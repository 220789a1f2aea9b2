#!/usr/bin/env bash
# Build nxt_server.tgz (unpacks to nxt/server/bin/UpdateServer.sh) and nxt-server_<v>_all.deb:
#   Package_Server.sh [--out DIR] [--formats tgz,deb]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -d node_modules ] || npm ci
# NXT_SKIP_BUILD=1: package the dist/ that is there (the tests do, so that rebuilding it cannot
# pull files from under the other tests' running processes).
if [ -z "${NXT_SKIP_BUILD:-}" ]; then npm run --silent build; fi
exec node scripts/package.mjs server "$@"
