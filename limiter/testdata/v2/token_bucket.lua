-- The script as it was composed at db8aeb1 (state format v2), kept for TestLimiterReadsStateOfThePreviousRelease.
-- token_bucket.lua: token-bucket rate limiting over one or more limits, all or nothing.
--
-- A bucket holds up to burst tokens and gains rate tokens per period; a request of cost n takes n.
-- Tokens are counted exactly, in units of 1/p token: the bucket gains r units per microsecond, where
-- r / p = rate / period in microseconds, reduced (the caller divides both by their gcd). The state
-- is the bucket's debt d (units it lacks to be full) as of an instant t: it falls by r every
-- microsecond, and d = 0 is a full bucket. A request fits when d + n * p <= burst * p.
--
-- A limit changed while state exists reads what the state says was used:
--   - another rate or period (r or p differ): the tokens owed at t, rounded up to whole tokens and
--     capped at the new burst, refilled at the new rate from t on;
--   - another burst only: the debt, capped at the new burst;
--   - a state the limit that wrote it would have refilled by now is empty (its key expires then).
--
-- KEYS[i]   state of limit i: "v2:<d>:<t>:<r>:<p>", t in integer microseconds since the Unix epoch,
--           r and p those of the limit that wrote it; it expires when the bucket is full. Earlier
--           versions stored "<tat>", the instant the bucket is full again at one token per
--           ceil(p / r) microseconds: it is read as the whole tokens it stood for, rounded up.
--           Any other value (or numbers no limit could have written) is corrupt: the call fails
--           with "CORRUPTSTATE <i>" and writes nothing.
-- ARGV[1]   cost: how many tokens this call takes, an integer >= 1
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume;
--           then, when any limit is in shadow mode, one character per limit: "s" for shadow mode
--           (its refusal does not refuse the call; it counts the cost only when it admits it), "-"
--           to enforce
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[1+3i], ARGV[2+3i], ARGV[3+3i]   limit i: burst (the bucket's capacity in tokens), r, p
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           remaining_i is whole tokens left; reset_after_us_i is the time until the bucket is full.
--           allowed is 1 when every limit not in shadow mode admits the cost; only then, and only
--           when consuming, is anything written, to each limit that admits it. A denied call changes nothing. retry_after_us_i is -1 when the cost is
--           larger than the burst and can never be admitted.
--
-- The caller keeps burst * p <= 2^52, so every value below stays an exact integer in a double.

-- lib/token_bucket.lua: the token bucket's decision, the one code token_bucket.lua runs for its
-- call and token_bucket_batch.lua runs for each decision of a batch. token_bucket.lua's header
-- states the state, the arithmetic and the reply.
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

-- bucket is the token bucket's decision of one limit (lib/limit's alg): the limit is burst, r, p
-- at ARGV[x], ARGV[x + 1], ARGV[x + 2].
local function bucket(key, x, cost, now, j, take, out, read)
  local tonumber, format = tonumber, string.format
  local EXACT = 9007199254740992         -- 2^53: integers up to it are exact in a double
  local AHEAD = 630720000000000          -- µs: two MaxPeriods; no state is written later than that after now
  local rs, ps = ARGV[x + 1], ARGV[x + 2]
  local burst, r, p = tonumber(ARGV[x]), tonumber(rs), tonumber(ps)
  local v, err = get(key, read)
  if v == nil then return nil, err end
  local d, base, gone = 0, now, false -- the debt as of base; when the state vanishes, if earlier
  if v then
    -- Patterns use [0-9], not %d: Lua matches a set twice as fast as a class.
    local sd, t, sr, sp = string.match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
    if sd then
      sd, t = tonumber(sd), tonumber(t)
      if sr == rs and sp == ps then -- the same units (strings compare in O(1))
        sr, sp = r, p
      else
        sr, sp = tonumber(sr), tonumber(sp)
        if sr < 1 or sp < 1 or sr > EXACT or sp > EXACT then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
      end
      if sd > EXACT or t > now + AHEAD then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
      local e = now - t
      if e < 0 then e, base = 0, t end -- written at a later instant (a clock behind): as of then
      if e * sr < sd then -- not yet refilled under the limit that wrote it
        if sr ~= r or sp ~= p then
          gone = t + idiv(sd + sr - 1, sr)
          sd = idiv(sd + sp - 1, sp)
          if sd > burst then sd = burst end
          sd = sd * p
        elseif sd > burst * p then
          sd = burst * p
        end
        d = sd - e * r
        if d < 0 then d = 0 end
      end
    else
      local tat = string.match(v, '^([0-9]+)$')
      if not tat then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
      tat = tonumber(tat)
      if tat > now then
        local iv = idiv(p + r - 1, r)
        d = idiv(tat - now + iv - 1, iv)
        if d > burst then d = burst end
        d = d * p
      end
    end
  end
  local allowed, retry = true, 0
  if cost > burst then
    allowed, retry = false, -1
  else
    local over = d + cost * p - burst * p
    if over > 0 then
      allowed, retry = false, base - now + idiv(over + r - 1, r)
      if gone and gone - now < retry then retry = gone - now end
    end
  end
  if allowed and take then
    d, gone = d + cost * p, false
    local full = base + idiv(d + r - 1, r)
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    local ok = redis.pcall('SET', key, format('v2:%d:%d:%d:%d', d, base, r, p), 'PXAT', format('%d', idiv(full + 999, 1000)))
    if type(ok) == 'table' and ok.err then return nil, ok end
  end
  if out then
    local left, reset = burst - idiv(d + p - 1, p), 0
    if d > 0 then
      reset = base - now + idiv(d + r - 1, r)
      if gone and gone - now < reset then reset = gone - now end
    end
    report(out, j, allowed, left, retry, reset)
  end
  return allowed, v
end

return decide(bucket, 3, 0, #KEYS, 4, tonumber(ARGV[1]), ARGV[2], clock_us(ARGV[3]))
