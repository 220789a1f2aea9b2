#!/bin/sh
# nxt-client as installed: the service's config (server, keys, data dir) unless told otherwise.
export NXT_CLIENT_CONFIG="${NXT_CLIENT_CONFIG:-/etc/nxt/client.json}"
# No glibc tunables of ours: a caller's GLIBC_TUNABLES reaches node as given. Until 2026-12-03
# this asked for transparent huge pages for every block of 2 MiB or more (glibc.malloc.hugetlb=1,
# glibc.malloc.mmap_threshold=2097152), which halved a large module's page faults on one VM; on
# a VM that hands free 2 MiB blocks back to its host they fault in cold (~10 ms a MiB) while
# 4 KiB pages come warm, and a 128 MiB push took ~1.3 s rather than ~1.0 (docs/benchmarks.md,
# fifteenth session). Where huge pages are cheap, set those two in GLIBC_TUNABLES yourself.
exec node /usr/lib/nxt/client/dist/cli/client.js "$@"
