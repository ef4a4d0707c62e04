-- fixed_window.lua: fixed-window rate limiting over one or more limits, all or nothing.
--
-- Windows are aligned to the Unix epoch: the window of an instant is [w * window, (w + 1) * window)
-- with w = floor(now_ms / window). The state is a count and the end of the window it was counted
-- in: the count holds until that end. An admitted request adds its cost and moves the end to the
-- end of its own window. So a limit whose period changed (a named limit) keeps the count of a
-- window that has not ended, until that window ends or a request is admitted under the new period.
--
-- KEYS[i]   state of limit i: "v2:<window end in ms>:<count>", which expires at the window's end.
--           Earlier versions stored "<window index>:<count>", the index under the limit's period:
--           it is read as the window of that index. Any other value (or numbers no limit could
--           have written) is corrupt: the call fails with "CORRUPTSTATE <i>" and writes nothing.
-- ARGV[1]   cost: how many requests this call asks for, an integer >= 1
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume;
--           then, when any limit is in shadow mode, one character per limit: "s" for shadow mode
--           (its refusal does not refuse the call; it counts the cost only when it admits it), "-"
--           to enforce
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: requests per window, window length in integer milliseconds
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           allowed is 1 when every limit not in shadow mode admits the cost; only then, and only
--           when consuming, is anything written, to each limit that admits it. A denied call changes nothing. retry_after_us_i is -1 when the cost is
--           larger than limit i and can never be admitted.

--#include lib/limit

local AHEAD = 630720000000       -- ms: two MaxPeriods; no window ends later than that after now

local now_ms = math.floor(now / 1000)

-- First pass: decide every limit.
local all = 1
local st = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  local window_end = (math.floor(now_ms / window) + 1) * window -- ms

  local count, ends = 0, 0 -- the count, and when it stops counting (ms)
  local v = redis.call('GET', KEYS[i])
  if v then
    local e, c = string.match(v, '^v2:([0-9]+):([0-9]+)$')
    if e then
      e = tonumber(e)
    else
      local w
      w, c = string.match(v, '^([0-9]+):([0-9]+)$')
      if not w then return corrupt(i) end
      e = (tonumber(w) + 1) * window
    end
    c = tonumber(c)
    if e > now_ms + AHEAD or c > EXACT then return corrupt(i) end
    if e > now_ms then count, ends = c, e end
  end

  local allowed, retry = 1, 0
  if cost > rate then
    allowed, retry = 0, -1
  elseif count + cost > rate then
    allowed, retry = 0, ends * 1000 - now
  end
  if allowed == 0 and not shadow(i) then all = 0 end
  st[i] = {rate = rate, window_end = window_end, count = count, ends = ends, allowed = allowed, retry = retry}
end

-- Second pass: consume only if every limit that enforces allowed, then report each limit as it
-- now stands.
local consume = all == 1 and not peek
local out = {all}
for i = 1, #KEYS do
  local s = st[i]
  local count, ends = s.count, s.ends
  if consume and s.allowed == 1 then
    count, ends = count + cost, s.window_end
    redis.call('SET', KEYS[i], string.format('v2:%d:%d', ends, count), 'PXAT', ends) -- a number: exact below 2^53
  end
  local reset = 0
  if count > 0 then reset = ends * 1000 - now end
  report(out, s.allowed, math.max(0, s.rate - count), s.retry, reset)
end
return out
