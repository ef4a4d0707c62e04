-- lib/token_bucket.lua: the token bucket's decision, the one code token_bucket.lua runs for its
-- call and token_bucket_batch.lua runs for each decision of a batch. token_bucket.lua's header
-- states the state, the arithmetic and the reply.
--#include lib/limit

-- bucket is the token bucket's decision of one limit (lib/limit's alg): the limit is burst, r, p
-- at P[x], P[x + 1], P[x + 2].
local function bucket(key, P, x, cost, now, j, take, report, read)
  local ceil = math.ceil                 -- exact for integers below EXACT (lib/limit)
  local EXACT = 9007199254740992         -- 2^53: integers up to it are exact in a double
  local AHEAD = 630720000000000          -- µs: two MaxPeriods; no state is written later than that after now
  local burst, r, p = P[x] + 0, P[x + 1] + 0, P[x + 2] + 0
  local v = read
  if v == nil then v = redis.pcall('GET', key) end -- its error reply (WRONGTYPE) is a table
  local d, base, gone = 0, now, false -- the debt as of base; when the state vanishes, if earlier
  if v then
    local sd, t, sr, sp
    if #v == 29 and string.byte(v) == 179 then -- v3: byte 0xB3, then d, t, r, p (7 bytes each)
      local _
      _, sd, t, sr, sp = struct.unpack('>BI7I7I7I7', v)
    else
      if type(v) == 'table' then return nil, v end -- GET's error: seen here, past the usual state
      -- Patterns use [0-9], not %d: Lua matches a set twice as fast as a class.
      sd, t, sr, sp = string.match(v, '^v2:([0-9]+):([0-9]+):([0-9]+):([0-9]+)$')
      if sd then sd, t, sr, sp = tonumber(sd), tonumber(t), tonumber(sr), tonumber(sp) end
    end
    if sd then
      if sr ~= r or sp ~= p then
        if sr < 1 or sp < 1 or sr > EXACT or sp > EXACT then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
      end
      if sd >= EXACT or t > now + AHEAD then return nil, redis.error_reply('CORRUPTSTATE ' .. j) end
      local e = now - t
      if e < 0 then e, base = 0, t end -- written at a later instant (a clock behind): as of then
      if e * sr < sd then -- not yet refilled under the limit that wrote it
        if sr ~= r or sp ~= p then
          gone = t + ceil(sd / sr)
          sd = ceil(sd / sp)
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
        local iv = ceil(p / r)
        d = ceil((tat - now) / iv)
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
      allowed, retry = false, base - now + ceil(over / r)
      if gone and gone - now < retry then retry = gone - now end
    end
  end
  local full -- when the bucket is full again (µs), once computed
  if allowed and take then
    d, gone = d + cost * p, false
    full = base + ceil(d / r)
    -- PXAT as a string: cheaper for Redis to take than a number, and exact.
    -- A server without Lua's struct library (a stand-in such as miniredis) gets the v2 text.
    local state = struct and struct.pack('>BI7I7I7I7', 179, d, base, r, p) or string.format('v2:%d:%d:%d:%d', d, base, r, p)
    local ok = redis.pcall('SET', key, state, 'PXAT', string.format('%d', ceil(full / 1000)))
    if ok.err then return nil, ok end -- SET answers a status, or an error
  end
  if report then
    local left, reset = burst - ceil(d / p), 0
    if d > 0 then
      reset = (full or base + ceil(d / r)) - now
      if gone and gone - now < reset then reset = gone - now end
    end
    return allowed, v, left, retry, reset
  end
  return allowed, v
end
