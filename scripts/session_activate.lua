-- session_activate.lua: make live a signed-in session that session_create.lua stored pending: the
-- last step of a sign-in, after the old key was retired (session_seal.lua) when the session moved
-- slots, and of a rotation of a signed-in session (session_rotate.lua stored it pending). It
-- applies the cap on sessions per user; the session is in its index already (pending).
--
-- It never creates a session: it only changes one that is there. Run twice (a client retrying
-- after a lost reply), the second run finds the session live and answers as the first did, unless
-- the session was signed out in between (DestroyAllForUser, or its index entry lost): then it is
-- gone, and stays gone ({0}).
--
-- KEYS[1]   the session's hash (layout in session_touch.lua)
-- KEYS[2]   the index of its tag bucket
-- KEYS[3..] with a cap: every member the caller read from that index (ZRANGE); if the index now
--           holds a member that is not among them (a sign-in or rotation since), nothing is
--           written and the caller reads the index again ({4})
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the most sessions one user may have, or "0" for no cap: beyond it, the user's oldest
--           sessions by sign-in (authenticated at; equal instants by key) are ended
-- ARGV[3]   "1" for a session the user gains (a sign-in): never ended by the cap; "0" for a
--           session the user had (a rotation, or a sign-in of the same user again): it counts
--           with the others, by its own sign-in, and the cap may end it too. A rotated session
--           was not counted while it was pending: a sign-in of the same user in that window had
--           room for itself, and the cap is only kept if the rotated session counts now.
-- Reply     {1, now, evicted, deadline}  live; evicted is how many sessions the cap ended (0 when
--                                        it was live already)
--           {0}                          no such session: the pending session expired (or is past
--                                        its deadline), or it was signed out since (its index
--                                        entry is gone: DestroyAllForUser, an eviction), or, with
--                                        ARGV[3] "0", the cap ended it now (the oldest sign-in)
--           {4}                          the index changed since the caller read it: read it again
--           an error reply "GATEHOUSE corrupt ..." for a record without its deadline, idle timeout
--           or user

--#include lib/time_ms
--#include lib/session_index

local now = clock_ms(ARGV[1])
local key, idx, cap = KEYS[1], KEYS[2], tonumber(ARGV[2])

local m = redis.call('HMGET', key, FIELD_DEADLINE, FIELD_IDLE, FIELD_USER, FIELD_PENDING)
if not m[1] and not m[2] and not m[3] and not m[4] then return {STATUS_NOT_FOUND} end
if not m[3] then return redis.error_reply('GATEHOUSE corrupt session record: a sign-in without its user') end
-- Pending or live, only while the index vouches for it (session_touch.lua): a sign out everywhere
-- since ended it.
local d, idle, gone = live_fields(key, m[1], m[2], m[3], idx, now)
if gone then return gone end
if not m[4] then return {STATUS_OK, now, 0, d} end -- live already: this same call, run again

-- The cap's check reads only, so that nothing is written when it asks for another read. The first
-- write may add data: on a full server under noeviction, Redis refuses it, and nothing is written.
if cap > 0 and index_changed(idx, 3, now) then return {STATUS_REREAD_INDEX} end
redis.call('HSET', key, FIELD_SEEN, string.format('%d', now))
redis.call('HDEL', key, FIELD_PENDING)
redis.call('PEXPIRE', key, string.format('%d', math.min(idle, d - now)))
redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
local evicted = 0
if cap > 0 and ARGV[3] == '1' then
  evicted = evict_oldest(idx, m[3], 3, cap, key) -- the user's other live sessions: cap - 1 stay
elseif cap > 0 then
  evicted = evict_oldest(idx, m[3], 3, cap + 1) -- this one among them: cap stay
  if redis.call('EXISTS', key) == 0 then return {STATUS_NOT_FOUND} end -- the oldest: ended
end
return {STATUS_OK, now, evicted, d}
