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
-- Written for speed: on_batch (no record table and no call from the
-- broker per record), batch:value_json and batch:set_value_json (the
-- value is decoded from and encoded into the batch without becoming a Lua
-- string), library functions in locals, plain find instead of a pattern,
-- and the runs of '*' cached by length.
local is_array = skald.json.is_array
local find, sub, rep = string.find, string.sub, string.rep
local type, error = type, error

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

return {
	on_batch = function(batch, ctx)
		local fields = ctx.options.fields or DEFAULT_FIELDS
		-- The methods once per batch, not looked up per record.
		local value_json, set_value_json =
			batch.value_json, batch.set_value_json
		for i = 1, batch:count() do
			local doc = value_json(batch, i) -- nil: a tombstone, passes
			if doc ~= nil then
				if type(doc) ~= "table" or is_array(doc) then
					error("value is not a JSON object")
				end
				local changed = false
				local j, field = 1, fields[1]
				while field ~= nil do -- ipairs(fields)
					local v = doc[field]
					if v ~= nil then
						doc[field] = mask(field, v)
						changed = true
					end
					j = j + 1
					field = fields[j]
				end
				if changed then
					set_value_json(batch, i, doc)
				end
			end
		end
	end,
}
