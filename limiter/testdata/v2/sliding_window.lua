-- The script as it was composed at db8aeb1 (state format v2), kept for TestLimiterReadsStateOfThePreviousRelease.
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

-- lib/sliding_window.lua: the sliding window's decision, the one code sliding_window.lua runs for
-- its call and sliding_window_batch.lua runs for each decision of a batch. sliding_window.lua's
-- header states the state, the arithmetic and the reply.
-- lib/idiv.lua: integer division.

-- idiv(a, b) is floor(a / b) for non-negative integers a, b > 0, exact where a double quotient
-- would round.
local floor = math.floor
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
-- lib/limit.lua: what every rate-limiting decision shares, in a single call (token_bucket.lua,
-- ...) and in a batch (token_bucket_batch.lua, ...).
--
-- An algorithm's part (lib/token_bucket, ...) defines one function that decides a cost against
-- one limit:
--
--   alg(key, x, cost, now, j, take, out, read) reads limit j's state in key (its parameters at
--     ARGV[x], ...), unless read is what an earlier call of it read there, and decides cost
--     against it at now. When take is true and the limit admits the cost, it takes it, writing the
--     state. When out is a table, it puts the limit's part of the reply there (report below). It
--     returns whether the limit admits the cost and what it read; or nil and the error reply of
--     the decision (CORRUPTSTATE <j>, WRONGTYPE, a refused write).
--
-- A script runs its whole text on every call, so each function it defines (a closure, and each
-- upvalue it captures) costs Redis time on every call, whether it is used or not: the parts define
-- few functions, and look up what they use inside them. docs/runtime.md has the figures.
-- lib/time_us.lua: the clock in integer microseconds since the Unix epoch.

-- clock_us(arg) is the instant a caller passed as arg (integer microseconds), or the server's TIME
-- when arg is "0": only tests pass a time. TIME's two strings are coerced by arithmetic, which is
-- exact for integers and cheaper than tonumber.
local function clock_us(arg)
  local now = tonumber(arg)
  if now == 0 then
    local t = redis.call('TIME')
    now = t[1] * 1000000 + t[2]
  end
  return now
end

-- decide makes one decision of m limits, all or nothing, with the algorithm's function alg: limit
-- j's key is KEYS[k + j] and its parameters (params values each) start at ARGV[a + params(j - 1)];
-- cost, flags and now (µs) as the scripts' ARGV[1..3] give them ("1" first in flags to peek; then
-- "s" in place j + 1 for a limit in shadow mode, whose refusal does not refuse the decision). The
-- limits that enforce must all admit the cost for any to take it; then each limit that admits it
-- does. It returns the reply {allowed, then allowed_j, remaining_j, retry_j, reset_j per limit},
-- or the first error reply: a limit's read failing fails the decision before anything is written.
local function decide(alg, params, k, m, a, cost, flags, now)
  local byte = string.byte
  local peek = byte(flags) == 49
  if m == 1 then
    local out = {0, 0, 0, 0, 0} -- sized at once: a table grown one by one is copied as it grows
    local ok, err = alg(KEYS[k + 1], a, cost, now, 1, not peek, out)
    if ok == nil then return err end
    if ok or byte(flags, 2) == 115 then out[1] = 1 end
    return out
  end
  -- Several limits: each is read and decided first, writing nothing, then decided again from what
  -- it read (nothing ran in between) to take the cost and report.
  local out, all, read = {0}, 1, {}
  for j = 1, m do
    local ok, v = alg(KEYS[k + j], a + params * (j - 1), cost, now, j, false, nil, nil)
    if ok == nil then return v end
    if not ok and byte(flags, 1 + j) ~= 115 then all = 0 end
    read[j] = v
  end
  out[1] = all
  local take = all == 1 and not peek
  for j = 1, m do
    local ok, err = alg(KEYS[k + j], a + params * (j - 1), cost, now, j, take, out, read[j])
    if ok == nil then return err end
  end
  return out
end

-- report(out, j, allowed, left, retry, reset) puts limit j's part of the reply in out: allowed (a
-- boolean) as 1 or 0, the requests or tokens left (0 when below), the retry time and the reset time
-- (µs).
local function report(out, j, allowed, left, retry, reset)
  local n = 4 * j - 3
  if left < 0 then left = 0 end
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = allowed and 1 or 0, left, retry, reset
end

-- get(key, read) is read when it is not nil (what an earlier call read from key), else the string
-- in key, or false when there is none; or nil and the error reply (WRONGTYPE: a key of another
-- type).
local function get(key, read)
  if read ~= nil then return read end
  local v = redis.pcall('GET', key)
  if type(v) == 'table' then return nil, v end
  return v
end

-- sliding is the sliding window's decision of one limit (lib/limit's alg): the limit is rate
-- requests per window of ARGV[x + 1] ms at ARGV[x]. The counts are cur in [s, s + p) and prev in
-- the window before it; an admitted cost is counted in the window of now, and counts made under
-- another period, or ahead of now, start it with their estimate, rounded up.
local function sliding(key, x, cost, now, j, take, out, read)
  local tonumber, floor = tonumber, math.floor
  local AHEAD = 630720000000             -- ms: two MaxPeriods; no window starts later than that after now
  local LONGEST = 315360000000           -- ms: MaxPeriod
  local rate, window = tonumber(ARGV[x]), tonumber(ARGV[x + 1])
  local now_ms = floor(now / 1000)
  local start = floor(now_ms / window) * window -- this limit's window (ms)
  local v, err = get(key, read)
  if v == nil then return nil, err end
  local s, p, cur, prev = start, window, 0, 0
  if v then
    local a, b, c, d = string.match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
    if a then
      s, p, cur, prev = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
    else
      a, c, d = string.match(v, '^([0-9]+):([0-9]+):([0-9]+)$')
      if not a then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
      s, cur, prev = tonumber(a) * window, tonumber(c), tonumber(d)
    end
    if p < 1 or p > LONGEST or s > now_ms + AHEAD or (cur + prev) * p > 9007199254740992 then
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
    allowed, retry = false, at * 1000 - now
  end
  if allowed and take then
    if s ~= start or p ~= window then -- counted under another period, or ahead of now
      cur, prev = idiv(scaled + p - 1, p), 0
    end
    s, p, cur = start, window, cur + cost
    scaled = prev * (p - (now_ms - s)) + cur * p
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    local format = string.format
    local ok = redis.pcall('SET', key, format('v2:%d:%d:%d:%d', s, p, cur, prev), 'PXAT', format('%d', s + 2 * p))
    if type(ok) == 'table' and ok.err then return nil, ok end
  end
  if out then
    -- Fully replenished when nothing counts any more: the end of the next window while the
    -- current window has requests, else the end of this one while the previous window still weighs.
    local reset = 0
    if cur > 0 then
      reset = (s + 2 * p) * 1000 - now
    elseif prev > 0 then
      reset = (s + p) * 1000 - now
    end
    local left = rate - idiv(scaled + p - 1, p)
    report(out, j, allowed, left, retry, reset)
  end
  return allowed, v
end

return decide(sliding, 2, 0, #KEYS, 4, tonumber(ARGV[1]), ARGV[2], clock_us(ARGV[3]))
