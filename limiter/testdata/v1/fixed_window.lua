-- fixed_window.lua: fixed-window rate limiting over one or more limits, all or nothing.
--
-- KEYS[i]   state of limit i: a string "<window index>:<count>" that expires at its window's end;
--           windows are aligned to the Unix epoch (window index = floor(now_ms / window_ms))
-- ARGV[1]   cost: how many requests this call asks for, an integer >= 1
-- ARGV[2]   "1" to peek (decide, write nothing, report the state before the cost), "0" to consume
-- ARGV[3]   now in integer microseconds since the Unix epoch; "0" to use the server's TIME (only
--           tests pass a time)
-- ARGV[2+2i], ARGV[3+2i]   limit i: requests per window, window length in integer milliseconds
-- Reply     {allowed, then for each limit i: allowed_i, remaining_i, retry_after_us_i, reset_after_us_i}
--           allowed is 1 when every limit admits the cost; only then, and only when consuming, is
--           anything written. A denied call changes nothing. retry_after_us_i is -1 when the cost is
--           larger than limit i and can never be admitted. Malformed state is treated as empty.

local cost = tonumber(ARGV[1])
local peek = ARGV[2] == '1'
local now = tonumber(ARGV[3])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local now_ms = math.floor(now / 1000)

-- First pass: decide every limit.
local all = 1
local st = {}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[2 + 2 * i])
  local window = tonumber(ARGV[3 + 2 * i])
  local win = math.floor(now_ms / window)
  local window_end = (win + 1) * window -- ms

  local count = 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local w, c = string.match(v, '^(%d+):(%d+)$')
    if w and tonumber(w) == win then count = tonumber(c) end
  end

  local allowed, retry = 1, 0
  if cost > rate then
    allowed, retry, all = 0, -1, 0
  elseif count + cost > rate then
    allowed, retry, all = 0, window_end * 1000 - now, 0
  end
  st[i] = {rate = rate, win = win, window_end = window_end, count = count, allowed = allowed, retry = retry}
end

-- Second pass: consume only if every limit allowed, then report each limit as it now stands.
local consume = all == 1 and not peek
local out = {all}
for i = 1, #KEYS do
  local s = st[i]
  local used = s.count
  if consume then
    used = s.count + cost
    redis.call('SET', KEYS[i], string.format('%d:%d', s.win, used), 'PXAT', string.format('%d', s.window_end))
  end
  local reset = 0
  if used > 0 then reset = s.window_end * 1000 - now end
  out[#out + 1] = s.allowed
  out[#out + 1] = math.max(0, s.rate - used)
  out[#out + 1] = s.retry
  out[#out + 1] = reset
end
return out
