-- lib/batch.lua: the loop of the batch scripts (token_bucket_batch.lua, ...), which make many
-- independent decisions in one call, each with the algorithm's own decision function, the one its
-- single-call script runs.
--#include lib/limit

-- batch(alg, params) makes every decision ARGV holds, in order, and returns their replies, packed
-- in one string. ARGV is: t, the number of distinct requests; then each request: m (its limits),
-- cost, flags, now, then params values per limit; then, per decision, the request it makes (1 to
-- t). A decision's keys are the next m of KEYS. A request whose now is "0" is made at the
-- server's TIME, read once for the whole call (by the first decision that needs it).
--
-- The reply is, per decision in order, the single script's reply as byte 0, its length n (two
-- bytes, big-endian) and n big-endian doubles (each an integer, exact below 2^53); or its error
-- reply as byte 1, the message's length (two bytes) and the message. One string costs Redis less
-- to build, and the client less to read, than an array of arrays. A server whose Lua lacks the
-- struct library (a stand-in such as miniredis) answers text instead: "t", then per decision
-- "i<integer>,<integer>,...;" or "e<length>:<message>".
local function batch(alg, params)
  local tonumber = tonumber
  local nargs, t = #ARGV, tonumber(ARGV[1])
  -- Each request's values, read once: its limits, cost, flags, now, and where its limits start.
  -- Its limits' parameters are taken as numbers here, once, into P (at their places in ARGV), not
  -- by each of its decisions.
  local ms, costs, flags, nows, starts, P = {}, {}, {}, {}, {}, {}
  local a = 2
  for r = 1, t do
    local m = tonumber(ARGV[a])
    ms[r], costs[r], flags[r], nows[r], starts[r] = m, tonumber(ARGV[a + 1]), ARGV[a + 2], tonumber(ARGV[a + 3]), a + 4
    for x = a + 4, a + 3 + params * m do P[x] = ARGV[x] + 0 end
    a = a + 4 + params * m
  end
  local out, fmt, k, server, o = {}, {}, 0, 0, 0
  local pack = struct and struct.pack -- decide packs a one-limit reply itself
  if not struct then out[1], o = 't', 1 end
  local req = {} -- request numbers by their text in ARGV: each text is taken as a number once
  for i = 1, nargs - a + 1 do
    local q = ARGV[a + i - 1]
    local r = req[q]
    if not r then
      r = q + 0
      req[q] = r
    end
    local m, now, v, bad, _ = ms[r], nows[r], nil, nil, nil
    if now == 0 then
      v, server, bad = decide(alg, params, k, m, P, starts[r], costs[r], flags[r], server, pack)
    else
      v, _, bad = decide(alg, params, k, m, P, starts[r], costs[r], flags[r], now, pack)
    end
    local e = bad and v.err
    if not bad and pack and m == 1 then
      out[i] = v -- packed by decide
    elseif not struct then
      if e then
        out[o + i] = 'e' .. #e .. ':' .. e
      else
        local s = {}
        for j = 1, #v do s[j] = string.format('%d', v[j]) end
        out[o + i] = 'i' .. table.concat(s, ',') .. ';'
      end
    elseif e then
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
