-- session_rotate.lua: move a session to a new key (a new token), atomically, within one slot.
--
-- The record is copied to the new key with its generation incremented; the old key is deleted or,
-- for a grace window, replaced by a pointer {_r = new key, _rg = grace deadline} so that requests
-- already in flight with the old token can still read the session. Writes through the old token
-- fail from now on (session_save.lua refuses a pointer), so a rotated token is never revived. The
-- copy is the record as it is now, so every save that landed before the move is carried. A
-- signed-in session is moved only while the index vouches for it (session_touch.lua); otherwise
-- the user was signed out: the record is deleted and the reply is {0}, so that a session signed
-- out can never come back under a new token.
--
-- KEYS[1]   the session's hash (layout in session_touch.lua)
-- KEYS[2]   the new hash; must not exist
-- KEYS[3]   the index of the tag bucket (both keys share it)
-- KEYS[4..] with a sign-in of a user the session did not belong to, under a cap: every member the
--           caller read from the index; if the index now holds another, nothing is written ({4})
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the generation the request read
-- ARGV[3]   grace window in ms, or "0" to delete the old key at once
-- ARGV[4]   "" to keep the user; otherwise a sign-in: the user ID to set, with authenticated-at = now
-- ARGV[5]   with a sign-in, the absolute lifetime in ms: the deadline becomes now + lifetime
-- ARGV[6]   with a sign-in, the idle timeout in ms, or "0" to keep the session's
-- ARGV[7]   "" to keep the cookie's persistence (_p); "1" or "0" to set it
-- ARGV[8]   the most sessions one user may have, or "0" for no cap (eviction as session_create.lua)
-- Reply     {1, now, generation, deadline, idle} rotated;  {0} no such session (or signed out);
--           {2} conflict (rotated away, another generation, or the new key exists);
--           {4} read the index again
-- A rotation changes no attribute, so the size cap does not apply.

--#include lib/time_ms

local now = clock_ms(ARGV[1])
local old, new, idx = KEYS[1], KEYS[2], KEYS[3]
local grace, user, cap = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[8])

local h = redis.call('HGETALL', old)
if #h == 0 then return {0} end
local cur = {}
for i = 1, #h, 2 do cur[h[i]] = h[i + 1] end
if cur._r or cur._g ~= ARGV[2] then return {2} end
if redis.call('EXISTS', new) == 1 then return {2} end
local d, idle = tonumber(cur._d), tonumber(cur._i)
if not d or not idle then
  return redis.error_reply('GATEHOUSE corrupt session record: no deadline or idle timeout')
end
if now >= d then
  redis.call('DEL', old)
  return {0}
end
if cur._u then
  local score = redis.call('ZSCORE', idx, old)
  if not score or tonumber(score) <= now then -- signed out (session_touch.lua)
    redis.call('DEL', old)
    return {0}
  end
end

local joining = user ~= '' and cur._u ~= user
cur._g, cur._s = tostring((tonumber(cur._g) or 0) + 1), tostring(now)
if user ~= '' then
  d = now + tonumber(ARGV[5])
  cur._u, cur._a, cur._d = user, tostring(now), tostring(d)
  if tonumber(ARGV[6]) > 0 then
    idle = tonumber(ARGV[6])
    cur._i = tostring(idle)
  end
end
if ARGV[7] ~= '' then cur._p = ARGV[7] end
local fields = {}
for f, v in pairs(cur) do
  fields[#fields + 1] = f
  fields[#fields + 1] = v
end

-- The cap's check reads only, and the first write is the new hash's: nothing is written when the
-- check asks for another read, nor when Redis refuses that write (noeviction, full).
local capped = joining and cap > 0
if capped then
  local known = {}
  for i = 4, #KEYS do known[KEYS[i]] = true end
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', idx, '(' .. now, '+inf')) do
    if not known[k] then return {4} end
  end
end

for i = 1, #fields, 1000 do
  redis.call('HSET', new, unpack(fields, i, math.min(i + 999, #fields)))
end
redis.call('PEXPIRE', new, math.min(idle, d - now))

if capped then
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  -- The user's other live sessions, oldest sign-in first: as in session_create.lua.
  local mine = {}
  for i = 4, #KEYS do
    local k = KEYS[i]
    if k ~= old and k ~= new and redis.call('ZSCORE', idx, k) then
      local m = redis.call('HMGET', k, '_u', '_c', '_a')
      if not m[2] then
        redis.call('ZREM', idx, k)
      elseif m[1] == user then
        mine[#mine + 1] = {k, tonumber(m[3]) or 0}
      end
    end
  end
  table.sort(mine, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  for i = 1, #mine + 1 - cap do
    redis.call('DEL', mine[i][1])
    redis.call('ZREM', idx, mine[i][1])
  end
end

redis.call('DEL', old)
if grace > 0 then
  redis.call('HSET', old, '_r', new, '_rg', now + grace)
  redis.call('PEXPIRE', old, grace)
end
redis.call('ZREM', idx, old)
if cur._u then
  redis.call('ZADD', idx, d, new)
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', idx, last[2])
end
return {1, now, tonumber(cur._g), d, idle}
