package limiter

import "github.com/gatehouse/gatehouse/internal/coalesce"

// What the tests of package limiter_test use of the package's insides.

// DefaultCooldown is the cooldown of a limiter without WithCooldown.
const DefaultCooldown = defaultCooldown

// CoalesceStats returns what a limiter made WithCoalescing sent, for tests that must show that its
// decisions shared calls; false for a limiter without it.
func CoalesceStats(l *Limiter) (coalesce.Stats, bool) {
	if l.batch == nil {
		return coalesce.Stats{}, false
	}
	return l.batch.Stats(), true
}
