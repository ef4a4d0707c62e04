-- lib/idiv.lua: integer division.

-- idiv(a, b) is floor(a / b) for non-negative integers a, b > 0, exact where a double quotient
-- would round.
local floor = math.floor
local function idiv(a, b)
  local q = floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
