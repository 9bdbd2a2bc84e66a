#!/bin/sh
# The busted specs of the example hooks (spec/*_spec.lua), run on LuaJIT
# with the SDK twin (scripts/skald-sdk) and the skald module, as TAP.
cd "$(dirname "$0")/../.." || exit 1
if ! command -v luajit >/dev/null 2>&1 || [ ! -x /usr/bin/busted ]; then
	echo "1..0 # SKIP luajit or busted (Debian lua-busted) not installed"
	exit 0
fi
LUA_PATH="scripts/skald/?.lua;scripts/skald-sdk/?.lua;;" \
	exec luajit /usr/bin/busted -o TAP spec
