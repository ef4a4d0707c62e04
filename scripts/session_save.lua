-- session_save.lua: write a session's changed attributes (deltas), only into the session it was
-- read from.
--
-- Only the fields this request changed are written and only the ones it removed are deleted, so
-- two requests that change different attributes both keep their change. Nothing is written unless
-- the session still exists, was not rotated away, and has the generation the request read: a
-- destroyed or rotated session is never brought back.
--
-- KEYS[1]   the session's hash (layout in session_touch.lua)
-- ARGV[1]   now in integer milliseconds since the Unix epoch; "0" to use the server's TIME (tests only)
-- ARGV[2]   the generation the request read
-- ARGV[3]   the largest allowed payload: the sum of the lengths of all "a:" values, in bytes
-- ARGV[4]   S, the number of field/value pairs to set; ARGV[5] D, the number of fields to delete
-- ARGV[6 .. 5+2S]          the pairs to set (attributes "a:<name>", or _i, _d, _l to change those)
-- ARGV[6+2S .. 5+2S+D]     the fields to delete
-- Reply     {1, ttl_ms} saved, with the expiry slid to min(idle, deadline - now)
--           {0}       no such session (missing or past its deadline)
--           {2}       conflict: rotated away, or another generation
--           {3, size} refused: the payload would be size bytes, more than ARGV[3]

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local gen, maxsize = ARGV[2], tonumber(ARGV[3])
local nset, ndel = tonumber(ARGV[4]), tonumber(ARGV[5])

local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {0} end
local cur = {}
for i = 1, #h, 2 do cur[h[i]] = h[i + 1] end
if cur._r or cur._g ~= gen then return {2} end
local d, idle = tonumber(cur._d), tonumber(cur._i)
if not d or not idle then
  return redis.error_reply('GATEHOUSE corrupt session record: no deadline or idle timeout')
end
if now >= d then
  redis.call('DEL', KEYS[1])
  return {0}
end

-- The payload as it would be after this save.
local size = 0
for f, v in pairs(cur) do
  if string.sub(f, 1, 2) == 'a:' then size = size + #v end
end
local first_del = 6 + 2 * nset
for i = first_del, first_del + ndel - 1 do
  local f = ARGV[i]
  if cur[f] and string.sub(f, 1, 2) == 'a:' then size = size - #cur[f] end
  cur[f] = nil
end
for i = 6, first_del - 1, 2 do
  local f, v = ARGV[i], ARGV[i + 1]
  if string.sub(f, 1, 2) == 'a:' then size = size - #(cur[f] or '') + #v end
  cur[f] = v
end
if size > maxsize then return {3, size} end

if ndel > 0 then
  redis.call('HDEL', KEYS[1], unpack(ARGV, first_del, first_del + ndel - 1))
end
-- HSET in chunks, to stay well inside Lua's stack for unpack.
for i = 6, first_del - 1, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, first_del - 1)))
end
redis.call('HSET', KEYS[1], '_s', now)

d, idle = tonumber(cur._d), tonumber(cur._i)
local ttl = math.min(idle, d - now)
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return {0}
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {1, ttl}
