-- lib/batch.lua: the loop of the batch scripts (token_bucket_batch.lua, ...), which make many
-- independent decisions in one call, each with the algorithm's own decision function, the one its
-- single-call script runs.
--#include lib/limit

-- batch(alg, params) makes every decision ARGV holds, in order, and returns their replies, in
-- order. Each decision in ARGV is: m (its limits), cost, flags, now, then params values per limit;
-- its keys are the next m of KEYS. A decision whose now is "0" is made at the server's TIME, read
-- once for the whole call (by the first such decision).
local function batch(alg, params)
  local tonumber = tonumber
  local out, i, k, a, nargs, server = {}, 0, 0, 1, #ARGV, 0
  while a <= nargs do
    local m, now = tonumber(ARGV[a]), tonumber(ARGV[a + 3])
    i = i + 1
    if now == 0 then
      out[i], server = decide(alg, params, k, m, a + 4, tonumber(ARGV[a + 1]), ARGV[a + 2], server)
    else
      out[i] = decide(alg, params, k, m, a + 4, tonumber(ARGV[a + 1]), ARGV[a + 2], now)
    end
    k, a = k + m, a + 4 + params * m
  end
  return out
end
