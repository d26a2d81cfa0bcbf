-- Turns a dialect's error hint into its HTTP answer.
--
-- A dialect servicer fails a call with trailing metadata `x-http-status` (the
-- status the original API answers) and `x-http-body` (its JSON error body).
-- The call fails before any message, so gRPC sends a trailers-only response
-- and the transcoder passes that metadata on as response headers. This filter
-- runs after the transcoder on the response path (filters encode in reverse
-- order) and replaces the transcoder's own status and body with the hint.
function envoy_on_response(response_handle)
  local headers = response_handle:headers()
  local status = headers:get("x-http-status")
  if status == nil then
    return
  end
  local body = headers:get("x-http-body")
  headers:remove("x-http-status")
  headers:remove("x-http-body")
  headers:replace(":status", status)
  if body ~= nil then
    headers:replace("content-type", "application/json")
    local buffered = response_handle:body()
    if buffered ~= nil then
      buffered:setBytes(body)
    end
  end
end
