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
# V8's young generation at 2 MiB semi-spaces rather than growing to 16: the server turns over
# little that lives, and on the benchmark VM it then held ~10 MB less at rest and ~14 MB less at
# the peak of a 1 GiB push (129 against 143 MB), with as many milliseconds spent collecting
# (docs/benchmarks.md). A --max-semi-space-size of the caller's own (NODE_OPTIONS) wins.
node_flags=(--max-semi-space-size=2)
case " ${NODE_OPTIONS:-} " in
  *--max-semi-space-size*|*--max_semi_space_size*) node_flags=() ;;
esac
exec node ${node_flags[@]+"${node_flags[@]}"} "$root/dist/cli/server.js" --port "$port" --state-dir "${NXT_STATE_DIR:-$root/state/server}" "$@"
