package limiter

// What the tests of package limiter_test use of the package's insides.

// DefaultCooldown is the cooldown of a limiter without WithCooldown.
const DefaultCooldown = defaultCooldown
