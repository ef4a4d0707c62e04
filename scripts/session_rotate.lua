-- session_rotate.lua: move a session to a new key (a new token), atomically, within one slot.
--
-- The record is copied to the new key with its generation incremented; the old key is replaced by
-- a pointer {_r = new key, _rg = grace deadline} (lib/session.lua retire): for a grace window,
-- requests already in flight with the old token can still read the session through it; after it,
-- and at once without a grace window, it is a tombstone that only session_destroy.lua follows (a
-- sign-out by a request that read the session before this rotation ends the session it moved to)
-- and this same call, run again. Writes through the old token fail from now on (session_save.lua
-- refuses a pointer), so a rotated token is never revived. The
-- copy is the record as it is now, so every save that landed before the move is carried. A
-- signed-in session is moved only while the index vouches for it (session_touch.lua); otherwise
-- the user was signed out: the record is deleted and the reply is {0}, so that a session signed
-- out can never come back under a new token.
--
-- KEYS[1]   the session's hash (layout in session_touch.lua)
-- KEYS[2]   the new hash; must not exist
-- KEYS[3]   the index of the tag bucket (both keys share it)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the generation the request read
-- ARGV[3]   grace window in ms, or "0" to delete the old key at once
-- ARGV[4]   "" to keep the user; otherwise a sign-in: the user ID to set, with authenticated-at = now
-- ARGV[5]   with a sign-in, the absolute lifetime in ms: the deadline becomes now + lifetime
-- ARGV[6]   with a sign-in, the idle timeout in ms, or "0" to keep the session's
-- ARGV[7]   "" to keep the cookie's persistence (_p); "1" or "0" to set it
-- ARGV[8]   how long a signed-in session stays pending, ms (below)
-- ARGV[9]   how long the old key's pointer is kept, ms (at least the grace window)
-- Reply     {1, now, generation, deadline, idle} rotated;  {0} no such session (or signed out; a
--           tombstone);  {2} conflict (rotated away within the grace window, another generation,
--           or the new key exists)
--           The same call run again (its reply was lost: the old key is a pointer to KEYS[2], a
--           key the caller chose at random, so this call left it) answers as the first run did,
--           from the new record (now is its last seen), and writes nothing; {0} if the new record
--           is gone since (destroyed, expired).
--
-- A signed-in session (one with a user after the move) is written pending (_pn, as
-- session_create.lua writes a sign-in): in the index, so that a sign out everywhere ends it, but
-- listed and counted by nothing, expiring after ARGV[8] ms unless session_activate.lua makes it
-- live (and applies the cap, for a sign-in of a user the session did not belong to). If the reply
-- is lost, the caller sends the call again (above); if that fails too, it keeps the old token,
-- which names no session now: signed out, and nothing is left listed that no client holds.
-- A rotation changes no attribute, so the size cap does not apply.

--#include lib/time_ms
--#include lib/session_index

local now = clock_ms(ARGV[1])
local old, new, idx = KEYS[1], KEYS[2], KEYS[3]
local grace, user, pending = tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[8])

local h = redis.call('HGETALL', old)
if #h == 0 then return {STATUS_NOT_FOUND} end
local cur = {}
for i = 1, #h, 2 do cur[h[i]] = h[i + 1] end
if cur[FIELD_MOVED_TO] == new then -- this same call, run again after its reply was lost
  local r = redis.call('HMGET', new, FIELD_GEN, FIELD_SEEN, FIELD_DEADLINE, FIELD_IDLE)
  if not r[3] then return {STATUS_NOT_FOUND} end -- ended since
  if r[1] ~= tostring((tonumber(ARGV[2]) or 0) + 1) then return {STATUS_CONFLICT} end
  return {STATUS_OK, tonumber(r[2]), tonumber(r[1]), tonumber(r[3]), tonumber(r[4])}
end
if cur[FIELD_MOVED_TO] then return {retired_status(cur[FIELD_GRACE], now)} end
if cur[FIELD_GEN] ~= ARGV[2] then return {STATUS_CONFLICT} end
if cur[FIELD_PENDING] then return {STATUS_NOT_FOUND} end -- never made live: nothing to move
if redis.call('EXISTS', new) == 1 then return {STATUS_CONFLICT} end
local d, idle, gone = live(old, cur, idx, now) -- signed out: session_touch.lua
if gone then return gone end

cur[FIELD_GEN], cur[FIELD_SEEN] = tostring((tonumber(cur[FIELD_GEN]) or 0) + 1), tostring(now)
if user ~= '' then
  d = now + tonumber(ARGV[5])
  cur[FIELD_USER], cur[FIELD_AUTH], cur[FIELD_DEADLINE] = user, tostring(now), tostring(d)
  if tonumber(ARGV[6]) > 0 then
    idle = tonumber(ARGV[6])
    cur[FIELD_IDLE] = tostring(idle)
  end
end
if ARGV[7] ~= '' then cur[FIELD_PERSIST] = ARGV[7] end
if cur[FIELD_USER] then cur[FIELD_PENDING] = '1' end
local fields = {}
for f, v in pairs(cur) do
  fields[#fields + 1] = f
  fields[#fields + 1] = v
end

-- The first write is the new hash's: nothing is written when Redis refuses it (noeviction, full).
for i = 1, #fields, 1000 do
  redis.call('HSET', new, unpack(fields, i, math.min(i + 999, #fields)))
end
local ttl = math.min(idle, d - now)
if cur[FIELD_USER] then ttl = math.min(pending, ttl) end
redis.call('PEXPIRE', new, ttl)

retire(old, new, now, grace, tonumber(ARGV[9]))
redis.call('ZREM', idx, old)
if cur[FIELD_USER] then index_add(idx, new, d) end
return {STATUS_OK, now, tonumber(cur[FIELD_GEN]), d, idle}
