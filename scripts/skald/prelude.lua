--[[
Trusted prelude of every hook state (broker only; the SDK has its own
twin in scripts/skald-sdk/skald/test.lua). It runs first and alone with the
whole standard library, then builds the sandbox that user scripts run in:

  - an allow-list environment: base functions minus load, loadstring,
    dofile, loadfile, getfenv, setfenv, rawset, newproxy, collectgarbage,
    print, module, require; string minus dump; table; math; bit;
    os.time/clock/date; and the skald module;
  - every shared table is a read-only proxy with a locked metatable, and
    so is the environment itself: a script cannot create globals, so
    nothing persists across calls through them (use locals);
  - the real string table, which every string value reaches through its
    metatable, loses dump, and that metatable is locked.

Called by core/hook_runtime.c with (skald_chunk, host); returns the
internal functions the C side calls.
]]
local skald_chunk, host = ...

local error, setmetatable, setfenv, type, pairs, tostring, next =
	error, setmetatable, setfenv, type, pairs, tostring, next

local function readonly()
	error("attempt to modify a read-only table (hook scripts are " ..
		"sandboxed)", 2)
end

-- A read-only proxy: reads go to t, writes fail, the metatable is locked.
local function freeze(t)
	return setmetatable({}, {
		__index = t,
		__newindex = readonly,
		__metatable = false,
	})
end

local function copy(t, except)
	local c = {}
	for k, v in pairs(t) do
		if not (except and except[k]) then
			c[k] = v
		end
	end
	return c
end

-- The string table is shared with every string value: sanitise it in
-- place before anything user-supplied runs, and lock its metatable.
string.dump = nil
local string_mt = getmetatable("")
string_mt.__metatable = false

local skald = skald_chunk(host)
local skald_api = freeze({
	json = freeze(skald.json),
	log = freeze(skald.log),
	now = skald.now,
	version = skald.version,
})

local globals = {
	assert = assert, error = error, ipairs = ipairs, next = next,
	-- host.pairs also lists a record's lazily filled fields.
	pairs = host.pairs or pairs, pcall = pcall, xpcall = xpcall,
	select = select,
	tonumber = tonumber, tostring = tostring, type = type,
	unpack = unpack, rawequal = rawequal, rawget = rawget,
	setmetatable = setmetatable, getmetatable = getmetatable,
	_VERSION = _VERSION,
	string = freeze(copy(string)),
	table = freeze(copy(table)),
	math = freeze(copy(math)),
	bit = freeze(copy(bit)),
	os = freeze({ time = os.time, clock = os.clock, date = os.date }),
	skald = skald_api,
}
local env = setmetatable({}, {
	__index = globals,
	__newindex = function(_, k)
		error("attempt to set global '" .. tostring(k) ..
			"' (hook scripts are sandboxed: use local)", 2)
	end,
	__metatable = false,
})
globals._G = env

local M = {}

-- Give a compiled user chunk the sandbox and run its top level: it must
-- return a table with on_record, on_batch and/or retain.
function M.instantiate(chunk)
	setfenv(chunk, env)
	local mod = chunk()
	if type(mod) ~= "table" then
		error("the script must return a table with on_record, " ..
			"on_batch or retain, got " .. type(mod), 0)
	end
	local any = false
	for _, name in pairs({ "on_record", "on_batch", "retain" }) do
		local f = mod[name]
		if f ~= nil and type(f) ~= "function" then
			error(name .. " must be a function, got " .. type(f), 0)
		end
		any = any or f ~= nil
	end
	if not any then
		error("the script returns no on_record, on_batch or retain", 0)
	end
	return mod
end

-- A fresh deep copy of decoded options per call: scripts may change
-- ctx.options without it leaking into the next batch.
local function deepcopy(v)
	if type(v) ~= "table" or v == skald.json.null then
		return v
	end
	local c = skald.json.is_array(v) and skald.json.array() or {}
	for k, x in pairs(v) do
		c[k] = deepcopy(x)
	end
	return c
end

function M.decode_options(text)
	return skald.json.decode(text)
end

M.deepcopy = deepcopy

-- The broker's loop of on_record over a batch of n records. Lua calls
-- Lua far more cheaply than C calls Lua, and a record needs no call into
-- C unless on_record changed or dropped it. cur = { i, rec, touched }
-- tells the C side which record is running (touched: a lazy field was
-- read or assigned); fns are the C functions fill (the next chunk of
-- values, false for null), own (rec changed) and other (another table
-- returned). Returns the dropped records' indexes and their count.
local setmetatable = setmetatable

function M.each_record(on_record, ctx, n, mt, cur, fns)
	local fill, own, other = fns.fill, fns.own, fns.other
	local vals, base, have = {}, 0, 0
	local drops, nd = {}, 0
	for i = 1, n do
		if i > base + have then
			base, have = i - 1, fill(vals, i)
		end
		local v = vals[i - base] or nil
		local rec = setmetatable({ value = v }, mt)
		cur[1], cur[2] = i, rec
		local r = on_record(rec, ctx)
		if r == rec then
			if cur[3] or rec.value ~= v then
				cur[3] = false
				own(i, rec, v)
			end
		else
			cur[3] = false
			if r == nil or r == false then
				nd = nd + 1
				drops[nd] = i
			else
				other(i, r)
			end
		end
	end
	cur[2] = nil
	return drops, nd
end

return M
