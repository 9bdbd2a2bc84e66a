-- Specs for scripts/examples/*.lua, run with the SDK twin (skald.test):
--   busted --lua=luajit --lpath='scripts/skald/?.lua;scripts/skald-sdk/?.lua'
-- (tests/integration/93-lua-specs.t runs this from `make test`).
local hooktest = require("skald.test")
local json = require("skald").json
local EX = "scripts/examples/"

describe("drop_filter", function()
	for _, name in ipairs({ "drop_filter", "drop_filter_batch" }) do
		it(name .. " drops exactly the matching records", function()
			local out = hooktest.run(EX .. name .. ".lua", {
				{ value = "a DEBUG" }, { value = "b" },
				{ value = "DEBUG" }, { value = "c" }, {},
			}, { options = { pattern = "DEBUG" } })
			assert.is_nil(out.error)
			assert.same({ 0, 2 }, out.dropped)
			assert.same({ "b", "c" }, { out.records[1].value,
				out.records[2].value })
			assert.equal(3, #out.records)
		end)
	end
end)

describe("mask_pii", function()
	it("masks the configured fields", function()
		local out = hooktest.run(EX .. "mask_pii.lua", {
			{ key = "k", value = json.encode({
				card = "4111111111111111", email = "ann@example.com",
				n = 1234567890123456 }) },
		}, { options = { fields = { "card", "email" } } })
		assert.is_nil(out.error)
		local doc = json.decode(out.records[1].value)
		assert.equal("************1111", doc.card)
		assert.equal("****@example.com", doc.email)
		assert.equal(1234567890123456, doc.n)
		assert.equal("k", out.records[1].key)
	end)
	it("leaves every other byte of the value as it was", function()
		local out = hooktest.run(EX .. "mask_pii.lua", {
			{ value = '{ "n": 1.50, "card": "4111111111111111",' ..
				' "z": [], "a": 1 }' },
		})
		assert.is_nil(out.error)
		assert.equal('{ "n": 1.50, "card": "************1111",' ..
			' "z": [], "a": 1 }', out.records[1].value)
	end)
	it("fails on a value that is not a JSON object", function()
		local out = hooktest.run(EX .. "mask_pii.lua",
			{ { value = "plain" } })
		assert.truthy(out.error:find("not a JSON object", 1, true))
	end)
	it("lets tombstones through", function()
		local out = hooktest.run(EX .. "mask_pii.lua", { { key = "k" } })
		assert.is_nil(out.records[1].value)
	end)
end)

describe("stamp_headers", function()
	it("stamps every record", function()
		local out = hooktest.run(EX .. "stamp_headers.lua",
			{ { value = "a", headers = { x = "1" } }, { value = "b" } },
			{ options = { name = "me" } })
		for _, r in ipairs(out.records) do
			assert.equal("me", r.headers["stamped-by"])
			assert.truthy(tonumber(r.headers["stamped-at"]))
		end
		assert.equal("1", out.records[1].headers.x)
	end)
end)

describe("router", function()
	it("keeps every record and copies the matching ones", function()
		local out = hooktest.run(EX .. "router.lua",
			{ { value = "ok" }, { value = "ERROR x", key = "k" } },
			{ topic = "logs", options = { match = "ERROR", to = "errors" } })
		assert.equal(2, #out.records)
		assert.equal(1, #out.emitted)
		assert.equal("errors", out.emitted[1].topic)
		assert.equal("ERROR x", out.emitted[1].value)
		assert.equal("logs", out.emitted[1].headers["routed-from"])
	end)
end)

describe("keep_flagged", function()
	local seg = { base_offset = 100, last_offset = 199,
		first_timestamp = 0, max_timestamp = 0, size = 4096 }
	it("keeps a segment holding a flagged record", function()
		assert.is_true(hooktest.retain(EX .. "keep_flagged.lua", seg,
			{ options = { flagged = { 5, 150 } } }))
	end)
	it("lets the others go", function()
		assert.is_false(hooktest.retain(EX .. "keep_flagged.lua", seg,
			{ options = { flagged = { 5 } } }))
	end)
end)

describe("the sandbox of the SDK twin", function()
	it("refuses globals and missing libraries like the broker", function()
		local path = os.tmpname()
		local f = io.open(path, "w")
		f:write("return { on_record = function(r)\n" ..
			"  assert(io == nil and require == nil and load == nil)\n" ..
			"  x = 1 end }\n")
		f:close()
		local out = hooktest.run(path, { { value = "v" } })
		os.remove(path)
		assert.truthy(out.error:find("attempt to set global 'x'", 1, true))
	end)
end)
