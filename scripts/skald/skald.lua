--[[
The `skald` module that every hook script sees: skald.json, skald.log,
skald.now. Pure Lua, so the broker and the SDK run this same file: the
broker passes a host table ({log = fn(level, msg), now = fn() -> ms,
json = its C codec}); required as a plain module (the SDK, busted), it
falls back to io.stderr, os.time and the Lua codec below, which the C
one (core/hook_json.c) matches rule for rule and error for error.

skald.json is exact where JSON libraries often are not:
  - numbers: integers up to 2^53 are written as integers, others with the
    fewest digits that read back as the same double (never rounded to 14
    digits);
  - arrays stay arrays: decode marks every array, even an empty one, so
    encode(decode("[]")) is "[]"; skald.json.array(t) marks a table the
    same way; an unmarked empty table encodes as {};
  - null: decode gives skald.json.null inside arrays and objects, which
    encode writes back as null;
  - object keys are written sorted, so output is deterministic.
Decode accepts exactly RFC 8259 (one value, optional blanks around it);
nesting deeper than 200 is an error.
]]
local host = ...
if type(host) ~= "table" then
	host = {}
end

local byte, char, find, format, gsub, sub =
	string.byte, string.char, string.find, string.format, string.gsub,
	string.sub
local concat, sort = table.concat, table.sort
local unpack = unpack or table.unpack
local floor, huge = math.floor, math.huge
local tonumber, tostring, type, pairs, next, select, error, setmetatable,
	getmetatable = tonumber, tostring, type, pairs, next, select, error,
	setmetatable, getmetatable

local MAX_DEPTH = 200
local ARRAY_TAG = "skald.json.array"
local array_mt = { __metatable = ARRAY_TAG }
local null = setmetatable({}, {
	__metatable = "skald.json.null",
	__newindex = function()
		error("skald.json.null is read-only", 2)
	end,
	__tostring = function()
		return "null"
	end,
})

local json = { null = null }

function json.array(t)
	return setmetatable(t or {}, array_mt)
end

function json.is_array(t)
	return type(t) == "table" and getmetatable(t) == ARRAY_TAG
end

-- Decoding ---------------------------------------------------------------

-- Errors name the function called: decode, get or set.
local fail_who = "skald.json.decode"

local function fail(i, what)
	error(format("%s: %s at byte %d", fail_who, what, i), 0)
end

