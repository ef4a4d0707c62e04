-- session_touch.lua: check a session and slide its expiry (touch-on-read). The caller reads the
-- record with HGETALL just before it, in the same pipeline (script.RunHGetAll): one round trip, and
-- the record never passes through Lua, which would cost Redis more than the rest of the call
-- (carrying 1.5 KB in and out of Lua as some 30 strings each way). The verdict holds for the
-- record read even if another client's command ran in between: a session that is not live (gone,
-- past its deadline, rotated away, signed out) never becomes live again, so a session live now was
-- live when it was read.
--
-- A session is a hash: attributes under "a:<name>", metadata under fields starting with '_':
-- _c created, _s last seen, _d absolute deadline, _a authenticated at (all integer ms since the
-- epoch), _i idle timeout (ms), _g generation (incremented by every rotation), _v version
-- (incremented by every save; absent means 0), _u user ID, _ip, _ua, _l label, _p the cookie's
-- persistence ("1" outlives the browser, "0" does not; absent: the middleware's setting); a
-- rotated session's old key holds only _r (the key it moved to) and _rg (the grace deadline, ms):
-- read through for the grace window, then a tombstone, no session, until it expires
-- (lib/session.lua retire). A signed-in session stored by a sign-in that has not made it live yet also holds
-- _pn (pending: session_create.lua, session_activate.lua).
--
-- The index of the tag bucket (<prefix>{<tag>}:ix, a sorted set of the bucket's signed-in session
-- keys scored by absolute deadline) is authoritative for signed-in sessions: a record with a user
-- (_u) is live only while the index holds its key with a score after now. Without that entry (the
-- index was evicted, or a per-user operation removed it) the user is signed out: the record is
-- deleted and the reply is "no such session". Every script that accepts a signed-in session as
-- live applies the same rule (session_save, session_rotate, session_seal, session_user,
-- session_activate), so nothing works on a session the index does not vouch for, and "sign out
-- everywhere" cannot miss one whatever Redis evicts. Reading the index here also keeps it as
-- recently used as the sessions it lists.
--
-- KEYS[1]   the session's hash
-- KEYS[2]   the index of its tag bucket (read only for a record with a user)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- Reply     an integer or a string, not a table: building and sending a table reply costs Redis
--           several times what an integer costs
--           0            no such session (missing; a tombstone: rotated away longer ago than its
--                        grace window, or without one; or past its absolute deadline, or signed in
--                        and not vouched for by the index: deleted now)
--           now          a live session, checked at now (ms since the epoch): it now expires at
--                        min(now + idle, deadline); the record is what HGETALL read before
--           key          the session was rotated to key less than its grace window ago
--           (now, too, for a pending sign-in the index vouches for, not slid: the record read
--           holds _pn, and package session reads it only through a grace pointer)
--           an error reply "GATEHOUSE corrupt ..." when the record lacks its deadline or idle
--           timeout, or one of them, its last seen or a pointer's grace deadline is not a number
-- A read writes no payload: only the expiry, and _s when it is a second or more behind.

--#include lib/time_ms
--#include lib/session

local now = clock_ms(ARGV[1])

-- A rotation pointer holds only _r and _rg: they are read only for a record without a deadline.
local m = redis.call('HMGET', KEYS[1], FIELD_DEADLINE, FIELD_IDLE, FIELD_USER, FIELD_SEEN, FIELD_PENDING)
if not m[1] then
  local p = redis.call('HMGET', KEYS[1], FIELD_MOVED_TO, FIELD_GRACE)
  if p[1] then
    local grace = tonumber(p[2] or '0')
    if not grace then return redis.error_reply('GATEHOUSE corrupt session record: grace deadline not a number') end
    if grace > now then return p[1] end
    return STATUS_NOT_FOUND -- a tombstone: kept for session_destroy.lua, until it expires
  end
  if redis.call('EXISTS', KEYS[1]) == 0 then return STATUS_NOT_FOUND end
end

if m[5] then
  -- A sign-in not yet made live (session_create.lua): readable, as it is, only through the old
  -- token's grace pointer (package session refuses it to a load of its own token), while the
  -- index vouches for it (it is in the index from the start); not slid: it keeps its short expiry
  -- until session_activate.lua.
  local d = tonumber(m[1])
  if not d then return redis.error_reply('GATEHOUSE corrupt session record: deadline not a number') end
  if now >= d then return STATUS_NOT_FOUND end
  if not vouched(KEYS[2], KEYS[1], now) then -- signed out (above): activate would find it so
    redis.call('DEL', KEYS[1])
    return STATUS_NOT_FOUND
  end
  return now
end
local d, idle, gone = live_fields(KEYS[1], m[1], m[2], m[3], KEYS[2], now) -- signed out: see above
if gone then return gone[1] or gone end -- {STATUS_NOT_FOUND} as 0, an error reply as it is
local seen = tonumber(m[4] or '0')
if not seen then return redis.error_reply('GATEHOUSE corrupt session record: last seen not a number') end
-- Integers go to Redis as strings: a number argument is formatted by Redis with %.17g first.
redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.min(now + idle, d)))
if now - seen >= 1000 then
  redis.call('HSET', KEYS[1], FIELD_SEEN, string.format('%d', now))
end
return now
