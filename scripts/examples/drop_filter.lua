-- Drop filter: records whose value contains options.pattern (plain text,
-- default "DEBUG") are not written; every other record is kept as is.
--
--   hooks:
--     - name: no-debug
--       script: scripts/examples/drop_filter.lua
--       options: { pattern: DEBUG }
local find = string.find

return {
	on_record = function(rec, ctx)
		local pattern = ctx.options.pattern or "DEBUG"
		if rec.value and find(rec.value, pattern, 1, true) then
			return nil
		end
		return rec
	end,
}
