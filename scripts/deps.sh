#!/bin/sh
# Install the Debian packages Skald needs to build and test, if missing.
# A second run finds everything present and returns at once.
set -e

PKGS="build-essential pkg-config libev-dev libyaml-dev libsqlite3-dev
      zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev
      libluajit-5.1-dev luajit lua-busted luarocks liblua5.1-0-dev
      clang clang-format kcat librdkafka-dev python3-confluent-kafka python3-kafka
      nodejs npm perl libcurl4-openssl-dev libmicrohttpd-dev"

missing=""
for p in $PKGS; do
	# nodejs/npm may come from elsewhere; a working command is enough.
	case $p in
	nodejs) command -v node >/dev/null 2>&1 && continue ;;
	npm) command -v npm >/dev/null 2>&1 && continue ;;
	esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "skald: missing Debian packages:$missing" >&2
		echo "skald: install them with: sudo apt-get install$missing" >&2
		exit 1
	fi
	echo "skald: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq $missing
fi

# kafkajs for the integration tests, pinned by tests/js/package-lock.json.
if [ -f tests/js/package-lock.json ] && [ ! -d tests/js/node_modules/kafkajs ]; then
	(cd tests/js && npm ci --no-audit --no-fund --silent)
fi
# s3rver (a local S3 server) for tier-s3's tests, pinned the same way.
if [ -f tests/s3/package-lock.json ] && [ ! -d tests/s3/node_modules/s3rver ]; then
	(cd tests/s3 && npm ci --no-audit --no-fund --silent)
fi
