-- sliding_window.lua: sliding-window-counter rate limiting over one or more limits, all or nothing.
--
-- The count over the last window length is estimated from two epoch-aligned fixed windows: the
-- current one, plus the previous one weighted by the part of it still inside the sliding span,
--   weighted = prev * (window - elapsed) / window + cur
-- computed in integers (scaled by window, never floored), so rounding never lets a request through.
--
-- The state holds the counts with the window they were made in (its start and length), and is
-- always weighed over those windows. A request admitted in the window after the stored one moves
-- the current count to the previous one. One admitted under another period (a named limit whose
-- period changed) starts its own window's count with the stored estimate, rounded up.
--
-- KEYS[i]   state of limit i: "v2:<window start ms>:<window ms>:<current count>:<previous count>",
--           expiring at the end of the window after its own (the count is then the previous one).
--           Earlier versions stored "<window index>:<current count>:<previous count>", the index
--           under the limit's period: it is read as that window. Any other value (or numbers no
--           limit could have written) is corrupt: the call fails with "CORRUPTSTATE <i>" and
--           writes nothing.
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
--           when consuming, is anything written, to each limit that admits it. A denied call changes nothing. retry_after_us_i is when the weighted
--           count will have fallen enough for this cost (not the end of the window), or -1 when the
--           cost is larger than limit i and can never be admitted.
--
-- The caller keeps rate * window <= 2^50, so that every product below, of counts made under some
-- limit by that limit's window, stays an exact integer in a double.

--#include lib/limit
--#include lib/idiv

local AHEAD = 630720000000       -- ms: two MaxPeriods; no window starts later than that after now
local LONGEST = 315360000000     -- ms: MaxPeriod

local now_ms = math.floor(now / 1000)

-- First pass: decide every limit.
local all = 1
local st = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  local start = math.floor(now_ms / window) * window -- this limit's window (ms)

  -- The counts, over their windows: cur in [s, s + p), prev in the window before it.
  local s, p, cur, prev = start, window, 0, 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local a, b, c, d = string.match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
    if a then
      s, p, cur, prev = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    else
      a, c, d = string.match(v, '^([0-9]+):([0-9]+):([0-9]+)$')
      if not a then return corrupt(i) end
      s, cur, prev = tonumber(a) * window, tonumber(c), tonumber(d)
    end
    if p < 1 or p > LONGEST or s > now_ms + AHEAD or (cur + prev) * p > EXACT then return corrupt(i) end
    if now_ms - s >= 2 * p then -- nothing counts any more
      s, p, cur, prev = start, window, 0, 0
    elseif now_ms - s >= p then -- the window after the stored one: cur is now the previous count
      s, cur, prev = s + p, 0, cur
    end
  end
  local elapsed = math.max(0, now_ms - s) -- 0 for a window ahead of now (a clock behind)

  -- Everything below is scaled by p: weighted * p = prev * (p - elapsed) + cur * p.
  local scaled = prev * (p - elapsed) + cur * p
  local allowed, retry = 1, 0
  if cost > rate then
    allowed, retry = 0, -1
  elseif cur + prev + cost > rate and scaled > (rate - cost) * p then
    allowed = 0
    local at -- the first millisecond at which this cost fits
    if cur + cost <= rate then
      -- Later in this window, once prev's weight has shrunk enough:
      -- prev * (p - x) <= (rate - cur - cost) * p.
      at = s + p - idiv((rate - cur - cost) * p, prev)
    else
      -- In the next window, where cur becomes the previous count: cur * (p - x) <= (rate - cost) * p.
      local x = 0
      if cur > 0 then x = math.max(0, p - idiv((rate - cost) * p, cur)) end
      at = s + p + x
    end
    retry = at * 1000 - now
  end
  if allowed == 0 and not shadow(i) then all = 0 end
  st[i] = {rate = rate, window = window, start = start, s = s, p = p, scaled = scaled,
           cur = cur, prev = prev, allowed = allowed, retry = retry}
end

-- Second pass: consume only if every limit that enforces allowed, then report each limit as it
-- now stands.
local consume = all == 1 and not peek
local out = {all}
for i = 1, #KEYS do
  local x = st[i]
  local s, p, cur, prev, scaled = x.s, x.p, x.cur, x.prev, x.scaled
  if consume and x.allowed == 1 then
    if s ~= x.start or p ~= x.window then -- counted under another period, or ahead of now
      cur, prev = idiv(scaled + p - 1, p), 0
    end
    s, p, cur = x.start, x.window, cur + cost
    scaled = prev * (p - (now_ms - s)) + cur * p
    redis.call('SET', KEYS[i], string.format('v2:%d:%d:%d:%d', s, p, cur, prev), 'PXAT', s + 2 * p) -- exact below 2^53
  end
  -- Fully replenished when nothing counts any more: the end of the next window while the current
  -- window has requests, else the end of this one while the previous window still weighs.
  local reset = 0
  if cur > 0 then
    reset = (s + 2 * p) * 1000 - now
  elseif prev > 0 then
    reset = (s + p) * 1000 - now
  end
  report(out, x.allowed, math.max(0, x.rate - idiv(scaled + p - 1, p)), x.retry, reset)
end
return out
