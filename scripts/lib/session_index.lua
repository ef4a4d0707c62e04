-- lib/session_index.lua: the index of a tag bucket, for the scripts that add to it or act on a
-- user's sessions through it (a sorted set of signed-in session keys scored by absolute deadline,
-- ms; session_touch.lua says why it is authoritative).
--#include lib/session

-- index_changed(idx, first, now) reports whether the index idx holds a live member (a deadline
-- after now) that is not among KEYS[first..]: the members the caller read. Nothing is written.
local function index_changed(idx, first, now)
  local known = {}
  for i = first, #KEYS do known[KEYS[i]] = true end
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', idx, '(' .. now, '+inf')) do
    if not known[k] then return true end
  end
  return false
end

-- evict_oldest(idx, user, first, cap, keep) ends user's sessions among KEYS[first..] (except
-- keep, when given: the session being given to the user) beyond the cap - 1 most recently
-- signed in, oldest sign-in first (authenticated at; equal instants by key), and removes from idx
-- every member it finds gone or a rotation pointer. Sessions pending (_pn: a sign-in or rotation
-- not made live yet) are neither counted nor ended. It returns how many it ended.
local function evict_oldest(idx, user, first, cap, keep)
  local mine = {}
  for i = first, #KEYS do
    local k = KEYS[i]
    if k ~= keep and redis.call('ZSCORE', idx, k) then
      local m = redis.call('HMGET', k, FIELD_USER, FIELD_CREATED, FIELD_AUTH, FIELD_PENDING)
      if not m[2] then
        redis.call('ZREM', idx, k) -- gone, or a rotation pointer
      elseif m[1] == user and not m[4] then -- a sign-in not made live counts when it is
        mine[#mine + 1] = {k, tonumber(m[3]) or 0}
      end
    end
  end
  table.sort(mine, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  local n = 0
  for i = 1, #mine + 1 - cap do
    redis.call('DEL', mine[i][1])
    redis.call('ZREM', idx, mine[i][1])
    n = n + 1
  end
  return n
end

-- index_add(idx, key, deadline) adds key to idx scored by its deadline; the index expires with its
-- latest member.
local function index_add(idx, key, deadline)
  redis.call('ZADD', idx, deadline, key)
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', idx, last[2])
end
