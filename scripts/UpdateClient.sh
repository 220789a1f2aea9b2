#!/usr/bin/env bash
# Start an nxt client: UpdateClient.sh <server-ip> <port> [nxt-client options]
# Trust anchors: $NXT_TRUST, else etc/server.pub (installed from nxt_client.tgz), else the
# server's key in a source checkout; the server's identity key is identity.pub beside it (or
# $NXT_SERVER_KEY). Data dir: $NXT_DATA_DIR, else state/client. Enrollment token: $NXT_ENROLL_TOKEN.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [ $# -lt 2 ]; then
  echo "usage: $(basename "$0") <server-ip> <port> [nxt-client options]" >&2
  exit 2
fi
if [ ! -f "$root/dist/cli/client.js" ]; then
  echo "$(basename "$0"): $root/dist is missing: run 'npm ci && npm run build' first" >&2
  exit 2
fi
trust="${NXT_TRUST:-}"
if [ -z "$trust" ]; then
  if [ -f "$root/etc/server.pub" ]; then trust="$root/etc/server.pub"; else trust="$root/state/server/release.pub"; fi
fi
server=$1
port=$2
shift 2
server_key=()
if [ -n "${NXT_SERVER_KEY:-}" ]; then server_key=(--server-key "$NXT_SERVER_KEY"); fi
# Large allocations (a module's bytes and text, as the plugin thread reads them) in transparent
# huge pages where the kernel grants them on request (THP "madvise", as on the benchmark VM;
# "always" grants them anyway): glibc asks for them for the blocks it maps on their own, and a
# fixed threshold of 2 MiB keeps every large block one of those (glibc's sliding threshold would
# serve the next module's from its heap, in 4 KiB pages). On the benchmark VM a 16 MiB push then
# took ~225 ms rather than ~320 (~1,200 page faults on the device rather than ~8,200), and a
# 128 MiB one costs ~3,000 page faults rather than ~72,000 (docs/benchmarks.md). glibc 2.35 and
# later read this; other C libraries ignore it. A value of the caller's own wins, tunable by
# tunable.
case ":${GLIBC_TUNABLES:-}:" in
  *:glibc.malloc.hugetlb=*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac
case ":${GLIBC_TUNABLES}:" in
  *:glibc.malloc.mmap_threshold=*) ;;
  *) export GLIBC_TUNABLES="$GLIBC_TUNABLES:glibc.malloc.mmap_threshold=2097152" ;;
esac
exec node "$root/dist/cli/client.js" --server "$server" --port "$port" --trust "$trust" "${server_key[@]}" \
  --data-dir "${NXT_DATA_DIR:-$root/state/client}" "$@"
