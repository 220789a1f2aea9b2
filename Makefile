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

package: setup
	scripts/Package_Server.sh
	scripts/Package_Client.sh

clean:
	rm -rf dist nxt_server.tgz nxt_client.tgz
