-- lib/limit.lua: what every rate-limiting decision shares, in a single call (token_bucket.lua,
-- ...) and in a batch (token_bucket_batch.lua, ...).
--
-- An algorithm's part (lib/token_bucket, ...) defines one function that decides a cost against
-- one limit:
--
--   alg(key, P, x, cost, now, j, take, report, read) reads limit j's state in key (its
--     parameters at P[x], ..., numbers or the numeric strings of ARGV, which it takes by
--     arithmetic), unless read is what an earlier call of it read there (not nil), and
--     decides cost against it at now. When take is true and the limit admits the cost, it takes
--     it, writing the state. It returns whether the limit admits the cost and what it read, and
--     when report is true the limit's part of the reply after them: the requests or tokens left
--     (below 0 is read as 0), the retry time and the reset time (µs). Or it returns nil and the
--     error reply of the decision (CORRUPTSTATE <j>, WRONGTYPE, a refused write).
--
-- Quotients of integers are exact as the parts take them: ceil(a / b) for integers 0 <= a < 2^53
-- and b >= 1 (a quotient that is not whole is at least 1/b from the next integer, which is more
-- than a double's rounding of it, at most a / b * 2^-53, when a < 2^53), a floor as
-- ceil((a + 1) / b) - 1, and floor(a / b) where a + b < 2^53 (a quotient is then at least 1/b
-- below the next integer, more than its rounding).
--
-- A script runs its whole text on every call, so each function it defines (a closure, and each
-- upvalue it captures) costs Redis time on every call, whether it is used or not: the parts define
-- few functions, and look up what they use inside them. Numbers in ARGV are taken by arithmetic
-- (ARGV[i] + 0), as TIME's are: tonumber of a string parses it twice. A batch takes a request's
-- numbers once for all its decisions, and each call to a C function (type, rawget, ...) costs
-- about as much as a Lua function's call: the usual path makes few. docs/runtime.md has the
-- figures.

-- Lua's struct library, or nil on a server whose Lua lacks it (a stand-in such as miniredis): read
-- once per call, not by each decision (a global Redis does not define cannot be read as one).
local struct = rawget(_G, 'struct')

-- decide makes one decision of m limits, all or nothing, with the algorithm's function alg: limit
-- j's key is KEYS[k + j] and its parameters (params values each) start at P[a + params(j - 1)];
-- cost and flags as the scripts' ARGV[1..2] give them ("1" first in flags to peek; then "s" in
-- place j + 1 for a limit in shadow mode, whose refusal does not refuse the decision); now in
-- integer microseconds since the Unix epoch, or 0 for the server's TIME, read here. The limits
-- that enforce must all admit the cost for any to take it; then each limit that admits it does.
-- It returns the reply {allowed, then allowed_j, remaining_j, retry_j, reset_j per limit}, or the
-- first error reply (a limit's read failing fails the decision before anything is written); the
-- instant it decided at; and true after an error reply. Given pack (struct.pack: lib/batch's), it
-- returns a one-limit decision's reply packed as lib/batch sends it, not as a table.
local function decide(alg, params, k, m, P, a, cost, flags, now, pack)
  local peek = flags ~= '0' and string.byte(flags) == 49 -- "0", the usual flags, compares at once
  if now == 0 then
    local t = redis.call('TIME')
    now = t[1] * 1000000 + t[2] -- exact for integers
  end
  if m == 1 then
    local ok, v, left, retry, reset = alg(KEYS[k + 1], P, a, cost, now, 1, not peek, true)
    if ok == nil then return v, now, true end
    if left < 0 then left = 0 end
    local all = (ok or string.byte(flags, 2) == 115) and 1 or 0
    if pack then return pack('>BHddddd', 0, 5, all, ok and 1 or 0, left, retry, reset), now end
    -- The reply made at once: a table grown one by one is copied as it grows.
    return {all, ok and 1 or 0, left, retry, reset}, now
  end
  -- Several limits: each is read and decided first, writing nothing, then decided again from what
  -- it read (nothing ran in between) to take the cost and report.
  local byte = string.byte
  local out, all, read = {0}, 1, {}
  for j = 1, m do
    local ok, v = alg(KEYS[k + j], P, a + params * (j - 1), cost, now, j, false, false, nil)
    if ok == nil then return v, now, true end
    if not ok and byte(flags, 1 + j) ~= 115 then all = 0 end
    read[j] = v
  end
  out[1] = all
  local take = all == 1 and not peek
  for j = 1, m do
    local ok, err, left, retry, reset = alg(KEYS[k + j], P, a + params * (j - 1), cost, now, j, take, true, read[j])
    if ok == nil then return err, now, true end
    if left < 0 then left = 0 end
    local n = 4 * j - 3
    out[n + 1], out[n + 2], out[n + 3], out[n + 4] = ok and 1 or 0, left, retry, reset
  end
  return out, now
end
