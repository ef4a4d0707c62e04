-- fixed_window.lua: fixed-window rate limiting over one or more limits, all or nothing.
--
-- Windows are aligned to the Unix epoch: the window of an instant is [w * window, (w + 1) * window)
-- with w = floor(now_ms / window). The state is a count and the end of the window it was counted
-- in: the count holds until that end. An admitted request adds its cost and moves the end to the
-- end of its own window. So a limit whose period changed (a named limit) keeps the count of a
-- window that has not ended, until that window ends or a request is admitted under the new period.
--
-- KEYS[i]   state of limit i: 15 bytes, struct.pack('>BI7I7', 0xF3, window end in ms, count) (a tag
--           byte, then unsigned big-endian integers), which expires at the window's end. Earlier
--           versions stored "v2:<window end in ms>:<count>", read the same, and before it
--           "<window index>:<count>", the index under the limit's period: it is read as the window
--           of that index. Any other value (or numbers no limit could have written) is corrupt: the
--           call fails with "CORRUPTSTATE <i>" and writes nothing.
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
--           when consuming, is anything written, to each limit that admits it. A denied call changes nothing. retry_after_us_i is -1 when the cost is
--           larger than limit i and can never be admitted.

--#include lib/fixed_window

-- The usual cost ("1") and now ("0": the server's TIME) are compared, not converted.
local cost, now = ARGV[1], ARGV[3]
return decide(fixed, 2, 0, #KEYS, ARGV, 4, cost == '1' and 1 or cost + 0, ARGV[2], now == '0' and 0 or now + 0)
