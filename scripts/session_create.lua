-- session_create.lua: store a new session; a signed-in one (a sign-in) pending, for
-- session_activate.lua to make live.
--
-- A signed-in session is stored pending (_pn): in its user's index, so that a sign out everywhere
-- ends it (session_user.lua), but listed by nothing and counted by no cap, and no load or save
-- accepts it but a read through the old token's grace pointer (session_touch.lua); with an expiry
-- of its own (ARGV[8]), short. A sign-in stores
-- it, retires the old key if it moves slots (session_seal.lua), then makes it live
-- (session_activate.lua, which indexes it and applies the cap): a sign-in that fails at any step
-- leaves no session that is listed or counted and that no client holds, and a create run again
-- after a lost reply can never bring back a session signed out in between (only the activation
-- makes a session live, and it never re-creates one).
--
-- KEYS[1]   the new session's hash (layout in session_touch.lua)
-- KEYS[2]   with a user, the index of its tag bucket (a sorted set of session keys scored by
--           absolute deadline, ms)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   idle timeout, ms
-- ARGV[3]   absolute lifetime, ms: the deadline is now + lifetime, unless ARGV[4] gives one
-- ARGV[4]   the absolute deadline in ms since the epoch, or "0"
-- ARGV[5]   created, ms since the epoch, or "0" for now (a session moved by a login keeps its own)
-- ARGV[6]   authenticated at, ms since the epoch; "0" for never, "-1" for now
-- ARGV[7]   the user ID, or "" for an anonymous session
-- ARGV[8]   with a user, how long the pending session is kept, ms (it expires then unless
--           session_activate.lua made it live, and no later than its deadline)
-- ARGV[9]   the size cap in bytes (how a record is counted: session_save.lua)
-- ARGV[10]  the size the caller allows over the cap: a sign-in moving a session to another slot
--           passes the moved record's size plus what the sign-in adds, so that only its request's
--           own changes can be refused; "0" for a new session
-- ARGV[11]  N, then ARGV[12 .. 11+2N]: further field/value pairs (attributes, _g, _ip, _ua, _l, _p)
-- Reply     {1, now, 0, deadline}        created (pending, with a user)
--           {1, now, 0, deadline}        the key exists already: the key is the digest of a fresh
--                                        256-bit token, so that is this same call run twice (a
--                                        client retrying after a lost reply), and the first run did
--                                        the work; nothing is written
--           {0}                          the lifetime given is already over
--           {3, size}                    refused: the record would be size bytes, over the cap
--                                        and over the allowance

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
local user, pending, maxsize, allowed, n = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local key = KEYS[1]

if redis.call('EXISTS', key) == 1 then return {STATUS_OK, now, 0, deadline} end
local ttl = math.min(idle, deadline - now)
if ttl <= 0 then return {STATUS_NOT_FOUND} end

local fields = {FIELD_CREATED, created, FIELD_SEEN, now, FIELD_DEADLINE, deadline, FIELD_IDLE, idle}
if auth > 0 then fields[#fields + 1] = FIELD_AUTH; fields[#fields + 1] = auth end
if user ~= '' then
  fields[#fields + 1] = FIELD_USER; fields[#fields + 1] = user
  ttl = math.min(pending, deadline - now)
end
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
if user ~= '' then fields[#fields + 1] = FIELD_PENDING; fields[#fields + 1] = '1' end -- not counted: it goes

-- The first write may add data: on a full server under noeviction, Redis refuses it, and nothing
-- is written at all.
redis.call('HSET', key, unpack(fields))
for i = 12, 11 + 2 * n, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, 11 + 2 * n)))
end
redis.call('PEXPIRE', key, ttl)
if user ~= '' then index_add(KEYS[2], key, deadline) end
return {STATUS_OK, now, 0, deadline}
