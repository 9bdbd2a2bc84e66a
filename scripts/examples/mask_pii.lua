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
local json = skald.json

local function mask(field, v)
	if type(v) ~= "string" then
		return "****"
	end
	if field == "email" then
		local domain = v:match("@(.*)$")
		return domain and ("****@" .. domain) or "****"
	end
	if #v > 4 then
		return string.rep("*", #v - 4) .. v:sub(-4)
	end
	return "****"
end

return {
	on_record = function(rec, ctx)
		if rec.value == nil then
			return rec -- tombstones pass
		end
		local doc = json.decode(rec.value)
		if type(doc) ~= "table" or json.is_array(doc) then
			error("value is not a JSON object")
		end
		local changed = false
		for _, field in ipairs(ctx.options.fields or { "card", "email" }) do
			if doc[field] ~= nil then
				doc[field] = mask(field, doc[field])
				changed = true
			end
		end
		if changed then
			rec.value = json.encode(doc)
		end
		return rec
	end,
}
