-- lib/limit.lua: what every rate-limiting decision shares, in a single call (token_bucket.lua,
-- ...) and in a batch (token_bucket_batch.lua, ...). A decision is a function of the algorithm's
-- part (lib/token_bucket, ...) taking its place in KEYS and ARGV and its cost, flags and instant;
-- nothing here reads ARGV.
--#include lib/time_us

local EXACT = 9007199254740992 -- 2^53: integers up to it are exact in a double

-- Lookups done once per call, not once per use.
local tonumber, format, match, byte, type = tonumber, string.format, string.match, string.byte, type
local pcall = redis.pcall

-- peeking(flags) reports whether a decision only peeks: "1" first in its flags.
local function peeking(flags) return byte(flags) == 49 end

-- shadow(flags, j) reports whether limit j is in shadow mode ('s' in its flag): its refusal does
-- not refuse the decision.
local function shadow(flags, j) return byte(flags, 1 + j) == 115 end

-- corrupt(j) is the reply for a state of limit j that no limit could have written.
local function corrupt(j) return redis.error_reply('CORRUPTSTATE ' .. j) end

-- failed(v) reports whether v, a redis.pcall reply, is an error (WRONGTYPE, OOM, ...), which the
-- decision then answers in place of its reply: one decision's error never fails the others of a
-- batch.
local function failed(v) return type(v) == 'table' and v.err ~= nil end

-- get(key) returns the string in key, or false when there is none; or nil and the error reply
-- (WRONGTYPE: a key of another type).
local function get(key)
  local v = pcall('GET', key)
  if type(v) == 'table' then return nil, v end -- GET answers a string, false, or an error
  return v
end

-- report(out, allowed, remaining, retry, reset) appends one limit's part of the reply to out:
-- allowed (a boolean) as 1 or 0, remaining (0 when below), retry and reset.
local function report(out, allowed, remaining, retry, reset)
  local n = #out
  if remaining < 0 then remaining = 0 end
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = allowed and 1 or 0, remaining, retry, reset
end

-- A decision is made by two functions of the algorithm's part:
--
--   read(key, x, cost, now, j, peek) reads limit j's state in key (its parameters at ARGV[x], ...)
--     and decides cost against it at now, writing nothing. It returns whether the limit admits the
--     cost, the retry time (µs; 0 when it admits, -1 never), then what report needs (the limit's
--     parameters and state); or nil and the error reply of the decision.
--   report(out, take, key, cost, now, j, allowed, retry, ...) takes the cost from the limit when
--     take says so, writing its state to key, and appends the limit's part of the reply to out. It
--     returns the error reply of a write Redis refused, or nil.

-- settle finishes a decision of one limit with finish, the algorithm's report, from read's
-- results: no table between read and report.
local function settle(finish, key, cost, peek, flags, now, allowed, retry, ...)
  if allowed == nil then return retry end
  local out = {(allowed or shadow(flags, 1)) and 1 or 0}
  return finish(out, allowed and not peek, key, cost, now, 1, allowed, retry, ...) or out
end

local function pack(...) return {n = select('#', ...), ...} end

-- decide makes one decision of m limits, all or nothing, with the algorithm's read and report
-- (finish): limit j's key is KEYS[k + j] and its parameters (params values each) start at
-- ARGV[a + params(j - 1)]; cost, flags and now (µs) as the scripts' ARGV[1..3] give them. The
-- limits that enforce must all admit the cost for any to take it; then each limit that admits it
-- does. It returns the reply {allowed, then allowed_j, remaining_j, retry_j, reset_j per limit},
-- or the first error reply: a limit's read failing fails the decision before anything is written.
local function decide(read, finish, params, k, m, a, cost, flags, now)
  local peek = peeking(flags)
  if m == 1 then
    local key = KEYS[k + 1]
    return settle(finish, key, cost, peek, flags, now, read(key, a, cost, now, 1, peek))
  end
  local all, st = 1, {}
  for j = 1, m do
    local s = pack(read(KEYS[k + j], a + params * (j - 1), cost, now, j, peek))
    if s[1] == nil then return s[2] end
    if not s[1] and not shadow(flags, j) then all = 0 end
    st[j] = s
  end
  local take = all == 1 and not peek
  local out = {all}
  for j = 1, m do
    local s = st[j]
    local err = finish(out, take and s[1], KEYS[k + j], cost, now, j, unpack(s, 1, s.n))
    if err then return err end
  end
  return out
end
