-- lib/fixed_window.lua: the fixed window's decision, the one code fixed_window.lua runs for its
-- call and fixed_window_batch.lua runs for each decision of a batch. fixed_window.lua's header
-- states the state and the reply.
--#include lib/limit

local AHEAD = 630720000000       -- ms: two MaxPeriods; no window ends later than that after now

-- fixed_read is the fixed window's read (lib/limit): the limit is rate requests per window of
-- ARGV[x + 1] ms at ARGV[x]. After whether it admits and the retry time, it returns rate, window,
-- the count and when it stops counting (ms; 0 when nothing counts).
local function fixed_read(key, x, cost, now, j)
  local rate, window = tonumber(ARGV[x]), tonumber(ARGV[x + 1])
  local v, err = get(key)
  if v == nil then return nil, err end
  local count, ends = 0, 0
  if v then
    local e, c = match(v, '^v2:([0-9]+):([0-9]+)$')
    if e then
      e = tonumber(e)
    else
      local w
      w, c = match(v, '^([0-9]+):([0-9]+)$')
      if not w then return nil, corrupt(j) end
      e = (tonumber(w) + 1) * window
    end
    c = tonumber(c)
    local now_ms = math.floor(now / 1000)
    if e > now_ms + AHEAD or c > EXACT then return nil, corrupt(j) end
    if e > now_ms then count, ends = c, e end
  end
  if cost > rate then return false, -1, rate, window, count, ends end
  if count + cost > rate then return false, ends * 1000 - now, rate, window, count, ends end
  return true, 0, rate, window, count, ends
end

-- fixed_report is the fixed window's report (lib/limit), from what fixed_read returned. An
-- admitted cost is counted in the window of now, which the state then ends with.
local function fixed_report(out, take, key, cost, now, _, allowed, retry, rate, window, count, ends)
  if take then
    count, ends = count + cost, (math.floor(math.floor(now / 1000) / window) + 1) * window
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    local ok = pcall('SET', key, format('v2:%d:%d', ends, count), 'PXAT', format('%d', ends))
    if failed(ok) then return ok end
  end
  local reset, left = 0, rate - count
  if count > 0 then reset = ends * 1000 - now end
  report(out, allowed, left, retry, reset)
end

-- fixed_window decides one call of m limits (lib/limit's decide): limit j's key is KEYS[k + j] and
-- its rate and window (ms) are ARGV[a + 2(j - 1)] and ARGV[a + 2(j - 1) + 1]; cost, flags and now
-- (µs) as fixed_window.lua's ARGV[1..3] give them. It returns the reply of fixed_window.lua, or an
-- error reply (CORRUPTSTATE <j>, WRONGTYPE, a refused write).
local function fixed_window(k, m, a, cost, flags, now)
  return decide(fixed_read, fixed_report, 2, k, m, a, cost, flags, now)
end
