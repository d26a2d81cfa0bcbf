-- Shapes the answers of a REST port.
--
-- 1. A dialect's error hint. A dialect servicer fails a call with trailing
-- metadata `x-http-status` (the status the original API answers) and
-- `x-http-body` (its JSON error body). The call fails before any message, so
-- gRPC sends a trailers-only response and the transcoder passes that metadata
-- on as response headers. This filter runs after the transcoder on the
-- response path (filters encode in reverse order) and replaces the
-- transcoder's own status and body with the hint.
--
-- 2. A request that arrived claiming to be gRPC (content-type application/grpc)
-- gets Envoy's own refusals in gRPC's shape: HTTP 200, an empty body, the
-- refusal (already in the dialect's JSON) in grpc-status and grpc-message.
-- A REST port answers them as REST.

-- 3. On the way in: a header whose name gRPC metadata cannot carry (HTTP allows
-- ! # $ % & ' * + ^ ` | ~ in names; gRPC only 0-9 a-z - _ .) is dropped, as the
-- originals ignore headers they do not know; passed on, it would fail the call
-- inside the gRPC server (INTERNAL, "Illegal header key").

-- 4. On the way in, on the enterprise port (its header_mutation marks the
-- request with x-tasktrail-dialect: crdb; the other ports strip the mark): its boolean parameters
-- (`verbose` of a GET, `force` of a cancel) are checked here, so that a bad value is refused in
-- the API's words and naming the parameter; the transcoder would say
-- `invalid value "maybe" for type TYPE_BOOL`. The words taken are the
-- transcoder's own (protobuf's SimpleAtob), so a value that passes here
-- passes there. The 400 is shaped by the port's local reply mapper.

local BOOLEAN_WORDS = {
  ["true"] = true, ["t"] = true, ["yes"] = true, ["y"] = true, ["1"] = true,
  ["false"] = true, ["f"] = true, ["no"] = true, ["n"] = true, ["0"] = true,
}

local function unescape(text)
  return (text:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

-- The parameter a call of the enterprise API reads as a boolean, or nil: the
-- same path and method the routes give a call (a trailing slash included, as
-- the transcoder drops it); anything else is left to the routes' 404 and 405.
local function boolean_of(method, route)
  if method == "GET" and route:find("^/v1/crdb_tasks/[^/]+/?$") then
    return "verbose"
  end
  if method == "POST" and route:find("^/v1/crdb_tasks/[^/]+/actions/cancel/?$") then
    return "force"
  end
  return nil
end

local function bad_boolean(method, path)
  local route, query = path:match("^([^?]*)%?(.*)$")
  if query == nil then
    return nil
  end
  local parameter = boolean_of(method, route)
  if parameter == nil then
    return nil
  end
  for pair in query:gmatch("[^&]+") do
    local name, value = pair:match("^([^=]*)=(.*)$")
    if name == parameter and not BOOLEAN_WORDS[unescape(value):lower()] then
      local shown = unescape(value)
      if #shown > 40 or shown:find("[^%w%-_.~ ]") then
        return "invalid value for parameter " .. name .. ": it takes true or false"
      end
      return "invalid value \"" .. shown .. "\" for parameter " .. name .. ": it takes true or false"
    end
  end
  return nil
end

function envoy_on_request(request_handle)
  local headers = request_handle:headers()
  local dialect = headers:get("x-tasktrail-dialect")
  if dialect ~= nil then
    headers:remove("x-tasktrail-dialect")
  end
  local refusal = nil
  if dialect == "crdb" then
    refusal = bad_boolean(headers:get(":method") or "", headers:get(":path") or "")
  end
  if refusal ~= nil then
    request_handle:respond({ [":status"] = "400", ["content-type"] = "text/plain" }, refusal)
    return
  end
  local illegal = nil
  for key, _ in pairs(headers) do
    if key:sub(1, 1) ~= ":" and key:find("[^0-9a-z_.%-]") then
      illegal = illegal or {}
      illegal[#illegal + 1] = key
    end
  end
  if illegal ~= nil then
    for _, key in ipairs(illegal) do
      headers:remove(key)
    end
  end
end

local HTTP_OF_GRPC = {
  ["3"] = "400", ["5"] = "404", ["7"] = "403", ["8"] = "429", ["12"] = "404", ["14"] = "503", ["16"] = "401",
}

local function answer(response_handle, headers, status, body)
  headers:replace(":status", status)
  headers:replace("content-type", "application/json")
  local buffered = response_handle:body(true)
  if buffered ~= nil then
    buffered:setBytes(body)
  end
end

function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local status = headers:get("x-http-status")
  if status ~= nil then
    local body = headers:get("x-http-body")
    headers:remove("x-http-status")
    headers:remove("x-http-body")
    if body == nil then
      headers:replace(":status", status)
    else
      answer(response_handle, headers, status, body)
    end
    return
  end
  local code = headers:get("grpc-status")
  if code == nil or code == "0" then
    return
  end
  local content_type = headers:get("content-type")
  if content_type ~= nil and content_type:sub(1, 16) == "application/grpc" then
    answer(response_handle, headers, HTTP_OF_GRPC[code] or "400", unescape(headers:get("grpc-message") or ""))
  end
end
