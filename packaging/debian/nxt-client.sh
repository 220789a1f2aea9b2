#!/bin/sh
# nxt-client as installed: the service's config (server, keys, data dir) unless told otherwise.
export NXT_CLIENT_CONFIG="${NXT_CLIENT_CONFIG:-/etc/nxt/client.json}"
# Large allocations (a module's bytes and text, as the plugin thread reads them) in transparent
# huge pages where the kernel grants them on request (THP "madvise", as on the benchmark VM;
# "always" grants them anyway): a 128 MiB module loaded with half the page faults, 0.4–0.6 s
# sooner there, when import() read it (docs/benchmarks.md). glibc 2.35 and later read this;
# other C libraries ignore it. A value of the caller's own wins.
case ":${GLIBC_TUNABLES:-}:" in
  *:glibc.malloc.hugetlb=*) ;;
  *) export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1" ;;
esac
exec node /usr/lib/nxt/client/dist/cli/client.js "$@"
