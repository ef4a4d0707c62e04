-- clock.lua: the server's clock, in integer microseconds since the Unix epoch.
--
-- KEYS[1]  optional; only chooses the node that answers on a cluster (the key is not read or written)
-- ARGV     none
-- Reply    integer: seconds * 1000000 + microseconds, from TIME
--
-- Used to measure the offset between a host's clock and the server's, and by tests of the script runtime.

local t = redis.call('TIME')
return t[1] * 1000000 + t[2] -- TIME's strings are coerced by the arithmetic, exactly
