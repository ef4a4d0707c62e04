-- sliding_log.lua: exact sliding-window rate limiting over one or more limits, all or nothing.
--
-- Each admitted request is one member of a sorted set scored by its time in microseconds; a request
-- counts while now - its time < window. Memory is bounded by the limit: the set never holds more
-- than the limit's requests plus the ones that have aged out since the last admitted call, which
-- that call removes.
--
-- KEYS[i]   state of limit i: a sorted set, member "<time>:<sequence>", score = time in microseconds;
--           it expires one window after its newest member
-- ARGV[1]   cost: how many requests this call asks for, an integer >= 1 (one member each)
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume;
--           then, when any limit is in shadow mode, one character per limit: "s" for shadow mode
--           (its refusal does not refuse the call; it counts the cost only when it admits it), "-"
--           to enforce
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: requests per window, window length in integer milliseconds
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           allowed is 1 when every limit not in shadow mode admits the cost; only then, and only
--           when consuming, is anything written, to each limit that admits it. A denied call changes nothing. retry_after_us_i is when enough of the
--           oldest requests will have aged out for this cost, or -1 when the cost is larger than
--           limit i and can never be admitted.
--
-- A score that is not a whole number of microseconds, where the script reads one, is corrupt: the
-- call fails with "CORRUPTSTATE <i>" and writes nothing. (A key of another type fails with
-- WRONGTYPE, which the caller reports the same way.)

--#include lib/limit

local CHUNK = 1000 -- members per ZADD

-- A member's score as an integer, or nil when it is not one a request could have: corrupt.
local function instant(score)
  local t = tonumber(score)
  if t and t == math.floor(t) and t > -EXACT and t < EXACT then return t end
  return nil
end

-- The time of the newest member of limit i's key, or nil; false when the score is corrupt.
local function newest(i)
  local r = redis.call('ZREVRANGEBYSCORE', KEYS[i], '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if r[2] then return instant(r[2]) or false end
  return nil
end

-- First pass: decide every limit.
local all = 1
local st = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 + 2 * i])
  local span = tonumber(ARGV[3 + 2 * i]) * 1000 -- us
  local live = '(' .. string.format('%d', now - span) -- members newer than now - span still count
  local count = redis.call('ZCOUNT', KEYS[i], live, '+inf')

  local allowed, retry = 1, 0
  if cost > rate then
    allowed, retry = 0, -1
  elseif count + cost > rate then
    allowed = 0
    -- The (count + cost - rate)-th oldest live request must age out first.
    local r = redis.call('ZRANGEBYSCORE', KEYS[i], live, '+inf', 'WITHSCORES', 'LIMIT', count + cost - rate - 1, 1)
    local t = instant(r[2])
    if not t then return corrupt(i) end
    retry = t + span - now
  end
  if allowed == 0 and not shadow(i) then all = 0 end
  st[i] = {rate = rate, span = span, count = count, allowed = allowed, retry = retry}
end

-- The newest request of each limit that will not be written, read (and checked) before any write.
local consume = all == 1 and not peek
for i = 1, #KEYS do
  local s = st[i]
  if s.count > 0 and not (consume and s.allowed == 1) then
    s.last = newest(i)
    if s.last == false then return corrupt(i) end
  end
end

-- Second pass: consume only if every limit that enforces allowed, then report each limit as it
-- now stands.
local out = {all}
for i = 1, #KEYS do
  local s = st[i]
  local count, last = s.count, s.last
  if consume and s.allowed == 1 then
    -- Members are "<now>:<k>" with k counting this instant's members, which the removal below never
    -- touches, so k + j is new. At most CHUNK members per ZADD: unpack of a long table passes Lua's
    -- stack. ZADD comes first: Redis refuses a script's first write when it is out of memory
    -- (maxmemory with noeviction), but lets any write through once the script has written.
    local at = string.format('%d', now)
    local seq = redis.call('ZCOUNT', KEYS[i], at, at)
    local args = {}
    for j = 1, cost do
      args[#args + 1] = at
      args[#args + 1] = at .. ':' .. (seq + j)
      if #args == 2 * CHUNK or j == cost then
        redis.call('ZADD', KEYS[i], unpack(args))
        args = {}
      end
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%d', now - s.span))
    redis.call('PEXPIREAT', KEYS[i], string.format('%d', math.ceil((now + s.span) / 1000)))
    count, last = count + cost, now
  end
  local reset = 0
  if count > 0 and last then reset = last + s.span - now end
  report(out, s.allowed, math.max(0, s.rate - count), s.retry, reset)
end
return out
