package limiter

import (
	"sync/atomic"
	"time"
)

// argCacheSlots is how many limits an argCache holds.
const argCacheSlots = 64

// maxLimitArgs is the most ARGV values an algorithm takes per limit.
const maxLimitArgs = 3

// argCache holds the ARGV values of the limits a limiter decided lately, boxed: a value in an
// interface costs an allocation (an integer past 255 does), so a limit decided again reuses the
// values of the last time instead of boxing them for every decision. It is direct-mapped: a limit
// has one slot, by a hash of what its values depend on (Rate, Period and Burst; not Name or
// Shadow), and a limit missing from it takes that slot. Its memory is bounded, whatever limits
// callers pass. An entry is never changed once stored, so a command still holding its values (one
// that gave up waiting and is sent later) is never affected. Safe for concurrent use.
type argCache [argCacheSlots]atomic.Pointer[limitArgs]

// limitArgs is one limit's ARGV values, for an algorithm.
type limitArgs struct {
	rate, burst int64
	period      time.Duration
	vals        [maxLimitArgs]any
	n           int
}

// append appends lim's ARGV values for alg to args.
func (c *argCache) append(args []any, alg *algorithm, lim Limit) []any {
	slot := &c[argSlot(lim)]
	e := slot.Load()
	if e == nil || e.rate != lim.Rate || e.period != lim.Period || e.burst != lim.Burst {
		e = &limitArgs{rate: lim.Rate, period: lim.Period, burst: lim.Burst}
		e.n = len(alg.args(e.vals[:0], lim))
		slot.Store(e)
	}
	return append(args, e.vals[:e.n]...)
}

// argSlot returns lim's slot in an argCache.
func argSlot(lim Limit) int {
	h := uint64(lim.Rate)*0x9e3779b97f4a7c15 ^ uint64(lim.Period)*0xc2b2ae3d27d4eb4f ^ uint64(lim.Burst)*0x165667b19e3779f9
	h ^= h >> 29
	return int(h % argCacheSlots)
}
