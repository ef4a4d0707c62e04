-- session_touch.lua: read a session and slide its expiry, in one call (touch-on-read).
--
-- A session is a hash: attributes under "a:<name>", metadata under fields starting with '_':
-- _c created, _s last seen, _d absolute deadline, _a authenticated at (all integer ms since the
-- epoch), _i idle timeout (ms), _g generation (incremented by every rotation), _v version
-- (incremented by every save; absent means 0), _u user ID, _ip, _ua, _l label, _p the cookie's
-- persistence ("1" outlives the browser, "0" does not; absent: the middleware's setting); a
-- rotated session kept for a grace window holds only _r (the key it moved to) and _rg (the grace
-- deadline, ms).
--
-- The index of the tag bucket (<prefix>{<tag>}:ix, a sorted set of the bucket's signed-in session
-- keys scored by absolute deadline) is authoritative for signed-in sessions: a record with a user
-- (_u) is live only while the index holds its key with a score after now. Without that entry (the
-- index was evicted, or a per-user operation removed it) the user is signed out: the record is
-- deleted and the reply is "no such session". Every script that accepts a signed-in session as
-- live applies the same rule (session_save, session_rotate, session_seal, session_user,
-- session_create), so nothing works on a session the index does not vouch for, and "sign out
-- everywhere" cannot miss one whatever Redis evicts. Reading the index here also keeps it as
-- recently used as the sessions it lists.
--
-- KEYS[1]   the session's hash
-- KEYS[2]   the index of its tag bucket (read only for a record with a user)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   optional: "v" to include the version _v in the reply. Without it, _v is left out: only a
--           sign-in that copies the record needs it, and every load would otherwise decode it.
-- Reply     {0}                       no such session (missing; or past its absolute deadline, or
--                                     signed in and not vouched for by the index: deleted now)
--           {1, now, field, value, ...} the whole record (without _v unless asked, in no particular
--                                     order); its expiry is now min(idle, deadline - now)
--           {2, key}                  the session was rotated to key less than its grace window ago
--           an error reply "GATEHOUSE corrupt ..." when the record lacks its deadline or idle timeout
-- A read writes no payload: only the expiry, and _s when it is a second or more behind.

--#include lib/time_ms
--#include lib/session

local now = clock_ms(ARGV[1])

local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {STATUS_NOT_FOUND} end
local m, vi = {}, nil
for i = 1, #h, 2 do
  if string.byte(h[i], 1) == 95 then -- '_'
    m[h[i]] = h[i + 1]
    if h[i] == FIELD_VERSION then vi = i end
  end
end

if m[FIELD_MOVED_TO] then
  if tonumber(m[FIELD_GRACE] or '0') > now then return {STATUS_MOVED, m[FIELD_MOVED_TO]} end
  redis.call('DEL', KEYS[1])
  return {STATUS_NOT_FOUND}
end

local d, idle, gone = live(KEYS[1], m, KEYS[2], now) -- signed out: see above
if gone then return gone end
redis.call('PEXPIRE', KEYS[1], math.min(idle, d - now))
if now - (tonumber(m[FIELD_SEEN]) or 0) >= 1000 then
  redis.call('HSET', KEYS[1], FIELD_SEEN, now)
end

if vi and ARGV[2] ~= 'v' then -- move the last pair into _v's place
  h[vi], h[vi + 1] = h[#h - 1], h[#h]
  h[#h] = nil
  h[#h] = nil
end
table.insert(h, 1, now)
table.insert(h, 1, STATUS_OK)
return h
