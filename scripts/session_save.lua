-- session_save.lua: write a session's changed attributes (deltas), only into the session it was
-- read from.
--
-- Only the fields this request changed are written and only the ones it removed are deleted, so
-- two requests that change different attributes both keep their change. Nothing is written unless
-- the session still exists, was not rotated away, and has the generation the request read: a
-- destroyed or rotated session is never brought back, and a rotation pointer (a token kept
-- readable for a grace window) is never written through. Every save increments the version _v
-- (not checked here, so that concurrent deltas all land), which a sign-in that copies the record
-- to another slot checks before retiring the original (session_seal.lua).
--
-- A signed-in session is saved only while its tag bucket's index vouches for it (the rule and why:
-- session_touch.lua); otherwise the user was signed out: the record is deleted and the reply is
-- {0}. A save that sets a signed-in session's absolute deadline (_d) moves its score to it, and
-- the index expires no earlier than its latest member.
--
-- KEYS[1]   the session's hash (layout in session_touch.lua)
-- KEYS[2]   the index of its tag bucket, given for a signed-in session (without it, a record with
--           a user is taken as signed out)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the generation the request read
-- ARGV[3]   the size cap in bytes: a record is the sum, over all its fields, of the length of the
--           field's name plus the length of its value (attributes "a:<name>" and metadata alike)
-- ARGV[4]   S, the number of field/value pairs to set; ARGV[5] D, the number of fields to delete
-- ARGV[6 .. 5+2S]          the pairs to set (attributes "a:<name>", or _i, _d, _l, _ip, _ua, _p)
-- ARGV[6+2S .. 5+2S+D]     the fields to delete
-- Reply     1         saved, with the expiry slid to min(now + idle, deadline)
--           0         no such session (missing, past its deadline, signed in and not vouched for
--                     by the index, a sign-in not made live yet, or the new deadline is past)
--           2         conflict: rotated away (a pointer, within its grace window; after it, a
--                     tombstone: 0), or another generation
--           {3, size} refused: the record would be size bytes, over the cap, and the fields this
--                     save sets and deletes would grow it (a save that does not grow a session
--                     passes over the cap, so that a session can be trimmed after the cap was
--                     lowered; _s and _v, rewritten by every save, count in the size, not as growth)
--           (integers, not tables, but for the size: building and sending a table reply costs
--           Redis several times what an integer costs)

--#include lib/time_ms
--#include lib/session_index

local now = clock_ms(ARGV[1])
local gen, maxsize = ARGV[2], tonumber(ARGV[3])
local nset, ndel = tonumber(ARGV[4]), tonumber(ARGV[5])
local first_del = 6 + 2 * nset

local h = redis.call('HGETALL', KEYS[1])
local n = #h
if n == 0 then return STATUS_NOT_FOUND end
-- The stored length of each field this save sets or deletes, and of _s and _v, which every save
-- rewrites (false: absent): with the record's size, all that the new size needs.
local len = {[FIELD_SEEN] = false, [FIELD_VERSION] = false}
for i = 6, first_del - 1, 2 do len[ARGV[i]] = false end
for i = first_del, first_del + ndel - 1 do len[ARGV[i]] = false end
-- The record's size, and the metadata the checks need, found as session_touch.lua finds it.
local before, g, moved, ver, d, idle, user, pending = 0
for i = 1, n, 2 do
  local f, v = h[i], h[i + 1]
  before = before + #f + #v
  if #f <= 3 then
    if f == FIELD_GEN then g = v
    elseif f == FIELD_DEADLINE then d = v
    elseif f == FIELD_IDLE then idle = v
    elseif f == FIELD_VERSION then ver = v
    elseif f == FIELD_USER then user = v
    elseif f == FIELD_MOVED_TO then moved = v
    elseif f == FIELD_PENDING then pending = v
    end
  end
  if len[f] == false then len[f] = #v end
end
if moved then -- within the grace window, rotated away; after it, a tombstone: no session
  for i = 1, n, 2 do
    if h[i] == FIELD_GRACE then return retired_status(h[i + 1], now) end
  end
  return STATUS_NOT_FOUND
end
if g ~= gen then return STATUS_CONFLICT end
if pending then return STATUS_NOT_FOUND end -- a sign-in not made live (session_activate.lua) takes no save
ver = tonumber(ver or '0')
if not ver then return redis.error_reply('GATEHOUSE corrupt session record: version not a number') end
local idx = KEYS[2]
local _d, _i, gone = live_fields(KEYS[1], d, idle, user, idx, now) -- signed out: session_touch.lua
if gone then return gone[1] or gone end -- {STATUS_NOT_FOUND} as 0, an error reply as it is

-- The record as it would be after this save: its size, and its deadline, idle timeout and user.
local size = before
local function put(f, v)
  local l = len[f]
  if l then size = size - #f - l end
  if v then size = size + #f + #v end
  len[f] = v and #v
  if f == FIELD_DEADLINE then d = v elseif f == FIELD_IDLE then idle = v elseif f == FIELD_USER then user = v end
end
for i = first_del, first_del + ndel - 1 do put(ARGV[i], nil) end
local setd = false -- the save sets the deadline: the index's score follows
for i = 6, first_del - 1, 2 do
  put(ARGV[i], ARGV[i + 1])
  if ARGV[i] == FIELD_DEADLINE then setd = true end
end
local grew = size > before
local seen, ver_s = string.format('%d', now), string.format('%d', ver + 1)
put(FIELD_SEEN, seen)
put(FIELD_VERSION, ver_s)
if size > maxsize and grew then return {STATUS_TOO_LARGE, size} end

d, idle = tonumber(d), tonumber(idle)
if not d or not idle then
  return redis.error_reply('GATEHOUSE corrupt session change: deadline or idle timeout not a number')
end
local ttl = math.min(idle, d - now)
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  if user then redis.call('ZREM', idx, KEYS[1]) end
  return STATUS_NOT_FOUND
end

-- The deletes in chunks too: unpack of more than about 8,000 values fails.
for i = first_del, first_del + ndel - 1, 1000 do
  redis.call('HDEL', KEYS[1], unpack(ARGV, i, math.min(i + 999, first_del + ndel - 1)))
end
-- One HSET with _s and _v, then the pairs to set: in chunks, to stay well inside Lua's stack for
-- unpack (integers go as strings: a number argument is formatted by Redis with %.17g first).
local last = math.min(first_del - 1, 5 + 2 * 500)
redis.call('HSET', KEYS[1], FIELD_SEEN, seen, FIELD_VERSION, ver_s, unpack(ARGV, 6, last))
for i = last + 1, first_del - 1, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, first_del - 1)))
end
redis.call('PEXPIREAT', KEYS[1], string.format('%d', now + ttl))

if user and setd then index_add(idx, KEYS[1], d) end
return STATUS_OK
