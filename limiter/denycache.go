package limiter

import (
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
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
// cache for that identifier, refusals of requests under way as it runs included; through another
// process it is not seen here until the entry ends),
// and a Redis failover that loses recent writes. What it saves is the round trip, and the load on
// Redis, for clients that keep knocking while refused: with FailOpen, even while Redis is
// down, they are still refused.
//
// maxEntries must be at least 1 (New returns an error otherwise); the least recently used entry
// makes room for a new one.
func WithDenyCache(maxEntries int) Option {
	return optionFunc(func(c *config) { c.denyCache, c.denyCached = maxEntries, true })
}

// denyCache holds recent refusals, least recently used first to go.
type denyCache struct {
	mu      sync.Mutex
	entries lru[entryKey, *denied]
	seed    maphash.Seed  // of the identifiers' hashes
	resets  atomic.Uint64 // how many times forget ran: a refusal asked for before one is not kept
}

type denied struct {
	id      uint64 // the caller's identifier, hashed, for Reset
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
	return &denyCache{entries: newLRU[entryKey, *denied](max), seed: maphash.MakeSeed()}, nil
}

// lookup fills r.out from a live entry for the same keys, limits and cost at now (local
// nanoseconds), and reports whether it did.
func (c *denyCache) lookup(r *request, keys []string, now int64) bool {
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
	if d.n != r.n || !slices.Equal(d.limits, r.limits) {
		return false
	}
	elapsed := time.Duration(now - d.at)
	for i, res := range d.results {
		res.Source = SourceDenyCache
		if (!res.Allowed || res.Shadow) && res.RetryAfter != InfDuration {
			res.RetryAfter = max(res.RetryAfter-elapsed, time.Microsecond)
		}
		res.ResetAfter = max(res.ResetAfter-elapsed, 0)
		r.out[i] = res
	}
	return true
}

// epoch returns what remember needs to know that no Reset came between: take it before asking
// Redis.
func (c *denyCache) epoch() uint64 { return c.resets.Load() }

// remember keeps the refusal in r.out of a request sent at at (local nanoseconds), whose epoch
// was taken before it was sent, unless it can never be admitted, or a Reset (forget) came since
// the epoch: Redis may have refused it before the reset, which the refusal would then outlive.
// The entry holds a hash of the identifier, not the identifier: nothing of r that lives on its
// caller's stack may be kept (see request).
func (c *denyCache) remember(r *request, keys []string, at int64, epoch uint64) {
	var wait time.Duration
	for _, res := range r.out {
		if !res.Allowed {
			wait = max(wait, res.RetryAfter)
		}
	}
	if wait == 0 || wait == InfDuration {
		return
	}
	d := &denied{id: maphash.String(c.seed, r.key), n: r.n, limits: slices.Clone(r.limits), results: slices.Clone(r.out),
		at: at, until: at + int64(wait)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.resets.Load() != epoch {
		return
	}
	c.entries.put(cacheKey(keys), d)
}

// forget drops every entry of the identifier id, and of any identifier whose hash is the same
// (harmless: a dropped entry only sends the request to Redis again), and keeps out the refusals
// of requests asked for before it (see remember). Reset calls it once Redis has deleted the state.
func (c *denyCache) forget(id string) {
	h := maphash.String(c.seed, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resets.Add(1)
	c.entries.deleteIf(func(d *denied) bool { return d.id == h })
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
