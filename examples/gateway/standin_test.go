package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

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
	calls := &evalCounter{}
	c.AddHook(calls)
	ctx := context.Background()
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow, limiter.SlidingLog} {
		t.Run(alg.String(), func(t *testing.T) {
			lim, err := limiter.New(c, alg, limiter.WithCoalescing(), limiter.WithKeyPrefix("standin:"+alg.String()+":"))
			if err != nil {
				t.Fatal(err)
			}
			const callers, each, keys, rate = 32, 20, 4, 100
			limit := limiter.PerHour(rate)
			before := calls.n.Load()
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
			if n := calls.n.Load() - before; n >= callers*each {
				t.Errorf("%d script calls for %d decisions: none carried several, so no batch script ran", n, callers*each)
			}
		})
	}
}

// evalCounter is a go-redis hook counting the EVALSHA commands a client sends.
type evalCounter struct{ n atomic.Int64 }

func (h *evalCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *evalCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}

func (h *evalCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (h *evalCounter) count(cmd redis.Cmder) {
	if cmd.Name() == "evalsha" {
		h.n.Add(1)
	}
}
