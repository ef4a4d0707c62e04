-- lib/time_us.lua: the clock in integer microseconds since the Unix epoch.

-- time_us() is the server's TIME in integer microseconds.
local function time_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- clock_us(arg) is the instant a caller passed as arg (integer microseconds), or the server's TIME
-- when arg is "0": only tests pass a time.
local function clock_us(arg)
  local now = tonumber(arg)
  if now == 0 then now = time_us() end
  return now
end
