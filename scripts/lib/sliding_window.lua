-- lib/sliding_window.lua: the sliding window's decision, the one code sliding_window.lua runs for
-- its call and sliding_window_batch.lua runs for each decision of a batch. sliding_window.lua's
-- header states the state, the arithmetic and the reply.
--#include lib/limit

-- sliding is the sliding window's decision of one limit (lib/limit's alg): the limit is rate
-- requests per window of P[x + 1] ms at P[x]. The counts are cur in [s, s + p) and prev in
-- the window before it; an admitted cost is counted in the window of now, and counts made under
-- another period, or ahead of now, start it with their estimate, rounded up.
local function sliding(key, P, x, cost, now, j, take, report, read)
  local tonumber, floor, ceil = tonumber, math.floor, math.ceil -- exact here (lib/limit)
  local AHEAD = 630720000000             -- ms: two MaxPeriods; no window starts later than that after now
  local LONGEST = 315360000000           -- ms: MaxPeriod
  local rate, window = P[x] + 0, P[x + 1] + 0
  local now_ms = floor(now / 1000)
  local start = floor(now_ms / window) * window -- this limit's window (ms)
  local v = read
  if v == nil then v = redis.pcall('GET', key) end -- its error reply (WRONGTYPE) is a table
  local s, p, cur, prev = start, window, 0, 0
  if v then
    if #v == 26 and string.byte(v) == 195 then -- v3: byte 0xC3, then s, p, cur, prev (6, 5, 7, 7 bytes)
      local _
      _, s, p, cur, prev = struct.unpack('>BI6I5I7I7', v)
    else
      if type(v) == 'table' then return nil, v end -- GET's error: seen here, past the usual state
      local a, b, c, d = string.match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
      if a then
        s, p, cur, prev = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
      else
        a, c, d = string.match(v, '^([0-9]+):([0-9]+):([0-9]+)$')
        if not a then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
        s, cur, prev = tonumber(a) * window, tonumber(c), tonumber(d)
      end
    end
    if p < 1 or p > LONGEST or s > now_ms + AHEAD or (cur + prev) * p >= 9007199254740992 then
      return nil, redis.error_reply('CORRUPTSTATE ' .. j)
    end
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
  local allowed, retry = cost <= rate, 0
  if not allowed then -- never
    retry = -1
  elseif cur + prev + cost > rate and scaled > (rate - cost) * p then
    local at -- the first millisecond at which this cost fits
    if cur + cost <= rate then
      -- Later in this window, once prev's weight has shrunk enough:
      -- prev * (p - x) <= (rate - cur - cost) * p.
      at = s + p - (ceil(((rate - cur - cost) * p + 1) / prev) - 1) -- the floor of the quotient
    else
      -- In the next window, where cur becomes the previous count: cur * (p - x) <= (rate - cost) * p.
      local shift = 0
      if cur > 0 then
        shift = p - (ceil(((rate - cost) * p + 1) / cur) - 1) -- the floor of the quotient
        if shift < 0 then shift = 0 end
      end
      at = s + p + shift
    end
    allowed, retry = false, at * 1000 - now
  end
  if allowed and take then
    if s ~= start or p ~= window then -- counted under another period, or ahead of now
      cur, prev = ceil(scaled / p), 0
    end
    s, p, cur = start, window, cur + cost
    scaled = prev * (p - (now_ms - s)) + cur * p
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    -- A server without Lua's struct library (a stand-in such as miniredis) gets the v2 text.
    local state = struct and struct.pack('>BI6I5I7I7', 195, s, p, cur, prev) or string.format('v2:%d:%d:%d:%d', s, p, cur, prev)
    local ok = redis.pcall('SET', key, state, 'PXAT', string.format('%d', s + 2 * p))
    if ok.err then return nil, ok end -- SET answers a status, or an error
  end
  if report then
    -- Fully replenished when nothing counts any more: the end of the next window while the
    -- current window has requests, else the end of this one while the previous window still weighs.
    local reset = 0
    if cur > 0 then
      reset = (s + 2 * p) * 1000 - now
    elseif prev > 0 then
      reset = (s + p) * 1000 - now
    end
    local left = rate - ceil(scaled / p)
    return allowed, v, left, retry, reset
  end
  return allowed, v
end
