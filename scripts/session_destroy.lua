-- session_destroy.lua: end a session (a sign-out), following it through the rotations it went
-- through since the caller read it.
--
-- A request that loaded the session before another request rotated it (Rotate, Login) holds the
-- old key, which is now a pointer to the new one: a grace pointer, or a tombstone after the grace
-- window or without one (lib/session.lua retire). Deleting only that would leave the session alive
-- under the new token, which the other request hands the browser: the user who signed out would
-- still be signed in. So on a pointer this script ends the pointer's reads (it becomes a
-- tombstone: its grace deadline _rg is removed, and it is kept until it expires) and answers the
-- key it names; the caller runs it again on that key, which may be in another slot (a sign-in
-- moves the session to the user's slot), and so on along a chain of rotations. It keeps the
-- pointer, so that the caller, sending a call again after its reply was lost, still finds where to
-- go; a rotation or seal run again after its own lost reply finds the new record gone, and fails.
-- Nothing is written but deletions (DEL, HDEL, ZREM), which Redis allows when it is full under
-- noeviction.
--
-- KEYS[1]   the session's hash (layout in session_touch.lua), or a pointer left by a rotation
-- KEYS[2]   the index of its tag bucket: a signed-in session's entry is removed
-- ARGV      none (nothing here depends on the time)
-- Reply     1     a session (live, pending or past its deadline) was there, and is deleted
--           0     nothing was there
--           key   KEYS[1] is a rotation's pointer to key, whose reads are ended now: end key too

--#include lib/session

local m = redis.call('HMGET', KEYS[1], FIELD_MOVED_TO, FIELD_GRACE, FIELD_USER)
if m[1] then
  if m[2] then redis.call('HDEL', KEYS[1], FIELD_GRACE) end -- (frees memory: allowed when Redis is full)
  return m[1]
end
local n = redis.call('DEL', KEYS[1])
if m[3] then redis.call('ZREM', KEYS[2], KEYS[1]) end
return n
