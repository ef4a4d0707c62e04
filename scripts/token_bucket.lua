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

--#include lib/limit
--#include lib/idiv

local AHEAD = 630720000000000    -- µs: two MaxPeriods; no state is written later than that after now

-- Patterns use [0-9], not %d: Lua matches a set twice as fast as a class.
local match, tonumber, format = string.match, tonumber, string.format

-- First pass: decide every limit.
local all = 1
local st = {}
for i = 1, #KEYS do
  local burst = tonumber(ARGV[1 + 3 * i])
  local r = tonumber(ARGV[2 + 3 * i])
  local p = tonumber(ARGV[3 + 3 * i])
  local cap = burst * p
  local d, base, gone = 0, now, false -- the debt as of base; when the state vanishes, if earlier
  local v = redis.call('GET', KEYS[i])
  if v then
    local sd, t, sr, sp = match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
    if sd then
      sd, t = tonumber(sd), tonumber(t)
      if sr == ARGV[2 + 3 * i] and sp == ARGV[3 + 3 * i] then -- the same units (strings compare in O(1))
        sr, sp = r, p
      else
        sr, sp = tonumber(sr), tonumber(sp)
        if sr < 1 or sp < 1 or sr > EXACT or sp > EXACT then return corrupt(i) end
      end
      if sd > EXACT or t > now + AHEAD then return corrupt(i) end
      local e = now - t
      if e < 0 then e, base = 0, t end -- written at a later instant (a clock behind): as of then
      if e * sr < sd then -- not yet refilled under the limit that wrote it
        if sr ~= r or sp ~= p then
          gone = t + idiv(sd + sr - 1, sr)
          sd = idiv(sd + sp - 1, sp)
          if sd > burst then sd = burst end
          sd = sd * p
        elseif sd > cap then
          sd = cap
        end
        d = sd - e * r
        if d < 0 then d = 0 end
      end
    else
      local tat = match(v, '^([0-9]+)$')
      if not tat then return corrupt(i) end
      tat = tonumber(tat)
      if tat > now then
        local iv = idiv(p + r - 1, r)
        d = idiv(tat - now + iv - 1, iv)
        if d > burst then d = burst end
        d = d * p
      end
    end
  end

  local allowed, retry = 1, 0
  if cost > burst then
    allowed, retry = 0, -1
  else
    local over = d + cost * p - cap
    if over > 0 then
      retry = base - now + idiv(over + r - 1, r)
      if gone and gone - now < retry then retry = gone - now end
      allowed = 0
    end
  end
  if allowed == 0 and not shadow(i) then all = 0 end
  st[i] = {burst, r, p, d, base, gone, allowed, retry}
end

-- Second pass: consume only if every limit that enforces allowed, then report each limit as it
-- now stands.
local consume = all == 1 and not peek
local out = {all}
for i = 1, #KEYS do
  local burst, r, p, d, base, gone, allowed, retry = unpack(st[i], 1, 8)
  if consume and allowed == 1 then
    d, gone = d + cost * p, false
    local full = base + idiv(d + r - 1, r)
    -- PXAT as a number: Redis writes an integer below 2^53 exactly.
    redis.call('SET', KEYS[i], format('v2:%d:%d:%d:%d', d, base, r, p), 'PXAT', idiv(full + 999, 1000))
  end
  local reset = 0
  if d > 0 then
    reset = base - now + idiv(d + r - 1, r)
    if gone and gone - now < reset then reset = gone - now end
  end
  report(out, allowed, burst - idiv(d + p - 1, p), retry, reset)
end
return out
