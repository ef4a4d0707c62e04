-- session_rotate.lua: move a session to a new key (a new token), atomically, within one slot.
--
-- The record is copied to the new key with its generation incremented; the old key is deleted or,
-- for a grace window, replaced by a pointer {_r = new key, _rg = grace deadline} so that requests
-- already in flight with the old token can still read the session. Writes through the old token
-- fail from now on (session_save.lua refuses a pointer), so a rotated token is never revived.
--
-- KEYS[1]   the session's hash (layout in session_touch.lua)
-- KEYS[2]   the new hash; must not exist
-- KEYS[3]   the index of the tag bucket (both keys share it)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the generation the request read
-- ARGV[3]   grace window in ms, or "0" to delete the old key at once
-- ARGV[4]   "" to keep the user; otherwise a sign-in: the user ID to set, with authenticated-at = now
-- ARGV[5]   with a sign-in, the absolute lifetime in ms: the deadline becomes now + lifetime
-- Reply     {1, now, generation} rotated;  {0} no such session;  {2} conflict (rotated away,
--           another generation, or the new key exists)

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local old, new, idx = KEYS[1], KEYS[2], KEYS[3]
local grace, user = tonumber(ARGV[3]), ARGV[4]

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

local gen = (tonumber(cur._g) or 0) + 1
cur._g, cur._s = gen, now
if user ~= '' then
  cur._u, cur._a = user, now
  d = now + tonumber(ARGV[5])
  cur._d = d
end
local fields = {}
for f, v in pairs(cur) do
  fields[#fields + 1] = f
  fields[#fields + 1] = v
end
for i = 1, #fields, 1000 do
  redis.call('HSET', new, unpack(fields, i, math.min(i + 999, #fields)))
end
redis.call('PEXPIRE', new, math.min(idle, d - now))

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
return {1, now, gen}
