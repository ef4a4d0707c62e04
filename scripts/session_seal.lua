-- session_seal.lua: retire a session's key after its record was copied to a key in another slot
-- (a sign-in that moves the session to the user's slot: session_create.lua stored the copy first,
-- pending; session_activate.lua makes it live after this seal).
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
-- ARGV[6]   how long the pointer left in KEYS[1] is kept, ms (at least the grace window): a
--           tombstone after the window (lib/session.lua retire)
-- Reply     {1} sealed; also for this same call run again after its reply was lost (KEYS[1] is a
--           pointer to ARGV[4], the digest of a token the caller drew at random: this call left
--           it), and nothing is written;  {0} no such session (or signed out; a tombstone);
--           {2} conflict (rotated away within the grace window, or another generation);  {3} a save landed since the record was copied (another version): the caller deletes
--           its copy and copies again. On {0} and {2} the caller deletes its copy, so the session
--           is never duplicated.

--#include lib/time_ms
--#include lib/session

local now = clock_ms(ARGV[1])
local m = redis.call('HMGET', KEYS[1], FIELD_GEN, FIELD_MOVED_TO, FIELD_VERSION, FIELD_USER, FIELD_GRACE)
if not m[1] and not m[2] then return {STATUS_NOT_FOUND} end
if m[2] == ARGV[4] then return {STATUS_OK} end -- this same call, run again
if m[2] then return {retired_status(m[5], now)} end
if m[1] ~= ARGV[2] then return {STATUS_CONFLICT} end
if m[4] and not vouched(KEYS[2], KEYS[1], now) then -- signed out (session_touch.lua)
  redis.call('DEL', KEYS[1])
  return {STATUS_NOT_FOUND}
end
if (m[3] or '0') ~= ARGV[5] then return {STATUS_VERSION_CHANGED} end
retire(KEYS[1], ARGV[4], now, tonumber(ARGV[3]), tonumber(ARGV[6]))
return {STATUS_OK}
