-- lib/time_ms.lua: the clock in integer milliseconds since the Unix epoch.

-- time_ms() is the server's TIME in integer milliseconds (its microseconds dropped).
local function time_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- clock_ms(arg) is the instant a caller passed as arg (integer milliseconds), or the server's TIME
-- when arg is "0": only tests pass a time.
local function clock_ms(arg)
  local now = tonumber(arg)
  if now == 0 then now = time_ms() end
  return now
end
