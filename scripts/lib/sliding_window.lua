-- lib/sliding_window.lua: the sliding window's decision, the one code sliding_window.lua runs for
-- its call and sliding_window_batch.lua runs for each decision of a batch. sliding_window.lua's
-- header states the state, the arithmetic and the reply.
--#include lib/limit
--#include lib/idiv

local AHEAD = 630720000000       -- ms: two MaxPeriods; no window starts later than that after now
local LONGEST = 315360000000     -- ms: MaxPeriod

-- sliding_read is the sliding window's read (lib/limit): the limit is rate requests per window of
-- ARGV[x + 1] ms at ARGV[x]. After whether it admits and the retry time, it returns rate, window,
-- and the counts over their windows: cur in [s, s + p), prev in the window before it, and scaled,
-- the weighted count times p.
local function sliding_read(key, x, cost, now, j)
  local rate, window = tonumber(ARGV[x]), tonumber(ARGV[x + 1])
  local now_ms = floor(now / 1000)
  local start = floor(now_ms / window) * window -- this limit's window (ms)
  local v, err = get(key)
  if v == nil then return nil, err end
  local s, p, cur, prev = start, window, 0, 0
  if v then
    local a, b, c, d = match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
    if a then
      s, p, cur, prev = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    else
      a, c, d = match(v, '^([0-9]+):([0-9]+):([0-9]+)$')
      if not a then return nil, corrupt(j) end
      s, cur, prev = tonumber(a) * window, tonumber(c), tonumber(d)
    end
    if p < 1 or p > LONGEST or s > now_ms + AHEAD or (cur + prev) * p > EXACT then return nil, corrupt(j) end
    if now_ms - s >= 2 * p then -- nothing counts any more
      s, p, cur, prev = start, window, 0, 0
    elseif now_ms - s >= p then -- the window after the stored one: cur is now the previous count
      s, cur, prev = s + p, 0, cur
    end
  end
  local elapsed = now_ms - s
  if elapsed < 0 then elapsed = 0 end -- a window ahead of now (a clock behind)

  -- Everything below is scaled by p: weighted * p = prev * (p - elapsed) + cur * p.
  local scaled = prev * (p - elapsed) + cur * p
  if cost > rate then return false, -1, rate, window, s, p, cur, prev, scaled end
  if cur + prev + cost <= rate or scaled <= (rate - cost) * p then
    return true, 0, rate, window, s, p, cur, prev, scaled
  end
  local at -- the first millisecond at which this cost fits
  if cur + cost <= rate then
    -- Later in this window, once prev's weight has shrunk enough:
    -- prev * (p - x) <= (rate - cur - cost) * p.
    at = s + p - idiv((rate - cur - cost) * p, prev)
  else
    -- In the next window, where cur becomes the previous count: cur * (p - x) <= (rate - cost) * p.
    local shift = 0
    if cur > 0 then
      shift = p - idiv((rate - cost) * p, cur)
      if shift < 0 then shift = 0 end
    end
    at = s + p + shift
  end
  return false, at * 1000 - now, rate, window, s, p, cur, prev, scaled
end

-- sliding_report is the sliding window's report (lib/limit), from what sliding_read returned. An
-- admitted cost is counted in the window of now; counts made under another period, or ahead of
-- now, start it with their estimate, rounded up.
local function sliding_report(out, take, key, cost, now, _, allowed, retry, rate, window, s, p, cur, prev, scaled)
  if take then
    local now_ms = floor(now / 1000)
    local start = floor(now_ms / window) * window
    if s ~= start or p ~= window then -- counted under another period, or ahead of now
      cur, prev = idiv(scaled + p - 1, p), 0
    end
    s, p, cur = start, window, cur + cost
    scaled = prev * (p - (now_ms - s)) + cur * p
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    local ok = pcall('SET', key, format('v2:%d:%d:%d:%d', s, p, cur, prev), 'PXAT', format('%d', s + 2 * p))
    if failed(ok) then return ok end
  end
  -- Fully replenished when nothing counts any more: the end of the next window while the current
  -- window has requests, else the end of this one while the previous window still weighs.
  local reset = 0
  if cur > 0 then
    reset = (s + 2 * p) * 1000 - now
  elseif prev > 0 then
    reset = (s + p) * 1000 - now
  end
  local left = rate - idiv(scaled + p - 1, p)
  report(out, allowed, left, retry, reset)
end

-- sliding_window decides one call of m limits (lib/limit's decide): limit j's key is KEYS[k + j]
-- and its rate and window (ms) are ARGV[a + 2(j - 1)] and ARGV[a + 2(j - 1) + 1]; cost, flags and
-- now (µs) as sliding_window.lua's ARGV[1..3] give them. It returns the reply of
-- sliding_window.lua, or an error reply (CORRUPTSTATE <j>, WRONGTYPE, a refused write).
local function sliding_window(k, m, a, cost, flags, now)
  return decide(sliding_read, sliding_report, 2, k, m, a, cost, flags, now)
end
