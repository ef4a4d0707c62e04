package limiter

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// WithDenyCache keeps, in this process, up to maxEntries recent refusals, and refuses the same
// request (same identifier, limits and cost) again without asking Redis until the moment Redis
// said it could be admitted. The Result then has Source SourceDenyCache, the Remaining Redis
// reported, and RetryAfter counting down.
//
// It changes no decision. A refusal changes nothing in Redis, and other processes can only use
// the limit up, never give capacity back, so Redis would refuse the request until then too; the
// cached moment is taken from before the request was sent, so the cache stops refusing a little
// early, never late. Two things can give capacity back: Reset (through this Limiter it clears the
// cache for that identifier; through another process it is not seen here until the entry ends),
// and a Redis failover that loses recent writes. What it saves is the round trip, and the load on
// Redis, for clients that keep knocking while refused: with WithFailOpen, even while Redis is
// down, they are still refused.
//
// maxEntries must be at least 1; the least recently used entry makes room for a new one.
func WithDenyCache(maxEntries int) Option {
	return optionFunc(func(l *Limiter) {
		var err error
		l.denied, err = newDenyCache(maxEntries)
		l.optErr = cmp.Or(l.optErr, err)
	})
}

// denyCache holds recent refusals, least recently used first to go.
type denyCache struct {
	mu      sync.Mutex
	entries lru[*denied]
}

type denied struct {
	id      string // the caller's identifier, for Reset
	n       int64
	limits  []Limit
	results []Result
	at      int64 // when the request was sent, local nanoseconds
	until   int64 // when Redis could admit it, local nanoseconds
}

func newDenyCache(max int) (*denyCache, error) {
	if max < 1 {
		return nil, fmt.Errorf("limiter: WithDenyCache(%d): want at least one entry", max)
	}
	return &denyCache{entries: newLRU[*denied](max)}, nil
}

// cacheKey names a request's entry: its Redis keys, one per limit.
func cacheKey(keys []string) string {
	if len(keys) == 1 {
		return keys[0]
	}
	return strings.Join(keys, "\x00")
}

// lookup fills out from a live entry for the same keys, limits and cost, and reports whether it did.
func (c *denyCache) lookup(keys []string, n int64, limits []Limit, now int64, out []Result) bool {
	k := cacheKey(keys)
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.entries.get(k)
	if !ok {
		return false
	}
	if now >= d.until {
		c.entries.delete(k)
		return false
	}
	if d.n != n || !slices.Equal(d.limits, limits) {
		return false
	}
	elapsed := time.Duration(now - d.at)
	for i, r := range d.results {
		r.Source = SourceDenyCache
		if (!r.Allowed || r.Shadow) && r.RetryAfter != InfDuration {
			r.RetryAfter = max(r.RetryAfter-elapsed, time.Microsecond)
		}
		r.ResetAfter = max(r.ResetAfter-elapsed, 0)
		out[i] = r
	}
	return true
}

// remember keeps the refusal in out of a request sent at at, unless it can never be admitted.
func (c *denyCache) remember(id string, keys []string, n int64, limits []Limit, at int64, out []Result) {
	var wait time.Duration
	for _, r := range out {
		if !r.Allowed {
			wait = max(wait, r.RetryAfter)
		}
	}
	if wait == 0 || wait == InfDuration {
		return
	}
	d := &denied{id: id, n: n, limits: slices.Clone(limits), results: slices.Clone(out), at: at, until: at + int64(wait)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.put(cacheKey(keys), d)
}

// forget drops every entry of the identifier id.
func (c *denyCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries.deleteIf(func(d *denied) bool { return d.id == id })
}

// epoch anchors local instants: time.Since reads the monotonic clock.
var epoch = time.Now()

// localNow is the deny cache's clock, in nanoseconds: the injected clock's, or the monotonic one.
func (l *Limiter) localNow() int64 {
	if l.clock != nil {
		return l.clock().UnixNano()
	}
	return int64(time.Since(epoch))
}
