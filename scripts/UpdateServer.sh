#!/usr/bin/env bash
# Start the nxt server: UpdateServer.sh <port> [nxt-server options]
# Works from a source checkout (after `npm run build`) and from an unpacked nxt_server.tgz.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [ $# -lt 1 ]; then
  echo "usage: $(basename "$0") <port> [nxt-server options]" >&2
  exit 2
fi
if [ ! -f "$root/dist/cli/server.js" ]; then
  echo "$(basename "$0"): $root/dist is missing: run 'npm ci && npm run build' first" >&2
  exit 2
fi
port=$1
shift
exec node "$root/dist/cli/server.js" --port "$port" --state-dir "${NXT_STATE_DIR:-$root/state/server}" "$@"
