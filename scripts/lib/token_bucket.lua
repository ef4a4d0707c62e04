-- lib/token_bucket.lua: the token bucket's decision, the one code token_bucket.lua runs for its
-- call and token_bucket_batch.lua runs for each decision of a batch. token_bucket.lua's header
-- states the state, the arithmetic and the reply.
--#include lib/idiv
--#include lib/limit

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
