-- The script as it was composed at db8aeb1 (state format v2), kept for TestLimiterReadsStateOfThePreviousRelease.
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

-- lib/fixed_window.lua: the fixed window's decision, the one code fixed_window.lua runs for its
-- call and fixed_window_batch.lua runs for each decision of a batch. fixed_window.lua's header
-- states the state and the reply.
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

-- fixed is the fixed window's decision of one limit (lib/limit's alg): the limit is rate requests
-- per window of ARGV[x + 1] ms at ARGV[x]. An admitted cost is counted in the window of now, which
-- the state then ends with.
local function fixed(key, x, cost, now, j, take, out, read)
  local tonumber, floor = tonumber, math.floor
  local AHEAD = 630720000000             -- ms: two MaxPeriods; no window ends later than that after now
  local rate, window = tonumber(ARGV[x]), tonumber(ARGV[x + 1])
  local now_ms = floor(now / 1000)
  local v, err = get(key, read)
  if v == nil then return nil, err end
  local count, ends = 0, 0 -- the count, and when it stops counting (ms; 0 when nothing counts)
  if v then
    local e, c = string.match(v, '^v2:([0-9]+):([0-9]+)$')
    if e then
      e = tonumber(e)
    else
      local w
      w, c = string.match(v, '^([0-9]+):([0-9]+)$')
      if not w then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
      e = (tonumber(w) + 1) * window
    end
    c = tonumber(c)
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
    local format = string.format
    local ok = redis.pcall('SET', key, format('v2:%d:%d', ends, count), 'PXAT', format('%d', ends))
    if type(ok) == 'table' and ok.err then return nil, ok end
  end
  if out then
    local reset, left = 0, rate - count
    if count > 0 then reset = ends * 1000 - now end
    report(out, j, allowed, left, retry, reset)
  end
  return allowed, v
end

return decide(fixed, 2, 0, #KEYS, 4, tonumber(ARGV[1]), ARGV[2], clock_us(ARGV[3]))
