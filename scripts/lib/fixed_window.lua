-- lib/fixed_window.lua: the fixed window's decision, the one code fixed_window.lua runs for its
-- call and fixed_window_batch.lua runs for each decision of a batch. fixed_window.lua's header
-- states the state and the reply.
--#include lib/limit

-- fixed is the fixed window's decision of one limit (lib/limit's alg): the limit is rate requests
-- per window of P[x + 1] ms at P[x]. An admitted cost is counted in the window of now, which
-- the state then ends with.
local function fixed(key, P, x, cost, now, j, take, report, read)
  local tonumber, floor = tonumber, math.floor
  local AHEAD = 630720000000             -- ms: two MaxPeriods; no window ends later than that after now
  local rate, window = P[x] + 0, P[x + 1] + 0
  local now_ms = floor(now / 1000)
  local v = read
  if v == nil then v = redis.pcall('GET', key) end -- its error reply (WRONGTYPE) is a table
  local count, ends = 0, 0 -- the count, and when it stops counting (ms; 0 when nothing counts)
  if v then
    local e, c
    if #v == 15 and string.byte(v) == 243 then -- v3: byte 0xF3, then the end and the count (7 bytes each)
      local _
      _, e, c = struct.unpack('>BI7I7', v)
    else
      if type(v) == 'table' then return nil, v end -- GET's error: seen here, past the usual state
      e, c = string.match(v, '^v2:([0-9]+):([0-9]+)$')
      if e then
        e = tonumber(e)
      else
        local w
        w, c = string.match(v, '^([0-9]+):([0-9]+)$')
        if not w then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
        e = (tonumber(w) + 1) * window
      end
      c = tonumber(c)
    end
    if e > now_ms + AHEAD or c > 9007199254740992 then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
    if e > now_ms then count, ends = c, e end
  end
  local allowed, retry = true, 0
  if cost > rate then
    allowed, retry = false, -1
  elseif count + cost > rate then
    allowed, retry = false, ends * 1000 - now
  end
  if allowed and take then
    count, ends = count + cost, (floor(now_ms / window) + 1) * window
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    -- A server without Lua's struct library (a stand-in such as miniredis) gets the v2 text.
    local state = struct and struct.pack('>BI7I7', 243, ends, count) or string.format('v2:%d:%d', ends, count)
    local ok = redis.pcall('SET', key, state, 'PXAT', string.format('%d', ends))
    if ok.err then return nil, ok end -- SET answers a status, or an error
  end
  if report then
    local reset, left = 0, rate - count
    if count > 0 then reset = ends * 1000 - now end
    return allowed, v, left, retry, reset
  end
  return allowed, v
end
