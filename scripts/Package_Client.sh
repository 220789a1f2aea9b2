#!/usr/bin/env bash
# Build nxt_client.tgz (unpacks to nxt/client/bin/UpdateClient.sh) and nxt-client_<v>_all.deb:
#   Package_Client.sh [--trust path/to/release.pub] [--out DIR] [--formats tgz,deb]
# Without --trust the client carries no server keys (give them with `nxt-client setup`, or copy
# the server's release.pub and identity.pub to nxt/client/etc/server.pub and etc/identity.pub).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -d node_modules ] || npm ci
# NXT_SKIP_BUILD=1: package the dist/ that is there (the tests do, so that rebuilding it cannot
# pull files from under the other tests' running processes).
if [ -z "${NXT_SKIP_BUILD:-}" ]; then npm run --silent build; fi
exec node scripts/package.mjs client "$@"
