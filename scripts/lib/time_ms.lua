-- lib/time_ms.lua: the clock in integer milliseconds since the Unix epoch.

-- time_ms() is the server's TIME in integer milliseconds (its microseconds dropped). The strings
-- TIME answers are taken as numbers by the arithmetic itself: cheaper than tonumber calls.
local function time_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- clock_ms(arg) is the instant a caller passed as arg (integer milliseconds), or the server's TIME
-- when arg is "0": only tests pass a time.
local function clock_ms(arg)
  if arg == '0' then return time_ms() end
  return tonumber(arg)
end
