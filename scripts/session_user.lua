-- session_user.lua: list or destroy one user's sessions, repairing the index as it goes.
--
-- Exact at the instant it runs: the index is authoritative (session_touch.lua): a signed-in
-- session is live only while the index holds its key, every script that gives a user a session
-- (session_activate.lua, session_rotate.lua) adds it to the index in the same call, and every change
-- of a session's deadline moves its score (session_save.lua). So the index's members are exactly
-- the user's live sessions (and dead ones, removed here), whatever was evicted: a session whose
-- index entry is gone is signed out already. This script acts only if the index holds no member
-- beyond the ones the caller read; else (a sign-in or a rotation in between) it does nothing and
-- the caller reads the index again.
--
-- KEYS[1]   the index of the user's tag bucket: a sorted set of session keys scored by absolute
--           deadline (ms). A bucket may hold other users' sessions; they are left alone.
-- KEYS[2..] the members the caller read from the index (ZRANGE): the sessions to consider
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the user ID
-- ARGV[3]   "list" or "destroy"
-- ARGV[4]   with "destroy", a session key to keep (DestroyOthers), or "": a session the index
--           does not vouch for (signed out), or pending (never made live), cannot end the others
--           ({-2}, nothing done)
-- Reply     list:    {n, then per session: key, created, last seen, deadline, authenticated at,
--                    idle ms, ip, user agent, label}  (times in ms since the epoch; "" when unset)
--           destroy: {n destroyed}
--           {-1}     the index holds a member not in KEYS: read it again; nothing was done
--           {-2}     the session to keep is signed out (or pending); nothing was done
-- Members that are past their deadline, gone (idle expiry, destroyed), or rotated away are removed
-- from the index; the index then expires with its last deadline. A member pending (_pn: a sign-in
-- or rotation that session_activate.lua has not made live) is not listed, and is destroyed: its
-- activation then finds nothing.

--#include lib/time_ms
--#include lib/session

local now = clock_ms(ARGV[1])
local idx, user, mode, keep = KEYS[1], ARGV[2], ARGV[3], ARGV[4]

redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
local known = {}
for i = 2, #KEYS do known[KEYS[i]] = true end
for _, k in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  if not known[k] then return {STATUS_USER_REREAD} end
end
-- The session to keep must be live: vouched for, and not pending (a sign-in never made live: its
-- token loads nothing). It is then one of KEYS[2..], checked just above.
if keep ~= '' and (not redis.call('ZSCORE', idx, keep) or redis.call('HEXISTS', keep, FIELD_PENDING) == 1) then
  return {STATUS_KEEP_SIGNED_OUT}
end

local out, n = {0}, 0
for i = 2, #KEYS do
  local k = KEYS[i]
  if redis.call('ZSCORE', idx, k) then
    local m = redis.call('HMGET', k, FIELD_USER, FIELD_CREATED, FIELD_SEEN, FIELD_DEADLINE, FIELD_AUTH, FIELD_IDLE,
      FIELD_IP, FIELD_UA, FIELD_LABEL, FIELD_PENDING)
    if not m[2] or not m[4] or tonumber(m[4]) <= now then
      redis.call('ZREM', idx, k) -- gone, a rotation pointer, or past its deadline
    elseif m[1] == user then
      if mode == 'list' then
        if not m[10] then -- a sign-in or rotation not made live yet is not listed
          n = n + 1
          out[#out + 1] = k
          for j = 2, 9 do out[#out + 1] = m[j] or '' end
        end
      elseif k ~= keep then -- a pending one too: it never becomes live
        redis.call('DEL', k)
        redis.call('ZREM', idx, k)
        n = n + 1
      end
    end
  end
end
out[1] = n
local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', idx, last[2]) end
return out
