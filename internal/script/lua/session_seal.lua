-- session_seal.lua: retire a session's key after its record was copied to a key in another slot
-- (a sign-in that moves the session to the user's slot: session_create.lua stored the copy first).
--
-- A signed-in session (signing in as another user) is retired only while its index vouches for
-- it (session_touch.lua); otherwise it was signed out meanwhile: the record is deleted and the
-- reply is {0}, so that the copy is deleted too.
--
-- KEYS[1]   the session's hash (layout in session_touch.lua)
-- KEYS[2]   the index of its tag bucket (read only for a record with a user)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the generation of the record that was copied
-- ARGV[3]   grace window in ms, or "0" to delete the key at once
-- ARGV[4]   the key the session moved to (kept in the pointer for the grace window)
-- ARGV[5]   the version (_v, "0" when absent) of the record that was copied
-- Reply     {1} sealed;  {0} no such session (or signed out);  {2} conflict (rotated away or
--           another generation);  {3} a save landed since the record was copied (another version): the caller deletes
--           its copy and copies again. On {0} and {2} the caller deletes its copy, so the session
--           is never duplicated.

--#include lib/time_ms

local now = clock_ms(ARGV[1])
local m = redis.call('HMGET', KEYS[1], '_g', '_r', '_v', '_u')
if not m[1] and not m[2] then return {0} end
if m[2] or m[1] ~= ARGV[2] then return {2} end
if m[4] then
  local score = redis.call('ZSCORE', KEYS[2], KEYS[1])
  if not score or tonumber(score) <= now then -- signed out (session_touch.lua)
    redis.call('DEL', KEYS[1])
    return {0}
  end
end
if (m[3] or '0') ~= ARGV[5] then return {3} end
redis.call('DEL', KEYS[1])
local grace = tonumber(ARGV[3])
if grace > 0 then
  redis.call('HSET', KEYS[1], '_r', ARGV[4], '_rg', now + grace)
  redis.call('PEXPIRE', KEYS[1], grace)
end
return {1}
