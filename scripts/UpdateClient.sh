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
# No glibc tunables of ours: a caller's GLIBC_TUNABLES reaches node as given. Until 2026-12-03
# this asked for transparent huge pages for every block of 2 MiB or more (glibc.malloc.hugetlb=1,
# glibc.malloc.mmap_threshold=2097152), which halved a large module's page faults on one VM; on
# a VM that hands free 2 MiB blocks back to its host they fault in cold (~10 ms a MiB) while
# 4 KiB pages come warm, and a 128 MiB push took ~1.3 s rather than ~1.0 (docs/benchmarks.md,
# fifteenth session). Where huge pages are cheap, set those two in GLIBC_TUNABLES yourself.
exec node "$root/dist/cli/client.js" --server "$server" --port "$port" --trust "$trust" "${server_key[@]}" \
  --data-dir "${NXT_DATA_DIR:-$root/state/client}" "$@"
