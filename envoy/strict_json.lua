-- Strict JSON at the edge (server/edge/strict_json.py says why). ROUTES and MESSAGES come before
-- this code, rendered from the descriptor set. A body of the wrong shape is refused with
-- INVALID_ARGUMENT and a field violation; malformed JSON and everything unexpected pass on to the
-- transcoder, which refuses what it cannot parse.

local Violation = {}
local Malformed = {}

local function refuse(path, description)
  error(setmetatable({path = path, description = description}, Violation), 0)
end

local function malformed()
  error(Malformed, 0)
end

local function skip_space(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

-- The end of the JSON string that starts at i (a quote), and its text between the quotes.
local function read_string(s, i)
  local j = i + 1
  while true do
    local k = s:find('["\\]', j)
    if k == nil then
      malformed()
    end
    if s:byte(k) == 92 then -- a backslash escapes the next character
      j = k + 2
    else
      return k, s:sub(i + 1, k - 1)
    end
  end
end

-- What the JSON value at i is: "string", "number", "bool", "null", "object", "array".
local function shape(s, i)
  local c = s:sub(i, i)
  if c == '"' then return "string" end
  if c == "{" then return "object" end
  if c == "[" then return "array" end
  if c == "t" or c == "f" then return "bool" end
  if c == "n" then return "null" end
  if c:find("[-0-9]") then return "number" end
  malformed()
end

local NAMES = {
  string = "a string", number = "a number", bool = "true or false", null = "null",
  object = "an object", array = "a list",
}

local function path_of(path, key)
  if path == "" then return key end
  return path .. "." .. key
end

local skip_value

-- The end of the literal or number at i.
local function skip_scalar(s, i)
  local j = s:find("[,%]} \t\r\n]", i)
  return (j or #s + 1) - 1
end

local function skip_members(s, i, close, each)
  i = skip_space(s, i + 1)
  if s:sub(i, i) == close then
    return i
  end
  local index = 0
  while true do
    i = each(s, i, index)
    index = index + 1
    i = skip_space(s, i + 1)
    local c = s:sub(i, i)
    if c == close then
      return i
    end
    if c ~= "," then
      malformed()
    end
    i = skip_space(s, i + 1)
  end
end

-- The end of any JSON value at i, unchecked (unknown fields, google.protobuf.Value).
skip_value = function(s, i)
  local what = shape(s, i)
  if what == "string" then
    return (read_string(s, i))
  elseif what == "object" then
    return skip_members(s, i, "}", function(s2, j)
      if s2:sub(j, j) ~= '"' then malformed() end
      j = skip_space(s2, read_string(s2, j) + 1)
      if s2:sub(j, j) ~= ":" then malformed() end
      return skip_value(s2, skip_space(s2, j + 1))
    end)
  elseif what == "array" then
    return skip_members(s, i, "]", function(s2, j)
      return skip_value(s2, j)
    end)
  end
  return skip_scalar(s, i)
end

local check

local SCALARS = {
  string = {string = true},
  number = {number = true, string = true}, -- proto3 JSON takes "1", "NaN" for numbers
  enum = {string = true, number = true},
  bool = {bool = true},
}

-- Checks the value at i against `kind`; returns its end.
check = function(s, i, kind, path)
  local what = shape(s, i)
  if kind == "any" then
    return skip_value(s, i)
  end
  if type(kind) == "string" then
    if what == "null" then
      return skip_scalar(s, i)
    end
    if kind == "object" then
      if what ~= "object" then refuse(path, "expected an object, got " .. NAMES[what]) end
      return skip_value(s, i)
    end
    if not SCALARS[kind][what] then
      refuse(path, "expected " .. (kind == "enum" and "an enum name" or NAMES[kind]) .. ", got " .. NAMES[what])
    end
    return skip_value(s, i)
  end
  if kind.list ~= nil then
    if what ~= "array" then
      refuse(path, "expected a list (a JSON array; [] for none), got " .. NAMES[what])
    end
    return skip_members(s, i, "]", function(s2, j, index)
      local item = shape(s2, j)
      local at = path .. "[" .. index .. "]"
      if kind.list ~= "any" and (item == "null" or item == "array") then
        refuse(at, NAMES[item] .. " is not a valid list item")
      end
      return check(s2, j, kind.list, at)
    end)
  end
  if what == "null" then -- a message or map not set
    return skip_scalar(s, i)
  end
  if what ~= "object" then
    refuse(path, "expected an object, got " .. NAMES[what])
  end
  local fields = kind.message and MESSAGES[kind.message]
  return skip_members(s, i, "}", function(s2, j)
    if s2:sub(j, j) ~= '"' then malformed() end
    local key_end, key = read_string(s2, j)
    j = skip_space(s2, key_end + 1)
    if s2:sub(j, j) ~= ":" then malformed() end
    j = skip_space(s2, j + 1)
    if kind.map ~= nil then
      if shape(s2, j) == "null" and kind.map ~= "any" then
        refuse(path .. "[" .. key .. "]", "null is not a valid map value")
      end
      return check(s2, j, kind.map, path .. "[" .. key .. "]")
    end
    local field = fields[key]
    if field == nil then
      return skip_value(s2, j) -- unknown: ignored, as the transcoder ignores it
    end
    return check(s2, j, field.kind, path_of(path, field.name))
  end)
end

local function json_string(text)
  return '"' .. text:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function route_of(method, path)
  for _, route in ipairs(ROUTES) do
    if route.method == method and path:find(route.pattern) then
      return route
    end
  end
  return nil
end

local WRITES = {POST = true, PUT = true, PATCH = true, DELETE = true}

function envoy_on_request(handle)
  local headers = handle:headers()
  if headers:get("x-adplane-edge-rest") == nil or not WRITES[headers:get(":method")] then
    return
  end
  local route = route_of(headers:get(":method"), (headers:get(":path"):gsub("%?.*", "")))
  if route == nil then
    return
  end
  local buffer = handle:body()
  local body = buffer and buffer:getBytes(0, buffer:length()) or ""
  local ok, failure = pcall(function()
    local i = skip_space(body, 1)
    if i > #body then
      if route.required then
        refuse(route.prefix, "expected a list (a JSON array; [] for none), got nothing")
      end
      return
    end
    local last = check(body, i, route.body, route.prefix)
    if skip_space(body, last + 1) <= #body then
      malformed()
    end
  end)
  if ok or failure == Malformed then
    return
  end
  if getmetatable(failure) ~= Violation then
    handle:logErr("strict JSON check failed: " .. tostring(failure))
    return
  end
  local field = failure.path
  -- The headers object of before body() is gone (the script yielded); ask again.
  handle:headers():add("x-adplane-edge-json", "1")
  handle:respond({[":status"] = "400", ["content-type"] = "application/json"},
    '{"code":3,"message":' .. json_string("invalid request: " .. (field ~= "" and field .. ": " or "") ..
    failure.description) .. ',"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",' ..
    '"reason":"INVALID_ARGUMENT","domain":"adplane","metadata":{}},{"@type":' ..
    '"type.googleapis.com/google.rpc.BadRequest","field_violations":[{"field":' .. json_string(field) ..
    ',"description":' .. json_string(failure.description) .. ',"reason":"INVALID_JSON_SHAPE"}]}]}')
end
