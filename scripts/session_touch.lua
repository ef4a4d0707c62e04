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
--                                     order); it now expires at min(now + idle, deadline)
--           {2, key}                  the session was rotated to key less than its grace window ago
--           an error reply "GATEHOUSE corrupt ..." when the record lacks its deadline or idle timeout
-- A read writes no payload: only the expiry, and _s when it is a second or more behind.

--#include lib/time_ms
--#include lib/session

local now = clock_ms(ARGV[1])

local h = redis.call('HGETALL', KEYS[1])
local n = #h
if n == 0 then return {STATUS_NOT_FOUND} end
-- The metadata the checks need, found by a chain of comparisons (field names are interned
-- strings), which only names of at most 3 bytes enter (every metadata field's is): cheaper than a
-- table of every field, or than a call per field.
local d, idle, seen, user, moved, grace, vi
for i = 1, n, 2 do
  local f = h[i]
  if #f <= 3 then
    if f == FIELD_DEADLINE then d = h[i + 1]
    elseif f == FIELD_IDLE then idle = h[i + 1]
    elseif f == FIELD_SEEN then seen = h[i + 1]
    elseif f == FIELD_VERSION then vi = i
    elseif f == FIELD_USER then user = h[i + 1]
    elseif f == FIELD_MOVED_TO then moved = h[i + 1]
    elseif f == FIELD_GRACE then grace = h[i + 1]
    end
  end
end

if moved then
  if tonumber(grace or '0') > now then return {STATUS_MOVED, moved} end
  redis.call('DEL', KEYS[1])
  return {STATUS_NOT_FOUND}
end

local gone
d, idle, gone = live_fields(KEYS[1], d, idle, user, KEYS[2], now) -- signed out: see above
if gone then return gone end
-- Integers go to Redis as strings: a number argument is formatted by Redis with %.17g first.
redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.min(now + idle, d)))
if now - (tonumber(seen) or 0) >= 1000 then
  redis.call('HSET', KEYS[1], FIELD_SEEN, string.format('%d', now))
end

-- The reply: the status and now in the first two places, whose pair moves to the end (the
-- order of the fields does not matter); without _v unless asked, the last pair taking its place.
if vi and ARGV[2] ~= 'v' then
  h[vi], h[vi + 1] = h[n - 1], h[n]
  h[n], h[n - 1] = nil, nil
  n = n - 2
end
h[n + 1], h[n + 2] = h[1], h[2]
h[1], h[2] = STATUS_OK, now
return h
