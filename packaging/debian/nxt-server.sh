#!/bin/sh
# nxt-server as installed: the service's state dir and config unless told otherwise.
export NXT_STATE_DIR="${NXT_STATE_DIR:-/var/lib/nxt-server}"
# The sealing thread collects the garbage node:crypto leaves (a fresh buffer for every chunk it
# seals) every 8 MiB (util/garbage.ts in dist); at glibc's default trim threshold (128 KiB) each
# collection handed the freed pages back to the kernel, only to take them again for the next
# chunks, which on the benchmark VM (where fresh memory is dear) made a 128 MiB push's data phase
# ~40% longer. A threshold of 64 MiB keeps them. glibc 2.35 and later read this; other C
# libraries ignore it. A value of the caller's own wins.
case ":${GLIBC_TUNABLES:-}:" in
  *:glibc.malloc.trim_threshold=*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.trim_threshold=67108864" ;;
esac
# V8's young generation at 2 MiB semi-spaces: ~10-14 MB less resident (UpdateServer.sh says why).
# A --max-semi-space-size of the caller's own (NODE_OPTIONS) wins.
case " ${NODE_OPTIONS:-} " in
  *--max-semi-space-size*|*--max_semi_space_size*) exec node /usr/lib/nxt/server/dist/cli/server.js "$@" ;;
esac
exec node --max-semi-space-size=2 /usr/lib/nxt/server/dist/cli/server.js "$@"
