package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// The stand-in's Lua has no struct library, which the batch scripts pack their replies with and
// the limiter's state is written with on Redis: every algorithm, coalescing 32 concurrent callers'
// decisions, works on it (the text the scripts fall back to) and admits exactly its limit. Real
// Redis is what the limiter's own tests prove it on; this keeps the demo's stand-in working.
func TestCoalescingOnStandIn(t *testing.T) {
	s, err := startStandIn()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), PoolSize: 64})
	defer c.Close()
	calls := &redistest.Calls{}
	c.AddHook(calls)
	ctx := context.Background()
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow, limiter.SlidingLog} {
		t.Run(alg.String(), func(t *testing.T) {
			lim, err := limiter.New(c, alg, limiter.WithKeyPrefix("standin:"+alg.String()+":"))
			if err != nil {
				t.Fatal(err)
			}
			const callers, each, keys, rate = 32, 20, 4, 100
			limit := limiter.PerHour(rate)
			before := calls.N.Load()
			var admitted [keys]atomic.Int64
			var wg sync.WaitGroup
			for g := range callers {
				wg.Go(func() {
					for i := range each {
						k := (g + i) % keys
						r, err := lim.Allow(ctx, "id"+string(rune('a'+k)), limit)
						if err != nil {
							t.Error(err)
							return
						}
						if r.Allowed {
							admitted[k].Add(1)
						}
					}
				})
			}
			wg.Wait()
			for k := range keys {
				if n := admitted[k].Load(); n != rate {
					t.Errorf("identifier %d: %d admitted of %d, want %d", k, n, callers*each/keys, rate)
				}
			}
			if n := calls.N.Load() - before; n >= callers*each {
				t.Errorf("%d commands for %d decisions: no call carried several, so no batch script ran", n, callers*each)
			}
		})
	}
}
