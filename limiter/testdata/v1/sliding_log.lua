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
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: requests per window, window length in integer milliseconds
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           allowed is 1 when every limit admits the cost; only then, and only when consuming, is
--           anything written. A denied call changes nothing. retry_after_us_i is when enough of the
--           oldest requests will have aged out for this cost, or -1 when the cost is larger than
--           limit i and can never be admitted.

local cost = tonumber(ARGV[1])
local peek = ARGV[2] == '1'
local now = tonumber(ARGV[3])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- The time of the newest member, or nil.
local function newest(key)
  local r = redis.call('ZREVRANGEBYSCORE', key, '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if r[2] then return tonumber(r[2]) end
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
    allowed, retry, all = 0, -1, 0
  elseif count + cost > rate then
    allowed, all = 0, 0
    -- The (count + cost - rate)-th oldest live request must age out first.
    local r = redis.call('ZRANGEBYSCORE', KEYS[i], live, '+inf', 'WITHSCORES', 'LIMIT', count + cost - rate - 1, 1)
    retry = tonumber(r[2]) + span - now
  end
  st[i] = {rate = rate, span = span, count = count, allowed = allowed, retry = retry}
end

-- Second pass: consume only if every limit allowed, then report each limit as it now stands.
local consume = all == 1 and not peek
local out = {all}
for i = 1, #KEYS do
  local s = st[i]
  local count, last = s.count, nil
  if consume then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%d', now - s.span))
    local seq = redis.call('ZCARD', KEYS[i])
    local args = {}
    for j = 1, cost do
      args[#args + 1] = string.format('%d', now)
      args[#args + 1] = string.format('%d:%d', now, seq + j)
    end
    redis.call('ZADD', KEYS[i], unpack(args))
    redis.call('PEXPIREAT', KEYS[i], string.format('%d', math.ceil((now + s.span) / 1000)))
    count, last = count + cost, now
  elseif count > 0 then
    last = newest(KEYS[i])
  end
  local reset = 0
  if count > 0 and last then reset = last + s.span - now end
  out[#out + 1] = s.allowed
  out[#out + 1] = math.max(0, s.rate - count)
  out[#out + 1] = s.retry
  out[#out + 1] = reset
end
return out
