#!/bin/sh
# One console command in the running nxt-server service (as root or the service's user nxt):
#   nxt-ctl clients        nxt-ctl push ./module_2_0.mjs        nxt-ctl --json push m.mjs
export NXT_STATE_DIR="${NXT_STATE_DIR:-/var/lib/nxt-server}"
exec node /usr/lib/nxt/server/dist/cli/server.js ctl "$@"
