#!/bin/sh
# nxt-client as installed: the service's config (server, keys, data dir) unless told otherwise.
export NXT_CLIENT_CONFIG="${NXT_CLIENT_CONFIG:-/etc/nxt/client.json}"
exec node /usr/lib/nxt/client/dist/cli/client.js "$@"
