-- lib/sliding_log.lua: the sliding log's decision, the one code sliding_log.lua runs for its call
-- and sliding_log_batch.lua runs for each decision of a batch. sliding_log.lua's header states the
-- state and the reply.
--#include lib/limit

local CHUNK = 1000 -- members per ZADD

-- A member's score as an integer, or nil when it is not one a request could have: corrupt.
local function instant(score)
  local t = tonumber(score)
  if t and t == math.floor(t) and t > -EXACT and t < EXACT then return t end
  return nil
end

-- log_newest returns the time of the newest member of key, or nil; false when its score is corrupt.
local function log_newest(key)
  local r = redis.call('ZREVRANGEBYSCORE', key, '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if r[2] then return instant(r[2]) or false end
  return nil
end

-- log_read is the sliding log's read (lib/limit): the limit is rate requests per window of
-- ARGV[x + 1] ms at ARGV[x]. After whether it admits and the retry time, it returns rate, the span
-- (µs), the count of requests inside it, and the time of the newest request when the limit will
-- not take the cost (peeking, or refused), or nil: read here, before anything is written, so that
-- a corrupt score fails the decision with nothing written.
local function log_read(key, x, cost, now, j, peek)
  local rate, span = tonumber(ARGV[x]), tonumber(ARGV[x + 1]) * 1000
  local live = '(' .. format('%d', now - span) -- members newer than now - span still count
  local count = pcall('ZCOUNT', key, live, '+inf')
  if failed(count) then return nil, count end
  local allowed, retry = true, 0
  if cost > rate then
    allowed, retry = false, -1
  elseif count + cost > rate then
    -- The (count + cost - rate)-th oldest live request must age out first.
    local r = redis.call('ZRANGEBYSCORE', key, live, '+inf', 'WITHSCORES', 'LIMIT', count + cost - rate - 1, 1)
    local t = instant(r[2])
    if not t then return nil, corrupt(j) end
    allowed, retry = false, t + span - now
  end
  local last
  if count > 0 and (peek or not allowed) then
    last = log_newest(key)
    if last == false then return nil, corrupt(j) end
  end
  return allowed, retry, rate, span, count, last
end

-- log_take adds cost members at now to key, drops the members the span no longer holds, and sets
-- the key to expire one span after now. It returns the error reply of a write Redis refused, or
-- nil.
local function log_take(key, cost, span, now)
  -- Members are "<now>:<k>" with k counting this instant's members, which the removal below never
  -- touches, so k + j is new. At most CHUNK members per ZADD: unpack of a long table passes Lua's
  -- stack. ZADD comes first: Redis refuses a script's first write when it is out of memory
  -- (maxmemory with noeviction), but lets any write through once the script has written.
  local at = format('%d', now)
  local seq = redis.call('ZCOUNT', key, at, at)
  local args = {}
  for j = 1, cost do
    args[#args + 1] = at
    args[#args + 1] = at .. ':' .. (seq + j)
    if #args == 2 * CHUNK or j == cost then
      local ok = pcall('ZADD', key, unpack(args))
      if failed(ok) then return ok end
      args = {}
    end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', format('%d', now - span))
  redis.call('PEXPIREAT', key, format('%d', math.ceil((now + span) / 1000)))
  return nil
end

-- log_report is the sliding log's report (lib/limit), from what log_read returned.
local function log_report(out, take, key, cost, now, j, allowed, retry, rate, span, count, last)
  if take then
    local err = log_take(key, cost, span, now)
    if err then return err end
    count, last = count + cost, now
  elseif count > 0 and last == nil then
    -- Admitted, but another limit of the decision refused: nothing of it is written.
    last = log_newest(key)
    if last == false then return corrupt(j) end
  end
  local reset, left = 0, rate - count
  if count > 0 and last then reset = last + span - now end
  report(out, allowed, left, retry, reset)
end

-- sliding_log decides one call of m limits (lib/limit's decide): limit j's key is KEYS[k + j] and
-- its rate and window (ms) are ARGV[a + 2(j - 1)] and ARGV[a + 2(j - 1) + 1]; cost, flags and now
-- (µs) as sliding_log.lua's ARGV[1..3] give them. It returns the reply of sliding_log.lua, or an
-- error reply (CORRUPTSTATE <j>, WRONGTYPE, a refused write).
local function sliding_log(k, m, a, cost, flags, now)
  return decide(log_read, log_report, 2, k, m, a, cost, flags, now)
end
