# The two commands the README promises: `make demo` and `make test`. Both install what they need.
.PHONY: setup build demo test bench package clean

node_modules/.package-lock.json: package-lock.json
	npm ci

setup: node_modules/.package-lock.json

build: setup
	npm run build

demo: setup
	npm run demo

test: setup
	npm test

bench: setup
	npm run bench
	npm run bench:crypto
	npm run bench:fleet

# nxt_server.tgz, nxt_client.tgz and the Debian packages nxt-server_*.deb, nxt-client_*.deb.
# The client carries no server keys: give it its server with `nxt-client setup` (or build it
# with keys: scripts/Package_Client.sh --trust path/to/release.pub).
package: setup
	scripts/Package_Server.sh
	scripts/Package_Client.sh

clean:
	rm -rf dist dist-bench nxt_server.tgz nxt_client.tgz nxt-server_*.deb nxt-client_*.deb
