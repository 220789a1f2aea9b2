#!/bin/sh
# nxt-client as installed: the service's config (server, keys, data dir) unless told otherwise.
export NXT_CLIENT_CONFIG="${NXT_CLIENT_CONFIG:-/etc/nxt/client.json}"
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
exec node /usr/lib/nxt/client/dist/cli/client.js "$@"
