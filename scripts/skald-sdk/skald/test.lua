--[[
skald.test: run a hook script over records offline, with the behaviour of
the broker's embedding (core/hook_runtime.c), for unit tests with busted:

  local hooktest = require("skald.test")
  local out = hooktest.run("scripts/examples/mask_pii.lua", {
      { key = "k", value = '{"card":"4111111111111111"}' },
  }, { options = { fields = { "card" } }, topic = "payments" })
  -- out.records: what would be written, each {key, value, headers,
  --   timestamp, offset_delta}; out.dropped: offset deltas not written;
  --   out.emitted: {topic = ..., key, value, headers, timestamp} copies
  --   sent with ctx.emit; out.error: the message when the hook failed
  --   (then records is nil: the topic's on_error policy decides).
  local keep = hooktest.retain("scripts/examples/keep_flagged.lua",
      { base_offset = 0, last_offset = 99, first_timestamp = 0,
        max_timestamp = 0, size = 4096 }, { options = {...} })

Like the broker, it loads scripts as text only into an allow-listed
environment where globals cannot be created, gives on_batch a batch object
with the same methods, applies a call's effects only if it returns
normally, and represents a null header value as false. What it does not
do: bound CPU time and memory (the broker does), or re-encode batches.
]]
local skald = require("skald")
local unpack = unpack or table.unpack

local M = {}

local function readonly()
	error("attempt to modify a read-only table (hook scripts are " ..
		"sandboxed)", 2)
end

local function freeze(t)
	return setmetatable({}, {
		__index = t, __newindex = readonly, __metatable = false,
	})
end

local function copy(t)
	local c = {}
	for k, v in pairs(t) do
		c[k] = v
	end
	return c
end

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

local function sandbox()
	local string_copy = copy(string)
	string_copy.dump = nil
	local globals = {
		assert = assert, error = error, ipairs = ipairs, next = next,
		pairs = pairs, pcall = pcall, xpcall = xpcall, select = select,
		tonumber = tonumber, tostring = tostring, type = type,
		unpack = unpack or table.unpack, rawequal = rawequal,
		rawget = rawget, setmetatable = setmetatable,
		getmetatable = getmetatable, _VERSION = _VERSION,
		string = freeze(string_copy), table = freeze(copy(table)),
		math = freeze(copy(math)),
		bit = bit and freeze(copy(bit)) or nil,
		os = freeze({ time = os.time, clock = os.clock, date = os.date }),
		skald = freeze({
			json = freeze(skald.json), log = freeze(skald.log),
			now = skald.now, version = skald.version,
		}),
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
	return env
end

-- Load a script the way the broker does: text only, sandboxed.
function M.load(path)
	local f = assert(io.open(path, "rb"))
	local src = f:read("*a")
	f:close()
	if src:byte(1) == 27 then
		error(path .. ": attempt to load chunk with wrong mode", 0)
	end
	local env = sandbox()
	local chunk, err
	if setfenv then
		chunk, err = loadstring(src, "@" .. path)
		if chunk then
			setfenv(chunk, env)
		end
	else
		chunk, err = load(src, "@" .. path, "t", env)
	end
	if not chunk then
		error(err, 0)
	end
	local mod = chunk()
	if type(mod) ~= "table" or not (mod.on_record or mod.on_batch or
		mod.retain) then
		error(path .. ": the script must return a table with " ..
			"on_record, on_batch or retain", 0)
	end
	return mod
end

local function headers_copy(h)
	local c = {}
	for k, v in pairs(h or {}) do
		c[k] = v
	end
	return c
end

local function check_bytes(v, what)
	if v ~= nil and type(v) ~= "string" then
		error(what .. " must be a string or nil, got " .. type(v), 3)
	end
	return v
end

local function check_headers(h)
	if h == nil then
		return {}
	end
	if type(h) ~= "table" then
		error("headers must be a table of name to value, got " ..
			type(h), 3)
	end
	for k, v in pairs(h) do
		if type(k) ~= "string" or not (type(v) == "string" or v == false) then
			error("header '" .. tostring(k) ..
				"' must be a string (or false for null)", 3)
		end
	end
	return headers_copy(h)
end

-- The batch object on_batch receives (same methods as the broker's).
local function new_batch(recs, idx, state)
	local b = {}
	local function rec(self, i)
		if not state.live then
			error("batch used outside its on_batch call", 3)
		end
		if type(i) ~= "number" or i < 1 or i > #idx then
			error(("record index %s out of range 1..%d"):format(
				tostring(i), #idx), 3)
		end
		return recs[idx[i]]
	end
	function b:count()
		if not state.live then
			error("batch used outside its on_batch call", 2)
		end
		return #idx
	end
	function b:key(i) return rec(self, i).key end
	function b:value(i) return rec(self, i).value end
	function b:timestamp(i) return rec(self, i).timestamp end
	function b:headers(i) return headers_copy(rec(self, i).headers) end
	function b:header(i, name) return rec(self, i).headers[name] end
	function b:drop(i) rec(self, i).dropped = true end
	function b:dropped(i) return rec(self, i).dropped == true end
	function b:set_key(i, s)
		rec(self, i).key = check_bytes(s, "key")
	end
	function b:set_value(i, s)
		rec(self, i).value = check_bytes(s, "value")
	end
	-- json.decode of the value (nil for a null value), and set_value of
	-- json.encode(v): what the broker does without the text as a string.
	function b:value_json(i)
		local v = rec(self, i).value
		if v == nil then
			return nil
		end
		return skald.json.decode(v)
	end
	function b:set_value_json(i, v)
		local r = rec(self, i)
		r.value = skald.json.encode(v)
	end
	-- skald.json.get of the value (nils for a null value), and set_value
	-- of skald.json.set (an error for a null value).
	function b:json_get(i, ...)
		local v = rec(self, i).value
		if v == nil then
			return unpack({}, 1, select("#", ...))
		end
		return skald.json.get(v, ...)
	end
	function b:set_json(i, ...)
		local r = rec(self, i)
		if r.value == nil then
			error(("set_json: the value of record %d is null"):format(i),
				2)
		end
		r.value = skald.json.set(r.value, ...)
	end
	function b:set_timestamp(i, t)
		if type(t) ~= "number" then
			error("timestamp must be a number (ms)", 2)
		end
		rec(self, i).timestamp = t
	end
	function b:set_header(i, name, v)
		if v ~= nil and v ~= false and type(v) ~= "string" then
			error("header value must be a string, false (null) or " ..
				"nil (remove)", 2)
		end
		rec(self, i).headers[name] = v
	end
	return setmetatable({}, { __index = b, __metatable = false })
end

local function make_ctx(opts, emitted, state)
	return {
		topic = opts.topic or "hook-test",
		partition = opts.partition or 0,
		hook = opts.hook or "hook-test",
		options = deepcopy(opts.options or {}),
		emit = function(topic, r)
			if not state.live then
				error("ctx.emit used outside its call", 2)
			end
			if type(topic) ~= "string" or type(r) ~= "table" then
				error("ctx.emit(topic, rec)", 2)
			end
			emitted[#emitted + 1] = {
				topic = topic,
				key = check_bytes(r.key, "rec.key"),
				value = check_bytes(r.value, "rec.value"),
				headers = check_headers(r.headers),
				timestamp = r.timestamp or skald.now(),
			}
		end,
	}
end

-- Run script (a path or a table from M.load) over records.
function M.run(script, records, opts)
	opts = opts or {}
	local mod = type(script) == "table" and script or M.load(script)
	local recs = {}
	for i, r in ipairs(records) do
		recs[i] = {
			key = r.key, value = r.value,
			headers = headers_copy(r.headers),
			timestamp = r.timestamp or skald.now(),
			offset_delta = i - 1,
		}
	end
	local idx = {}
	for i = 1, #recs do
		idx[i] = i
	end
	local emitted, state = {}, { live = true }
	local ctx = make_ctx(opts, emitted, state)
	local ok, err = pcall(function()
		if mod.on_batch then
			mod.on_batch(new_batch(recs, idx, state), ctx)
			return
		end
		for _, i in ipairs(idx) do
			local r = recs[i]
			local arg = {
				key = r.key, value = r.value,
				headers = headers_copy(r.headers),
				timestamp = r.timestamp,
				partition = ctx.partition, topic = ctx.topic,
			}
			local out = mod.on_record(arg, ctx)
			if out == nil or out == false then
				r.dropped = true
			elseif type(out) == "table" then
				r.key = check_bytes(out.key, "rec.key")
				r.value = check_bytes(out.value, "rec.value")
				r.headers = check_headers(out.headers)
				r.timestamp = out.timestamp or r.timestamp
			else
				error("on_record must return the record (a " ..
					"table) or nil, got " .. type(out))
			end
		end
	end)
	state.live = false
	if not ok then
		return { error = tostring(err), emitted = {} }
	end
	local out = { records = {}, dropped = {}, emitted = emitted }
	for _, r in ipairs(recs) do
		if r.dropped then
			out.dropped[#out.dropped + 1] = r.offset_delta
		else
			out.records[#out.records + 1] = {
				key = r.key, value = r.value, headers = r.headers,
				timestamp = r.timestamp,
				offset_delta = r.offset_delta,
			}
		end
	end
	return out
end

-- Ask a retention script about one segment: true (keep) or false.
function M.retain(script, segment, opts)
	opts = opts or {}
	local mod = type(script) == "table" and script or M.load(script)
	local state = { live = true }
	local keep = mod.retain(segment, make_ctx(opts, {}, state))
	if keep ~= nil and type(keep) ~= "boolean" then
		error("retain must return true (keep) or false (delete)")
	end
	return keep ~= false
end

return M
