-- session_create.lua: store a new session and, for a signed-in user, index it and enforce the cap
-- on sessions per user.
--
-- KEYS[1]   the new session's hash (layout in session_touch.lua)
-- KEYS[2]   the index of its tag bucket: a sorted set of session keys scored by absolute deadline
--           (ms); only read or written when ARGV[7] names a user
-- KEYS[3..] sessions the caller found in that index: candidates for eviction under the cap
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   idle timeout, ms
-- ARGV[3]   absolute lifetime, ms: the deadline is now + lifetime, unless ARGV[4] gives one
-- ARGV[4]   the absolute deadline in ms since the epoch, or "0"
-- ARGV[5]   created, ms since the epoch, or "0" for now (a session moved by a login keeps its own)
-- ARGV[6]   authenticated at, ms since the epoch; "0" for never, "-1" for now
-- ARGV[7]   the user ID, or "" for an anonymous session
-- ARGV[8]   the most sessions one user may have (the oldest are evicted), or "0" for no cap
-- ARGV[9]   N, then ARGV[10 .. 9+2N]: further field/value pairs (attributes, _g, _ip, _ua, _l)
-- Reply     {1, now, evicted}  created; evicted is how many of the user's sessions the cap removed
--           {1, now, 0}        the key exists already: the key is the digest of a fresh 256-bit
--                              token, so that is this same call run twice (a client retrying after
--                              a lost reply), and the first run did the work; nothing is written
--           {0}                the lifetime given is already over

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local idle = tonumber(ARGV[2])
local deadline = tonumber(ARGV[4])
if deadline == 0 then deadline = now + tonumber(ARGV[3]) end
local created = tonumber(ARGV[5])
if created == 0 then created = now end
local auth = tonumber(ARGV[6])
if auth == -1 then auth = now end
local user, cap, n = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])

if redis.call('EXISTS', KEYS[1]) == 1 then return {1, now, 0} end
local ttl = math.min(idle, deadline - now)
if ttl <= 0 then return {0} end

local fields = {'_c', created, '_s', now, '_d', deadline, '_i', idle}
if auth > 0 then fields[#fields + 1] = '_a'; fields[#fields + 1] = auth end
if user ~= '' then fields[#fields + 1] = '_u'; fields[#fields + 1] = user end
redis.call('HSET', KEYS[1], unpack(fields))
for i = 10, 9 + 2 * n, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, 9 + 2 * n)))
end
redis.call('PEXPIRE', KEYS[1], ttl)

local evicted = 0
if user ~= '' then
  local idx = KEYS[2]
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  if cap > 0 then
    -- The user's other live sessions among the candidates, oldest first.
    local mine = {}
    for i = 3, #KEYS do
      local k = KEYS[i]
      if k ~= KEYS[1] and redis.call('ZSCORE', idx, k) then
        local m = redis.call('HMGET', k, '_u', '_c')
        if not m[2] then
          redis.call('ZREM', idx, k)
        elseif m[1] == user then
          mine[#mine + 1] = {k, tonumber(m[2])}
        end
      end
    end
    table.sort(mine, function(a, b) return a[2] < b[2] end)
    for i = 1, #mine + 1 - cap do
      redis.call('DEL', mine[i][1])
      redis.call('ZREM', idx, mine[i][1])
      evicted = evicted + 1
    end
  end
  redis.call('ZADD', idx, deadline, KEYS[1])
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', idx, last[2])
end
return {1, now, evicted}
