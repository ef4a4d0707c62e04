-- session_create.lua: store a new session and, for a signed-in user, index it and enforce the cap
-- on sessions per user.
--
-- KEYS[1]   the new session's hash (layout in session_touch.lua)
-- KEYS[2]   the index of its tag bucket: a sorted set of session keys scored by absolute deadline
--           (ms); only read or written when ARGV[7] names a user
-- KEYS[3..] with a user and a cap: every member the caller read from that index (ZRANGE); if the
--           index now holds a member that is not among them (a sign-in or rotation since), nothing
--           is written and the caller reads the index again ({4})
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   idle timeout, ms
-- ARGV[3]   absolute lifetime, ms: the deadline is now + lifetime, unless ARGV[4] gives one
-- ARGV[4]   the absolute deadline in ms since the epoch, or "0"
-- ARGV[5]   created, ms since the epoch, or "0" for now (a session moved by a login keeps its own)
-- ARGV[6]   authenticated at, ms since the epoch; "0" for never, "-1" for now
-- ARGV[7]   the user ID, or "" for an anonymous session
-- ARGV[8]   the most sessions one user may have, or "0" for no cap: a sign-in beyond it ends the
--           user's oldest sessions by sign-in (authenticated at; equal instants by key), never the
--           one being created
-- ARGV[9]   the size cap in bytes (how a record is counted: session_save.lua)
-- ARGV[10]  the size the caller allows over the cap: a sign-in moving a session to another slot
--           passes the moved record's size plus what the sign-in adds, so that only its request's
--           own changes can be refused; "0" for a new session
-- ARGV[11]  N, then ARGV[12 .. 11+2N]: further field/value pairs (attributes, _g, _ip, _ua, _l, _p)
-- Reply     {1, now, evicted, deadline}  created; evicted is how many sessions the cap ended
--           {1, now, 0, deadline}        the key exists already: the key is the digest of a fresh
--                                        256-bit token, so that is this same call run twice (a
--                                        client retrying after a lost reply), and the first run did
--                                        the work; nothing is written
--           {0}                          the lifetime given is already over
--           {3, size}                    refused: the record would be size bytes, over the cap
--                                        and over the allowance
--           {4}                          the index changed since the caller read it: read it again

--#include lib/time_ms
--#include lib/session_index

local now = clock_ms(ARGV[1])
local idle = tonumber(ARGV[2])
local deadline = tonumber(ARGV[4])
if deadline == 0 then deadline = now + tonumber(ARGV[3]) end
local created = tonumber(ARGV[5])
if created == 0 then created = now end
local auth = tonumber(ARGV[6])
if auth == -1 then auth = now end
local user, cap, maxsize, allowed, n = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local key, idx = KEYS[1], KEYS[2]

if redis.call('EXISTS', key) == 1 then return {STATUS_OK, now, 0, deadline} end
local ttl = math.min(idle, deadline - now)
if ttl <= 0 then return {STATUS_NOT_FOUND} end

local fields = {FIELD_CREATED, created, FIELD_SEEN, now, FIELD_DEADLINE, deadline, FIELD_IDLE, idle}
if auth > 0 then fields[#fields + 1] = FIELD_AUTH; fields[#fields + 1] = auth end
if user ~= '' then fields[#fields + 1] = FIELD_USER; fields[#fields + 1] = user end
local rec, size = {}, 0
local function put(f, v)
  v = tostring(v)
  if rec[f] then size = size - #f - #rec[f] end
  size = size + #f + #v
  rec[f] = v
end
for i = 1, #fields, 2 do put(fields[i], fields[i + 1]) end
for i = 12, 11 + 2 * n, 2 do put(ARGV[i], ARGV[i + 1]) end
if size > maxsize and size > allowed then return {STATUS_TOO_LARGE, size} end

-- The cap's check reads only, so that nothing is written when it asks for another read. The first
-- write is the new session's: on a full server under noeviction, Redis refuses it, and nothing is
-- written at all.
if user ~= '' and cap > 0 and index_changed(idx, 3, now) then return {STATUS_REREAD_INDEX} end

redis.call('HSET', key, unpack(fields))
for i = 12, 11 + 2 * n, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, 11 + 2 * n)))
end
redis.call('PEXPIRE', key, ttl)

local evicted = 0
if user ~= '' then
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  if cap > 0 then evicted = evict_oldest(idx, user, 3, cap, key) end -- the user's other live sessions
  index_add(idx, key, deadline)
end
return {STATUS_OK, now, evicted, deadline}
