-- sliding_window.lua: sliding-window-counter rate limiting over one or more limits, all or nothing.
--
-- The count over the last window length is estimated from two epoch-aligned fixed windows: the
-- current one, plus the previous one weighted by the part of it still inside the sliding span,
--   weighted = prev * (window - elapsed) / window + cur
-- computed in integers (scaled by window, never floored), so rounding never lets a request through.
--
-- KEYS[i]   state of limit i: a string "<window index>:<current count>:<previous count>" that expires
--           at the end of the window after its own (the count is the next window's previous count)
-- ARGV[1]   cost: how many requests this call asks for, an integer >= 1
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: requests per window, window length in integer milliseconds
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           allowed is 1 when every limit admits the cost; only then, and only when consuming, is
--           anything written. A denied call changes nothing. retry_after_us_i is when the weighted
--           count will have fallen enough for this cost (not the end of the window), or -1 when the
--           cost is larger than limit i and can never be admitted. Malformed state is treated as empty.

-- floor(a / b) for non-negative integers a, b > 0, exact where a double quotient would round.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local cost = tonumber(ARGV[1])
local peek = ARGV[2] == '1'
local now = tonumber(ARGV[3])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local now_ms = math.floor(now / 1000)

-- First pass: decide every limit.
local all = 1
local st = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  local win = math.floor(now_ms / window)
  local start = win * window -- ms
  local elapsed = now_ms - start

  local cur, prev = 0, 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local w, c, p = string.match(v, '^(%d+):(%d+):(%d+)$')
    w = tonumber(w)
    if w == win then
      cur, prev = tonumber(c), tonumber(p)
    elseif w == win - 1 then
      prev = tonumber(c)
    end
  end

  -- Everything below is scaled by window: weighted * window = prev * (window - elapsed) + cur * window.
  local scaled = prev * (window - elapsed) + cur * window
  local allowed, retry = 1, 0
  if cost > rate then
    allowed, retry, all = 0, -1, 0
  elseif scaled + cost * window > rate * window then
    allowed, all = 0, 0
    local at -- the first millisecond at which this cost fits
    if cur + cost <= rate then
      -- Later in this window, once prev's weight has shrunk enough:
      -- prev * (window - x) <= (rate - cur - cost) * window.
      at = start + window - idiv((rate - cur - cost) * window, prev)
    else
      -- In the next window, where cur becomes the previous count: cur * (window - x) <= (rate - cost) * window.
      local x = 0
      if cur > 0 then x = math.max(0, window - idiv((rate - cost) * window, cur)) end
      at = start + window + x
    end
    retry = at * 1000 - now
  end
  st[i] = {rate = rate, window = window, win = win, start = start, scaled = scaled,
           cur = cur, prev = prev, allowed = allowed, retry = retry}
end

-- Second pass: consume only if every limit allowed, then report each limit as it now stands.
local consume = all == 1 and not peek
local out = {all}
for i = 1, #KEYS do
  local s = st[i]
  local cur, scaled = s.cur, s.scaled
  if consume then
    cur = cur + cost
    scaled = scaled + cost * s.window
    redis.call('SET', KEYS[i], string.format('%d:%d:%d', s.win, cur, s.prev), 'PXAT',
      string.format('%d', s.start + 2 * s.window))
  end
  -- Fully replenished when nothing counts any more: the end of the next window while the current
  -- window has requests, else the end of this one while the previous window still weighs.
  local reset = 0
  if cur > 0 then
    reset = (s.start + 2 * s.window) * 1000 - now
  elseif s.prev > 0 then
    reset = (s.start + s.window) * 1000 - now
  end
  out[#out + 1] = s.allowed
  out[#out + 1] = math.max(0, idiv(math.max(0, s.rate * s.window - scaled), s.window))
  out[#out + 1] = s.retry
  out[#out + 1] = reset
end
return out