local escapes = {
	[34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f",
	[110] = "\n", [114] = "\r", [116] = "\t",
}

local function utf8(cp)
	if cp < 0x80 then
		return char(cp)
	elseif cp < 0x800 then
		return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
	elseif cp < 0x10000 then
		return char(0xE0 + floor(cp / 0x1000),
			0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
	end
	return char(0xF0 + floor(cp / 0x40000),
		0x80 + floor(cp / 0x1000) % 0x40,
		0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local function skip(s, i)
	local _, e = find(s, "^[ \t\r\n]*", i)
	return e + 1
end

local function decode_string(s, i)
	-- s:byte(i) is the opening quote
	local parts, np, pos = nil, 0, i + 1
	while true do
		local j = find(s, '["\\%z\1-\31]', pos)
		if not j then
			fail(i, "unterminated string")
		end
		local c = byte(s, j)
		if c == 34 then
			if not parts then
				return sub(s, pos, j - 1), j + 1
			end
			np = np + 1
			parts[np] = sub(s, pos, j - 1)
			return concat(parts, "", 1, np), j + 1
		elseif c ~= 92 then
			fail(j, "control character in string")
		end
		parts = parts or {}
		np = np + 1
		parts[np] = sub(s, pos, j - 1)
		local e = byte(s, j + 1)
		if e == 117 then
			local hex = sub(s, j + 2, j + 5)
			if not find(hex, "^%x%x%x%x$") then
				fail(j, "bad \\u escape")
			end
			local cp = tonumber(hex, 16)
			pos = j + 6
			if cp >= 0xD800 and cp <= 0xDBFF then
				local lo = find(s, "^\\u[dD][c-fC-F]%x%x", pos) and
					tonumber(sub(s, pos + 2, pos + 5), 16)
				if lo then
					cp = 0x10000 + (cp - 0xD800) * 0x400 +
						(lo - 0xDC00)
					pos = pos + 6
				else
					cp = 0xFFFD
				end
			elseif cp >= 0xDC00 and cp <= 0xDFFF then
				cp = 0xFFFD
			end
			np = np + 1
			parts[np] = utf8(cp)
		else
			local r = escapes[e]
			if not r then
				fail(j, "bad escape")
			end
			np = np + 1
			parts[np] = r
			pos = j + 2
		end
	end
end

local decode_value

local function decode_array(s, i, depth)
	local t, n = setmetatable({}, array_mt), 0
	i = skip(s, i + 1)
	if byte(s, i) == 93 then
		return t, i + 1
	end
	while true do
		local v
		v, i = decode_value(s, i, depth)
		n = n + 1
		t[n] = v
		i = skip(s, i)
		local c = byte(s, i)
		if c == 93 then
			return t, i + 1
		elseif c ~= 44 then
			fail(i, "expected ',' or ']'")
		end
		i = skip(s, i + 1)
	end
end

-- The members of the object whose '{' is at i, each handed to
-- fn(ks, k, vs, depth): the key's opening quote, the key, the start of the
-- value, which fn parses, returning the position after it. The object
-- grammar, for decode and for get and set. Returns the position of '}'.
local function members(s, i, depth, fn)
	i = skip(s, i + 1)
	if byte(s, i) == 125 then
		return i
	end
	while true do
		if byte(s, i) ~= 34 then
			fail(i, "expected a string key")
		end
		local ks, k = i, nil
		k, i = decode_string(s, i)
		i = skip(s, i)
		if byte(s, i) ~= 58 then
			fail(i, "expected ':'")
		end
		i = skip(s, fn(ks, k, skip(s, i + 1), depth))
		local c = byte(s, i)
		if c == 125 then
			return i
		elseif c ~= 44 then
			fail(i, "expected ',' or '}'")
		end
		i = skip(s, i + 1)
	end
end

local function decode_object(s, i, depth)
	local t = {}
	local close = members(s, i, depth, function(_, k, vs, d)
		local v, e = decode_value(s, vs, d)
		t[k] = v
		return e
	end)
	return t, close + 1
end

function decode_value(s, i, depth)
	local c = byte(s, i)
	if c == 34 then
		return decode_string(s, i)
	elseif c == 123 or c == 91 then
		if depth >= MAX_DEPTH then
			fail(i, "nesting too deep")
		end
		if c == 123 then
			return decode_object(s, i, depth + 1)
		end
		return decode_array(s, i, depth + 1)
	elseif c == 116 and sub(s, i, i + 3) == "true" then
		return true, i + 4
	elseif c == 102 and sub(s, i, i + 4) == "false" then
		return false, i + 5
	elseif c == 110 and sub(s, i, i + 3) == "null" then
		return null, i + 4
	end
	local _, e = find(s, "^-?[0-9]+", i)
	if not e or (byte(s, i + (c == 45 and 1 or 0)) == 48 and
		e > i + (c == 45 and 1 or 0)) then
		if c == nil then
			fail(i, "unexpected end of input")
		end
		fail(i, "unexpected character")
	end
	local e2 = select(2, find(s, "^%.[0-9]+", e + 1))
	e = e2 or e
	e2 = select(2, find(s, "^[eE][-+]?[0-9]+", e + 1))
	e = e2 or e
	return tonumber(sub(s, i, e)), e + 1
end

-- The JSON text given to decode, get or set (who); errors name the
-- caller's line.
local function check_text(s, who)
	if type(s) ~= "string" then
		error(who .. ": expected a string, got " .. type(s), 3)
	end
end

function json.decode(s)
	check_text(s, "skald.json.decode")
	fail_who = "skald.json.decode"
	local v, i = decode_value(s, skip(s, 1), 0)
	i = skip(s, i)
	if i <= #s then
		fail(i, "trailing characters")
	end
	return v
end

-- Encoding ---------------------------------------------------------------

local string_escapes = {
	['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
	["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
local function escape_char(c)
	return string_escapes[c] or format("\\u%04x", byte(c))
end

local function encode_string(s)
	if not find(s, '[%z\1-\31"\\]') then
		return '"' .. s .. '"'
	end
	return '"' .. gsub(s, '[%z\1-\31"\\]', escape_char) .. '"'
end

local function encode_number(x)
	if x ~= x or x == huge or x == -huge then
		error("skald.json.encode: cannot encode " .. tostring(x), 0)
	end
	if floor(x) == x and x >= -2 ^ 53 and x <= 2 ^ 53 then
		return format("%d", x)
	end
	for digits = 14, 17 do
		local s = format("%." .. digits .. "g", x)
		if tonumber(s) == x then
			return s
		end
	end
	return format("%.17g", x)
end

local function key_less(a, b)
	return a < b
end

local encode_value

local function encode_table(t, depth, out, n)
	if depth >= MAX_DEPTH then
		error("skald.json.encode: nesting too deep (a cycle?)", 0)
	end
	if t == null then
		n = n + 1
		out[n] = "null"
		return n
	end
	local len = #t
	local is_array = getmetatable(t) == ARRAY_TAG
	if not is_array and len > 0 then
		local count = 0
		for _ in pairs(t) do
			count = count + 1
		end
		is_array = count == len
	end
	if is_array then
		n = n + 1
		out[n] = "["
		for i = 1, len do
			if i > 1 then
				n = n + 1
				out[n] = ","
			end
			n = encode_value(t[i], depth + 1, out, n)
		end
		n = n + 1
		out[n] = "]"
		return n
	end
	local keys, nk = {}, 0
	for k in pairs(t) do
		if type(k) ~= "string" then
			error("skald.json.encode: object keys must be strings, " ..
				"got " .. type(k), 0)
		end
		nk = nk + 1
		keys[nk] = k
	end
	sort(keys, key_less)
	n = n + 1
	out[n] = "{"
	for i = 1, nk do
		local k = keys[i]
		if i > 1 then
			n = n + 1
			out[n] = ","
		end
		n = n + 1
		out[n] = encode_string(k) .. ":"
		n = encode_value(t[k], depth + 1, out, n)
	end
	n = n + 1
	out[n] = "}"
	return n
end

function encode_value(v, depth, out, n)
	local tv = type(v)
	local s
	if tv == "string" then
		s = encode_string(v)
	elseif tv == "number" then
		s = encode_number(v)
	elseif tv == "boolean" then
		s = v and "true" or "false"
	elseif tv == "nil" then
		s = "null"
	elseif tv == "table" then
		return encode_table(v, depth, out, n)
	else
		error("skald.json.encode: cannot encode a " .. tv, 0)
	end
	n = n + 1
	out[n] = s
	return n
end

function json.encode(v)
	local out = {}
	local n = encode_value(v, 0, out, 0)
	return concat(out, "", 1, n)
end

-- Fields of an object ---------------------------------------------------
-- json.get(s, name, ...) gives the values of top-level fields of the
-- object s; json.set(s, name, value, ...) gives s with those fields set
-- (a nil value removes one, a name not there is added at the end) and
-- every other byte as it was: key order, blanks, numbers as written.
-- Both check all of s as decode does.

local MAX_FIELDS = 64

local function check_names(who, step, ...)
	local n = select("#", ...)
	local count = step == 1 and n or floor((n + 1) / 2)
	if count > MAX_FIELDS then
		error(format("%s: at most %d fields at once", who, MAX_FIELDS), 0)
	end
	for j = 1, count do
		local name = select(1 + (j - 1) * step, ...)
		if type(name) ~= "string" then
			error(format("%s: field names must be strings, got %s", who,
				type(name)), 0)
		end
	end
	return count
end

-- The members of the object that is all of s (byte positions: the key's
-- opening quote, the value's start and the position after it), and the
-- position of the closing brace.
local function walk(s, who)
	fail_who = who
	local i = skip(s, 1)
	if byte(s, i) ~= 123 then
		error(who .. ": not a JSON object", 0)
	end
	local list, n = {}, 0
	local close = members(s, i, 1, function(ks, k, vs, depth)
		local v, ve = decode_value(s, vs, depth)
		n = n + 1
		list[n] = { key = k, value = v, ks = ks, vs = vs, ve = ve }
		return ve
	end)
	i = skip(s, close + 1)
	if i <= #s then
		fail(i, "trailing characters")
	end
	return list, n, close
end

function json.get(s, ...)
	check_text(s, "skald.json.get")
	local count = check_names("skald.json.get", 1, ...)
	local members, n = walk(s, "skald.json.get")
	local out = {}
	for j = 1, count do
		local name = select(j, ...)
		for m = n, 1, -1 do -- a key given twice: the last one wins
			if members[m].key == name then
				out[j] = members[m].value
				break
			end
		end
	end
	return unpack(out, 1, count)
end

function json.set(s, ...)
	check_text(s, "skald.json.set")
	local np = check_names("skald.json.set", 2, ...)
	local args = { ... }
	local members, n, close = walk(s, "skald.json.set")
	local last = {} -- a name given twice: its last pair decides
	for j = 1, np do
		last[args[2 * j - 1]] = j
	end
	local out, no, kept, named = {}, 1, 0, {}
	out[1] = sub(s, 1, (n > 0 and members[1].ks or close) - 1)
	for m = 1, n do
		local mm = members[m]
		local j = last[mm.key]
		if j then
			named[j] = true
		end
		if not j or args[2 * j] ~= nil then
			if kept > 0 then
				no = no + 1
				out[no] = sub(s, members[m - 1].ve, mm.ks - 1)
			end
			kept = kept + 1
			no = no + 1
			if j then
				out[no] = sub(s, mm.ks, mm.vs - 1)
				no = encode_value(args[2 * j], 1, out, no)
			else
				out[no] = sub(s, mm.ks, mm.ve - 1)
			end
		end
	end
	for j = 1, np do
		local name, v = args[2 * j - 1], args[2 * j]
		if not named[j] and v ~= nil and last[name] == j then
			if kept > 0 then
				no = no + 1
				out[no] = ","
			end
			kept = kept + 1
			no = no + 1
			out[no] = encode_string(name) .. ":"
			no = encode_value(v, 1, out, no)
		end
	end
	no = no + 1
	out[no] = sub(s, n > 0 and members[n].ve or close)
	return concat(out, "", 1, no)
end

-- The broker's C codec (core/hook_json.c): the same rules and errors,
-- bound to this module's null and array mark. The SDK keeps the Lua one.
if host.json then
	json.decode, json.encode, json.get, json.set =
		host.json(null, array_mt)
end

-- Log and clock ----------------------------------------------------------

local function message(fmt, ...)
	if select("#", ...) > 0 then
		return format(tostring(fmt), ...)
	end
	return tostring(fmt)
end

local hostlog = host.log or function(level, msg)
	io.stderr:write(("[skald %s] %s\n"):format(level, msg))
end
local hostnow = host.now or function()
	return os.time() * 1000
end
local log = {
	info = function(fmt, ...)
		hostlog("info", message(fmt, ...))
	end,
	warn = function(fmt, ...)
		hostlog("warn", message(fmt, ...))
	end,
}

return {
	json = json,
	log = log,
	now = function()
		return hostnow()
	end,
	version = "0.1.0",
}
