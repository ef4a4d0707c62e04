-- lib/batch.lua: the loop of the batch scripts (token_bucket_batch.lua, ...), which make many
-- independent decisions in one call, each with the algorithm's own decision function, the one its
-- single-call script runs.
--#include lib/limit

-- batch(alg, params) makes every decision ARGV holds, in order, and returns their replies, packed
-- in one string. ARGV is: t, the number of distinct requests; then each request: m (its limits),
-- cost, flags, now, then params values per limit; then, per decision, the request it makes (1 to
-- t). A decision's keys are the next m of KEYS. A request whose now is "0" is made at the
-- server's TIME, read once for the whole call.
--
-- The reply is, per decision in order, the single script's reply as byte 0, its length n (two
-- bytes, big-endian) and n big-endian doubles (each an integer, exact below 2^53); or its error
-- reply as byte 1, the message's length (two bytes) and the message. One string costs Redis less
-- to build, and the client less to read, than an array of arrays.
local function batch(alg, params)
  local tonumber, pack = tonumber, struct.pack
  local nargs, t = #ARGV, tonumber(ARGV[1])
  -- Each request's values, read once: its limits, cost, flags, now, and where its limits start.
  local ms, costs, flags, nows, starts = {}, {}, {}, {}, {}
  local a, server = 2, nil
  for r = 1, t do
    local m, now = tonumber(ARGV[a]), tonumber(ARGV[a + 3])
    if now == 0 then
      if not server then server = clock_us('0') end
      now = server
    end
    ms[r], costs[r], flags[r], nows[r], starts[r] = m, tonumber(ARGV[a + 1]), ARGV[a + 2], now, a + 4
    a = a + 4 + params * m
  end
  local out, fmt, k = {}, {}, 0
  for i = 1, nargs - a + 1 do
    local r = tonumber(ARGV[a + i - 1])
    local m = ms[r]
    local v = decide(alg, params, k, m, starts[r], costs[r], flags[r], nows[r])
    local e = v.err
    if e then
      if #e > 65535 then e = string.sub(e, 1, 65535) end
      out[i] = pack('>BH', 1, #e) .. e
    else
      local n = #v
      local f = fmt[n]
      if not f then
        f = '>BH' .. string.rep('d', n)
        fmt[n] = f
      end
      out[i] = pack(f, 0, n, unpack(v))
    end
    k = k + m
  end
  return table.concat(out)
end
