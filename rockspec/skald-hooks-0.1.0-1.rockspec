-- The Lua SDK for Skald topic hooks: the `skald` module hooks see in the
-- broker (the very file the broker embeds) and `skald.test`, which runs a
-- hook over records offline with the broker's semantics, for busted.
--   luarocks make rockspec/skald-hooks-0.1.0-1.rockspec   (from the tree)
rockspec_format = "3.0"
package = "skald-hooks"
version = "0.1.0-1"
source = {
	url = "git+file://.",
}
description = {
	summary = "Write and unit-test Skald topic hooks offline",
	detailed = [[
The skald module (skald.json, skald.log, skald.now) exactly as Skald's
hook states load it, and skald.test, a pure-Lua twin of the broker's
embedding: sandboxed, text-only loading, on_record and on_batch with
the same batch methods, ctx.emit, retain. Use it with busted.
]],
	license = "Apache-2.0",
}
dependencies = {
	"lua >= 5.1",
}
test_dependencies = {
	"busted",
}
build = {
	type = "builtin",
	modules = {
		["skald"] = "scripts/skald/skald.lua",
		["skald.test"] = "scripts/skald-sdk/skald/test.lua",
	},
}
test = {
	type = "busted",
}
