-- lib/time_us.lua: the clock in integer microseconds since the Unix epoch.

-- clock_us(arg) is the instant a caller passed as arg (integer microseconds), or the server's TIME
-- when arg is "0": only tests pass a time. TIME's two strings are coerced by arithmetic, which is
-- exact for integers and cheaper than tonumber.
local function clock_us(arg)
  local now = tonumber(arg)
  if now == 0 then
    local t = redis.call('TIME')
    now = t[1] * 1000000 + t[2]
  end
  return now
end
