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
# The sealing thread collects the garbage node:crypto leaves (a fresh buffer for every chunk it
# seals) every 8 MiB (src/util/garbage.ts); at glibc's default trim threshold (128 KiB) each
# collection handed the freed pages back to the kernel, only to take them again for the next
# chunks, which on the benchmark VM (where fresh memory is dear) made a 128 MiB push's data phase
# ~40% longer. A threshold of 64 MiB keeps them. glibc 2.35 and later read this; other C
# libraries ignore it. A value of the caller's own wins.
case ":${GLIBC_TUNABLES:-}:" in
  *:glibc.malloc.trim_threshold=*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.trim_threshold=67108864" ;;
esac
exec node "$root/dist/cli/server.js" --port "$port" --state-dir "${NXT_STATE_DIR:-$root/state/server}" "$@"
