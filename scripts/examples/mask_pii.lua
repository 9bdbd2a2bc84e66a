-- JSON PII mask: values are JSON objects; every field named in
-- options.fields (default card and email) is replaced by a mask that keeps
-- the last four characters of a card number and the domain of an e-mail
-- address. A value that is not a JSON object is an error, so the hook's
-- on_error policy decides what happens to its batch.
--
--   hooks:
--     - name: mask-card
--       script: scripts/examples/mask_pii.lua
--       on_error: reject
--       options: { fields: [card, email] }
--
-- Only the named fields change: every other byte of the value (the order
-- of keys, blanks, how numbers are written) stays as the producer sent
-- it. batch:json_get and batch:set_json read and write top-level fields
-- straight from and into the batch, without decoding the whole document
-- into a table or the value becoming a Lua string; with on_batch there is
-- no record table and no call from the broker per record.
local find, sub, rep = string.find, string.sub, string.rep
local type, select, unpack = type, select, unpack

local DEFAULT_FIELDS = { "card", "email" }

-- rep("*", n) for n up to 64, built once per state.
local stars = {}
for n = 1, 64 do
	stars[n] = rep("*", n)
end

local function mask(field, v)
	if type(v) ~= "string" then
		return "****"
	end
	if field == "email" then
		local at = find(v, "@", 1, true)
		return at and ("****@" .. sub(v, at + 1)) or "****"
	end
	local n = #v
	if n > 4 then
		return (stars[n - 4] or rep("*", n - 4)) .. sub(v, -4)
	end
	return "****"
end

-- set_json's (name, value) pairs in args for the fields found in ...
-- (json_get's results, in the order of fields); false if none was.
local function masked(args, fields, n, ...)
	local any = false
	for j = 1, n do
		local v = select(j, ...)
		if v ~= nil then
			args[2 * j] = mask(fields[j], v)
			any = true
		else
			args[2 * j] = nil -- not there: set_json leaves it so
		end
	end
	return any
end

return {
	on_batch = function(batch, ctx)
		local fields = ctx.options.fields or DEFAULT_FIELDS
		local n = #fields
		-- The methods once per batch, not looked up per record.
		local json_get, set_json = batch.json_get, batch.set_json
		local args = {}
		for j = 1, n do
			args[2 * j - 1] = fields[j]
		end
		for i = 1, batch:count() do
			-- A tombstone has no fields, and passes.
			if masked(args, fields, n,
					json_get(batch, i, unpack(fields, 1, n))) then
				set_json(batch, i, unpack(args, 1, 2 * n))
			end
		end
	end,
}
