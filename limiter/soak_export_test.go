package limiter

// What the soak test inspects of a Limiter's in-process state (this file is compiled into the
// package's tests only).

// DenyCacheSize returns the entries l's deny cache holds by its map and by its recency list (they
// must agree), and its bound; all zero without WithDenyCache.
func DenyCacheSize(l *Limiter) (mapped, listed, bound int) {
	if l.denied == nil {
		return 0, 0, 0
	}
	l.denied.mu.Lock()
	defer l.denied.mu.Unlock()
	return l.denied.entries.size()
}

// LocalFallbackSize returns the identifiers (each with its limits) l's local fallback keeps state
// for, by its map and by its recency list, and its bound; all zero without FailLocal.
func LocalFallbackSize(l *Limiter) (mapped, listed, bound int) {
	if l.fail.local == nil {
		return 0, 0, 0
	}
	l.fail.local.mu.Lock()
	defer l.fail.local.mu.Unlock()
	return l.fail.local.states.size()
}

func (c *lru[K, V]) size() (mapped, listed, bound int) {
	return len(c.entries), c.order.Len(), c.max
}
