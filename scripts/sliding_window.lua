-- sliding_window.lua: sliding-window-counter rate limiting over one or more limits, all or nothing.
--
-- The count over the last window length is estimated from two epoch-aligned fixed windows: the
-- current one, plus the previous one weighted by the part of it still inside the sliding span,
--   weighted = prev * (window - elapsed) / window + cur
-- computed in integers (scaled by window, never floored), so rounding never lets a request through.
--
-- The state holds the counts with the window they were made in (its start and length), and is
-- always weighed over those windows. A request admitted in the window after the stored one moves
-- the current count to the previous one. One admitted under another period (a named limit whose
-- period changed) starts its own window's count with the stored estimate, rounded up.
--
-- KEYS[i]   state of limit i: "v2:<window start ms>:<window ms>:<current count>:<previous count>",
--           expiring at the end of the window after its own (the count is then the previous one).
--           Earlier versions stored "<window index>:<current count>:<previous count>", the index
--           under the limit's period: it is read as that window. Any other value (or numbers no
--           limit could have written) is corrupt: the call fails with "CORRUPTSTATE <i>" and
--           writes nothing.
-- ARGV[1]   cost: how many requests this call asks for, an integer >= 1
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume;
--           then, when any limit is in shadow mode, one character per limit: "s" for shadow mode
--           (its refusal does not refuse the call; it counts the cost only when it admits it), "-"
--           to enforce
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: requests per window, window length in integer milliseconds
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           allowed is 1 when every limit not in shadow mode admits the cost; only then, and only
--           when consuming, is anything written, to each limit that admits it. A denied call changes nothing. retry_after_us_i is when the weighted
--           count will have fallen enough for this cost (not the end of the window), or -1 when the
--           cost is larger than limit i and can never be admitted.
--
-- The caller keeps rate * window <= 2^50, so that every product below, of counts made under some
-- limit by that limit's window, stays an exact integer in a double.

--#include lib/sliding_window

-- The usual cost ("1") and now ("0": the server's TIME) are compared, not converted.
local cost, now = ARGV[1], ARGV[3]
return decide(sliding, 2, 0, #KEYS, 4, cost == '1' and 1 or cost + 0, ARGV[2], now == '0' and 0 or now + 0)
