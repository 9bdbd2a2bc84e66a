-- Header stamper: every record gets a header naming the stamper
-- (options.name, default "skald") and one with the time it went through
-- the broker, in ms since the epoch.
return {
	on_batch = function(batch, ctx)
		local name = ctx.options.name or "skald"
		local now = tostring(skald.now())
		for i = 1, batch:count() do
			batch:set_header(i, "stamped-by", name)
			batch:set_header(i, "stamped-at", now)
		end
	end,
}
