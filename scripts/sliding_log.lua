-- sliding_log.lua: exact sliding-window rate limiting over one or more limits, all or nothing.
--
-- Each admitted request is one member of a sorted set scored by its time in microseconds; a request
-- counts while now - its time < window. Memory is bounded by the limit: the set never holds more
-- than the limit's requests plus the ones that have aged out since the last admitted call, which
-- that call removes.
--
-- KEYS[i]   state of limit i: a sorted set, member "<time>#<sequence>" (earlier versions:
--           "<time>:<sequence>"), score = time in microseconds; it expires one window after its
--           newest member
-- ARGV[1]   cost: how many requests this call asks for, an integer >= 1 (one member each)
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume;
--           then, when any limit is in shadow mode, one character per limit: "s" for shadow mode
--           (its refusal does not refuse the call; it counts the cost only when it admits it), "-"
--           to enforce
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: requests per window, window length in integer milliseconds
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           allowed is 1 when every limit not in shadow mode admits the cost; only then, and only
--           when consuming, is anything written, to each limit that admits it. A denied call changes nothing. retry_after_us_i is when enough of the
--           oldest requests will have aged out for this cost, or -1 when the cost is larger than
--           limit i and can never be admitted.
--
-- A score that is not a whole number of microseconds, where the script reads one, is corrupt: the
-- call fails with "CORRUPTSTATE <i>" and writes nothing. (A key of another type fails with
-- WRONGTYPE, which the caller reports the same way.)

--#include lib/sliding_log

-- The usual cost ("1") and now ("0": the server's TIME) are compared, not converted.
local cost, now = ARGV[1], ARGV[3]
return decide(slog, 2, 0, #KEYS, ARGV, 4, cost == '1' and 1 or cost + 0, ARGV[2], now == '0' and 0 or now + 0)
