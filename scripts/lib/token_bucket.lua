-- lib/token_bucket.lua: the token bucket's decision, the one code token_bucket.lua runs for its
-- call and token_bucket_batch.lua runs for each decision of a batch. token_bucket.lua's header
-- states the state, the arithmetic and the reply.
--#include lib/limit
--#include lib/idiv

local AHEAD = 630720000000000    -- µs: two MaxPeriods; no state is written later than that after now

-- bucket_read is the token bucket's read (lib/limit): the limit is burst, r, p at ARGV[x..x + 2].
-- After whether it admits and the retry time, it returns burst, r, p, the debt d as of base, and
-- when the state vanishes if that is earlier than d says (gone, or false).
local function bucket_read(key, x, cost, now, j)
  local rs, ps = ARGV[x + 1], ARGV[x + 2]
  local burst, r, p = tonumber(ARGV[x]), tonumber(rs), tonumber(ps)
  local v, err = get(key)
  if v == nil then return nil, err end
  local d, base, gone = 0, now, false
  if v then
    -- Patterns use [0-9], not %d: Lua matches a set twice as fast as a class.
    local sd, t, sr, sp = match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
    if sd then
      sd, t = tonumber(sd), tonumber(t)
      if sr == rs and sp == ps then -- the same units (strings compare in O(1))
        sr, sp = r, p
      else
        sr, sp = tonumber(sr), tonumber(sp)
        if sr < 1 or sp < 1 or sr > EXACT or sp > EXACT then return nil, corrupt(j) end
      end
      if sd > EXACT or t > now + AHEAD then return nil, corrupt(j) end
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
      local tat = match(v, '^([0-9]+)$')
      if not tat then return nil, corrupt(j) end
      tat = tonumber(tat)
      if tat > now then
        local iv = idiv(p + r - 1, r)
        d = idiv(tat - now + iv - 1, iv)
        if d > burst then d = burst end
        d = d * p
      end
    end
  end
  if cost > burst then return false, -1, burst, r, p, d, base, gone end
  local over = d + cost * p - burst * p
  if over <= 0 then return true, 0, burst, r, p, d, base, gone end
  local retry = base - now + idiv(over + r - 1, r)
  if gone and gone - now < retry then retry = gone - now end
  return false, retry, burst, r, p, d, base, gone
end

-- bucket_report is the token bucket's report (lib/limit), from what bucket_read returned.
local function bucket_report(out, take, key, cost, now, _, allowed, retry, burst, r, p, d, base, gone)
  if take then
    d, gone = d + cost * p, false
    local full = base + idiv(d + r - 1, r)
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    local ok = pcall('SET', key, format('v2:%d:%d:%d:%d', d, base, r, p), 'PXAT', format('%d', idiv(full + 999, 1000)))
    if failed(ok) then return ok end
  end
  local reset = 0
  if d > 0 then
    reset = base - now + idiv(d + r - 1, r)
    if gone and gone - now < reset then reset = gone - now end
  end
  report(out, allowed, burst - idiv(d + p - 1, p), retry, reset)
end

-- token_bucket decides one call of m limits (lib/limit's decide): limit j's key is KEYS[k + j] and
-- its burst, r and p are ARGV[a + 3(j - 1)] to ARGV[a + 3(j - 1) + 2]; cost, flags and now (µs) as
-- token_bucket.lua's ARGV[1..3] give them. It returns the reply of token_bucket.lua, or an error
-- reply (CORRUPTSTATE <j>, WRONGTYPE, a refused write).
local function token_bucket(k, m, a, cost, flags, now)
  return decide(bucket_read, bucket_report, 3, k, m, a, cost, flags, now)
end
