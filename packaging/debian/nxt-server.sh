#!/bin/sh
# nxt-server as installed: the service's state dir and config unless told otherwise.
export NXT_STATE_DIR="${NXT_STATE_DIR:-/var/lib/nxt-server}"
exec node /usr/lib/nxt/server/dist/cli/server.js "$@"
