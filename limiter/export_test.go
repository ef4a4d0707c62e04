package limiter

import "github.com/gatehouse/gatehouse/internal/coalesce"

// What the tests of package limiter_test use of the package's insides.

// DefaultCooldown is the cooldown of a limiter without WithCooldown.
const DefaultCooldown = defaultCooldown

// CoalesceStats returns what a coalescing limiter sent, for tests that must show that its
// decisions shared calls; false for a limiter that does not coalesce.
func CoalesceStats(l *Limiter) (coalesce.Stats, bool) {
	if l.batch == nil {
		return coalesce.Stats{}, false
	}
	return l.batch.Stats(), true
}
