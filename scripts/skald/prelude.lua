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

-- Whether on_record's rec can outlive its call: whether the function can
-- pass its first parameter anywhere but to its own field reads and
-- writes, comparisons and its return. Read from the bytecode, once per
-- function: the slots holding rec (its parameter slot and whatever is
-- copied from it) must appear only as the table of a field get or set,
-- in a test or comparison, or returned. A store of rec, a call with it
-- in reach, a closure (which could capture it), varargs, or any other
-- instruction touching those slots counts as escaping. If rec cannot
-- escape, each_record may hand the same table to the next record.
local jutil = require("jit.util")
local funcbc, funcinfo = jutil.funcbc, jutil.funcinfo
local band, rshift = bit.band, bit.rshift

-- This LuaJIT's opcode numbers (they differ between versions), from the
-- first or last instruction of small functions.
local function op_at(f, last)
	local pc = last and funcinfo(f).bytecodes - 1 or 1
	return band(funcbc(f, pc), 0xff)
end
local OP = {
	MOV = op_at(function(a) local b = a return b end),
	ISTC = op_at(function(a, b) local c = a or b return c end),
	ISFC = op_at(function(a, b) local c = a and b return c end),
	TGETV = op_at(function(a, k) return a[k] end),
	TGETS = op_at(function(a) return a.x end),
	TGETB = op_at(function(a) return a[1] end),
	TSETV = op_at(function(a, k, v) a[k] = v end),
	TSETS = op_at(function(a, v) a.x = v end),
	TSETB = op_at(function(a, v) a[1] = v end),
	RET1 = op_at(function(a) return a end, true),
	RET = op_at(function(a, b) return b, a end, true),
	FNEW = op_at(function() return function() end end),
}
local COPY = { [OP.MOV] = true, [OP.ISTC] = true, [OP.ISFC] = true }
local GET = { [OP.TGETV] = true, [OP.TGETS] = true, [OP.TGETB] = true }
local SET = { [OP.TSETV] = true, [OP.TSETS] = true, [OP.TSETB] = true }
local TEST = {}
for _, f in ipairs({
	function(a, b) if a == b then return end end,
	function(a, b) if a ~= b then return end end,
	function(a) if a == "x" then return end end,
	function(a) if a ~= "x" then return end end,
	function(a) if a == 1 then return end end,
	function(a) if a ~= 1 then return end end,
	function(a) if a == nil then return end end,
	function(a) if a ~= nil then return end end,
	function(a) if a then return end end,
	function(a) if not a then return end end,
}) do
	TEST[op_at(f)] = true
end

-- Operand modes (lj_bc.h): slot operands.
local BCM_DST, BCM_BASE, BCM_VAR, BCM_RBASE = 1, 2, 3, 4

local function decode(f, pc)
	local ins, m = funcbc(f, pc)
	local op = band(ins, 0xff)
	local ma, mb, mc = band(m, 7), band(rshift(m, 3), 15),
		band(rshift(m, 7), 15)
	local a = band(rshift(ins, 8), 0xff)
	local b, c
	if mb ~= 0 then
		b, c = rshift(ins, 24), band(rshift(ins, 16), 0xff)
	else
		c = rshift(ins, 16) -- D, in C's mode
	end
	return op, ma, a, mb, b, mc, c
end

local function rec_escapes(f)
	local info = funcinfo(f)
	if not info.bytecodes or info.isvararg then
		return true -- a C function, or rec reachable through ...
	end
	if info.params == 0 then
		return false
	end
	local n = info.bytecodes - 1
	local holds = { [0] = true } -- slots that may hold rec
	local grew = true
	while grew do -- copies, to a fixed point
		grew = false
		for pc = 1, n do
			local op, _, a, mb, _, _, c = decode(f, pc)
			if COPY[op] and mb == 0 and holds[c] and not holds[a] then
				holds[a], grew = true, true
			end
		end
	end
	local function from(base) -- a range from base up holds rec?
		for slot in pairs(holds) do
			if slot >= base then
				return true
			end
		end
		return false
	end
	for pc = 1, n do
		local op, ma, a, mb, b, mc, c = decode(f, pc)
		if op == OP.FNEW then
			return true
		elseif COPY[op] or TEST[op] or op == OP.RET1 or op == OP.RET then
			-- copied (followed above), tested, or returned
		elseif GET[op] then
			if mc == BCM_VAR and holds[c] then
				return true -- rec as a key: another table's __index
			end
		elseif SET[op] then
			if holds[a] or (mc == BCM_VAR and holds[c]) then
				return true -- rec stored, or used as a key
			end
		else
			for _, o in ipairs({ { ma, a }, { mb, b }, { mc, c } }) do
				local mode, v = o[1], o[2]
				if (mode == BCM_VAR and holds[v]) or
					((mode == BCM_BASE or mode == BCM_RBASE) and from(v)) then
					return true
				end
			end
		end
	end
	return false
end

-- The analysis first checks itself on functions whose answer is known:
-- should this LuaJIT compile any of them otherwise (other opcodes for
-- the probes, say), rec is always taken to escape.
local sound = true
do
	local kept
	for _, c in ipairs({
		{ true, function(r) kept = r end },
		{ true, function(r) local x = r kept = x end },
		{ true, function(r, t) t[1] = r end },
		{ true, function(r, t) t.x = r end },
		{ true, function(r, t) local x = r or t t.y = x end },
		{ true, function(r, t) local x = t and r t[x] = 1 end },
		{ true, function(r) tostring(r) end },
		{ true, function(r) return function() return r end end },
		{ false, function(r) r.value = r.value .. "x" return r end },
		{ false, function(r) local x = r if x.v == "a" then return nil end
			return x end },
	}) do
		sound = sound and rec_escapes(c[2]) == c[1]
	end
end

local verdicts = setmetatable({}, { __mode = "k" })

function M.rec_escapes(f)
	local v = verdicts[f]
	if v == nil then
		v = not sound or rec_escapes(f)
		verdicts[f] = v
	end
	return v
end

-- The broker's loop of on_record over a batch of n records. Lua calls
-- Lua far more cheaply than C calls Lua, and a record needs no call into
-- C unless on_record changed or dropped it. cur = { i, rec, touched }
-- tells the C side which record is running (touched: a lazy field was
-- read, or a field added); fns are the C functions fill (the next chunk
-- of values, false for null), own (rec changed) and other (another table
-- returned). When rec cannot outlive the call and on_record added no
-- field to it, the next record gets the same table, its value replaced:
-- no table to allocate and collect. Returns the dropped records' indexes
-- and their count.
function M.each_record(on_record, ctx, n, mt, cur, fns)
	local fill, own, other = fns.fill, fns.own, fns.other
	local reuse = not M.rec_escapes(on_record)
	local vals, i, rec = {}, 0, nil
	local drops, nd = {}, 0
	while i < n do
		for k = 1, fill(vals, i + 1) do
			i = i + 1
			local v = vals[k] or nil
			if rec then
				rec.value = v
			else
				rec = setmetatable({ value = v }, mt)
				cur[2] = rec
			end
			cur[1] = i
			local r = on_record(rec, ctx)
			local dirty = cur[3]
			if r == rec then
				if dirty or rec.value ~= v then
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
			if dirty or not reuse then
				rec = nil
			end
		end
	end
	cur[2] = nil
	return drops, nd
end

return M
