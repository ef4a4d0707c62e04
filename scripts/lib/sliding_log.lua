-- lib/sliding_log.lua: the sliding log's decision, the one code sliding_log.lua runs for its call
-- and sliding_log_batch.lua runs for each decision of a batch. sliding_log.lua's header states the
-- state and the reply.
--#include lib/limit

-- slog is the sliding log's decision of one limit (lib/limit's alg): the limit is rate requests
-- per window of P[x + 1] ms at P[x]. A score it reads that is not a whole number of
-- microseconds a request could have is corrupt; the scores it may need are read before anything is
-- written, so that a corrupt one fails the decision with nothing written.
local function slog(key, P, x, cost, now, j, take, report, read)
  local tonumber, format, floor = tonumber, string.format, math.floor
  local EXACT = 9007199254740992         -- 2^53: integers up to it are exact in a double
  local CHUNK = 1000                     -- members per ZADD
  local rate, span = P[x] + 0, P[x + 1] * 1000
  local cut = format('%d', now - span)
  local live = '(' .. cut -- members newer than now - span (cut) still count
  local count = read
  if count == nil then
    count = redis.pcall('ZCOUNT', key, live, '+inf')
    if type(count) == 'table' then return nil, count end -- WRONGTYPE
  end
  local counted = count
  local allowed, retry, over = true, 0, count + cost - rate
  if cost > rate then
    allowed, retry = false, -1
  elseif over > 0 then
    -- The over-th oldest live request must age out first.
    local r = redis.call('ZRANGEBYSCORE', key, live, '+inf', 'WITHSCORES', 'LIMIT', over - 1, 1)
    local t = tonumber(r[2])
    if not (t and t == floor(t) and t > -EXACT and t < EXACT) then
      return nil, redis.error_reply('CORRUPTSTATE ' .. j)
    end
    allowed, retry = false, t + span - now
  end
  local last -- the newest request's time, for the reset
  if allowed and take then
    -- Members are "<now>#<k>", k counting on from the live count: at one instant, under one
    -- window, that count only grows by what each admitted call adds (the removal below never
    -- touches a live member), so the names are new, and no ZCOUNT of this instant's members is
    -- needed. A name already taken (calls at one instant under different windows, whose removals
    -- differ) is seen in ZADD's answer, the members it added: the call then goes on counting until
    -- it has added cost members. Earlier versions named members "<now>:<k>", never equal to these.
    -- At most CHUNK members per ZADD: unpack of a long table passes Lua's stack. ZADD comes first:
    -- Redis refuses a script's first write when it is out of memory (maxmemory with noeviction),
    -- but lets any write through once the script has written.
    local at, added = format('%d', now), 0
    if cost == 1 then -- the usual cost: one member, with no table of arguments to build and unpack
      added = redis.pcall('ZADD', key, at, format('%s#%d', at, count + 1))
      if type(added) == 'table' then return nil, added end -- an error: ZADD answers an integer
    else
      local n, args = 0, {}
      for i = 1, cost do
        args[n + 1], args[n + 2], n = at, format('%s#%d', at, count + i), n + 2
        if n == 2 * CHUNK or i == cost then
          local ok = redis.pcall('ZADD', key, unpack(args, 1, n))
          if type(ok) == 'table' then return nil, ok end -- an error: ZADD answers an integer
          added, n = added + ok, 0
        end
      end
    end
    local k = count + cost
    while added < cost do -- a name taken: the next ones, one at a time
      k = k + 1
      added = added + redis.call('ZADD', key, at, format('%s#%d', at, k))
    end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
    redis.call('PEXPIREAT', key, format('%d', math.ceil((now + span) / 1000)))
    count, last = count + cost, now
  elseif count > 0 and (report or not allowed) then
    local r = redis.call('ZREVRANGEBYSCORE', key, '+inf', '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if r[2] then
      last = tonumber(r[2])
      if not (last and last == floor(last) and last > -EXACT and last < EXACT) then
        return nil, redis.error_reply('CORRUPTSTATE ' .. j)
      end
    end
  end
  if report then
    local reset, left = 0, rate - count
    if count > 0 and last then reset = last + span - now end
    return allowed, counted, left, retry, reset
  end
  return allowed, counted
end
