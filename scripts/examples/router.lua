-- Router: a record whose value contains options.match (plain text) is
-- also written, as a copy with a header saying where it came from, to the
-- topic options.to; the original stays in its own topic.
--
--   hooks:
--     - name: route-errors
--       script: scripts/examples/router.lua
--       options: { match: ERROR, to: errors }
local find = string.find

return {
	on_record = function(rec, ctx)
		local to, match = ctx.options.to, ctx.options.match
		if to and match and rec.value and find(rec.value, match, 1, true) then
			local headers = {}
			for k, v in pairs(rec.headers) do
				headers[k] = v
			end
			headers["routed-from"] = ctx.topic
			ctx.emit(to, {
				key = rec.key,
				value = rec.value,
				headers = headers,
				timestamp = rec.timestamp,
			})
		end
		return rec
	end,
}
