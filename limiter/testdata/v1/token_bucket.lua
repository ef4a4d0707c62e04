-- token_bucket.lua: token-bucket rate limiting (as GCRA) over one or more limits, all or nothing.
--
-- A bucket holds up to burst tokens and gains one every interval; a request of cost n takes n.
-- The state is one number, the theoretical arrival time (TAT): the instant at which the bucket will
-- be full again. now >= TAT means a full bucket. A request fits when TAT' = max(TAT, now) + n*interval
-- is no more than burst*interval ahead of now.
--
-- KEYS[i]   state of limit i: a string, the TAT in integer microseconds since the Unix epoch; it
--           expires at the TAT, when the bucket is full and the state would say nothing
-- ARGV[1]   cost: how many tokens this call takes, an integer >= 1
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: burst (the bucket's capacity in tokens), interval (microseconds
--           per token, an integer >= 1)
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           remaining_i is whole tokens left; reset_after_us_i is the time until the bucket is full.
--           allowed is 1 when every limit admits the cost; only then, and only when consuming, is
--           anything written. A denied call changes nothing. retry_after_us_i is -1 when the cost is
--           larger than the burst and can never be admitted. A malformed TAT is treated as a full bucket.

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

-- First pass: decide every limit.
local all = 1
local st = {}
for i = 1, #KEYS do
  local burst = tonumber(ARGV[2 + 2 * i])
  local interval = tonumber(ARGV[3 + 2 * i])
  local tau = burst * interval
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0) or 0
  if tat < now then tat = now end
  local next_tat = tat + cost * interval

  local allowed, retry = 1, 0
  if cost > burst then
    allowed, retry, all = 0, -1, 0
  elseif next_tat - now > tau then
    allowed, retry, all = 0, next_tat - tau - now, 0
  end
  st[i] = {tau = tau, interval = interval, tat = tat, next_tat = next_tat, allowed = allowed, retry = retry}
end

-- Second pass: consume only if every limit allowed, then report each limit as it now stands.
local consume = all == 1 and not peek
local out = {all}
for i = 1, #KEYS do
  local s = st[i]
  local tat = s.tat
  if consume then
    tat = s.next_tat
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PXAT', string.format('%d', math.ceil(tat / 1000)))
  end
  out[#out + 1] = s.allowed
  out[#out + 1] = idiv(math.max(0, s.tau - (tat - now)), s.interval)
  out[#out + 1] = s.retry
  out[#out + 1] = tat - now
end
return out
