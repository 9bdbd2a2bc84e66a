-- Retention script: keeps the segments holding flagged records after the
-- topic's time and size rules would delete them. Flagged records are
-- given by offset in options.flagged (a list), for example by the tool
-- that flags them, with a SIGHUP to apply a new list; a segment holding
-- any of them is kept, and so is every segment after it (retention only
-- ever deletes the oldest segments).
--
--   topics:
--     audit:
--       retention:
--         script: scripts/examples/keep_flagged.lua
--         options: { flagged: [1042, 99871] }
return {
	retain = function(segment, ctx)
		for _, offset in ipairs(ctx.options.flagged or {}) do
			if offset >= segment.base_offset and
				offset <= segment.last_offset then
				return true
			end
		end
		return false
	end,
}
