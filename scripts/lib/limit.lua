-- lib/limit.lua: what every rate-limiting script shares. It reads ARGV[1..3], whose contract each
-- script's header states, into cost, flags, peek and now (integer microseconds).
--#include lib/time_us

local EXACT = 9007199254740992 -- 2^53: integers up to it are exact in a double

local cost = tonumber(ARGV[1])
local flags = ARGV[2]
local peek = string.byte(flags) == 49 -- '1'
local now = clock_us(ARGV[3])

-- shadow(i) reports whether limit i is in shadow mode ('s' in its flag): its refusal does not
-- refuse the call.
local function shadow(i) return string.byte(flags, 1 + i) == 115 end

-- corrupt(i) is the reply for a state of limit i that no limit could have written.
local function corrupt(i) return redis.error_reply('CORRUPTSTATE ' .. i) end

-- report(out, allowed, remaining, retry, reset) appends one limit's part of the reply to out.
local function report(out, allowed, remaining, retry, reset)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = allowed, remaining, retry, reset
end
