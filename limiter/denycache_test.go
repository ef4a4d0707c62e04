package limiter_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// A refused request is refused again from the deny cache, without a command, until the moment Redis
// gave; then Redis decides again and admits it. Other costs, other limits, Reset and the size bound
// all go back to Redis.
func TestLimiterDenyCache(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var sent redistest.Calls
		b.Client.AddHook(&sent)
		lim, err := limiter.New(b.Client, limiter.SlidingWindow, limiter.WithKeyPrefix(redistest.Prefix(t)), limiter.WithDenyCache(2))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := limiter.New(b.Client, limiter.SlidingWindow, limiter.WithDenyCache(0)); err == nil {
			t.Error("WithDenyCache(0) accepted")
		}
		limit := limiter.Per(3, 400*time.Millisecond).WithName("api")
		for range 3 {
			if res, err := lim.Allow(ctx, "a", limit); err != nil || !res.Allowed {
				t.Fatalf("%+v, %v", res, err)
			}
		}
		first, err := lim.Allow(ctx, "a", limit)
		if err != nil || first.Allowed || first.Source != limiter.SourceRedis || first.RetryAfter <= 0 {
			t.Fatalf("fourth request: %+v, %v; want refused by Redis", first, err)
		}
		before := sent.N.Load()
		var last limiter.Result
		for i := range 50 {
			res, err := lim.Allow(ctx, "a", limit)
			if err != nil || res.Allowed {
				// The entry ran out (a slow machine): Redis must then have admitted it.
				t.Logf("after %d cached refusals: %+v, %v", i, res, err)
				break
			}
			if res.Source != limiter.SourceDenyCache || res.RetryAfter <= 0 || res.RetryAfter > first.RetryAfter || res.Remaining != first.Remaining {
				t.Fatalf("cached refusal %d: %+v; first refusal %+v", i, res, first)
			}
			last = res
		}
		if n := sent.N.Load() - before; last.Source == limiter.SourceDenyCache && n != 0 {
			t.Errorf("%d commands for cached refusals, want 0", n)
		}
		// Another cost and another limit under the same key are not the cached request.
		if res, _ := lim.AllowN(ctx, "a", limit, 2); res.Source != limiter.SourceRedis {
			t.Errorf("cost 2: %+v, want Redis to decide", res)
		}
		if res, _ := lim.Allow(ctx, "a", limiter.Per(10, 400*time.Millisecond).WithName("api")); res.Source != limiter.SourceRedis || !res.Allowed {
			t.Errorf("a raised limit on the same key: %+v, want admitted by Redis", res)
		}
		// When Redis' moment comes, Redis is asked again, and admits.
		time.Sleep(first.RetryAfter)
		res, err := lim.Allow(ctx, "a", limit)
		if err != nil || res.Source != limiter.SourceRedis {
			t.Errorf("after RetryAfter: %+v, %v; want Redis to decide", res, err)
		}

		// Reset through the limiter forgets the identifier's refusals.
		for range 4 {
			lim.Allow(ctx, "r", limit)
		}
		if res, _ := lim.Allow(ctx, "r", limit); res.Source != limiter.SourceDenyCache {
			t.Fatalf("before Reset: %+v, want a cached refusal", res)
		}
		if err := lim.Reset(ctx, "r", limit); err != nil {
			t.Fatal(err)
		}
		if res, _ := lim.Allow(ctx, "r", limit); res.Source != limiter.SourceRedis || !res.Allowed {
			t.Errorf("after Reset: %+v, want admitted by Redis", res)
		}

		// At most two entries: a third refusal pushes out the least recently used.
		slow := limiter.PerMinute(1).WithName("slow")
		for _, id := range []string{"x", "y", "z"} {
			lim.Allow(ctx, id, slow)
			if res, _ := lim.Allow(ctx, id, slow); res.Allowed || res.Source != limiter.SourceRedis {
				t.Fatalf("%s: %+v, want refused by Redis", id, res)
			}
		}
		// In this order: asking about x makes Redis refuse it again, and x's entry then pushes out y's.
		for _, c := range []struct {
			id   string
			want limiter.Source
		}{{"y", limiter.SourceDenyCache}, {"z", limiter.SourceDenyCache}, {"x", limiter.SourceRedis}} {
			if res, _ := lim.Allow(ctx, c.id, slow); res.Source != c.want || res.Allowed {
				t.Errorf("%s: %+v, want refused by %v", c.id, res, c.want)
			}
		}
	})
}

// With the deny cache, a limit under concurrent load still admits exactly its rate: every admission
// is Redis'.
func TestLimiterDenyCacheExactUnderConcurrency(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		lim, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(t)), limiter.WithDenyCache(100))
		if err != nil {
			t.Fatal(err)
		}
		limit := limiter.PerHour(50).WithName("hot")
		var admitted, cached atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 40 {
					res, err := lim.Allow(ctx, "hot", limit)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Allowed {
						admitted.Add(1)
					}
					if res.Source == limiter.SourceDenyCache {
						cached.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if admitted.Load() != 50 {
			t.Errorf("%d admitted, want 50", admitted.Load())
		}
		if cached.Load() == 0 {
			t.Error("no refusal came from the cache")
		}
		t.Logf("640 requests: %d admitted, %d refused from the cache", admitted.Load(), cached.Load())
	})
}

// With Redis down and the limiter failing open, a client Redis refused moments ago is still refused.
func TestLimiterDenyCacheWhileRedisDown(t *testing.T) {
	srv, rdb := redistest.Private(t)
	ctx := context.Background()
	lim, err := limiter.New(rdb, limiter.FixedWindow, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithDenyCache(10), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	limit := limiter.PerHour(1).WithName("api")
	lim.Allow(ctx, "hammer", limit)
	if res, _ := lim.Allow(ctx, "hammer", limit); res.Allowed || res.Source != limiter.SourceRedis {
		t.Fatalf("%+v, want refused by Redis", res)
	}
	srv.Stop()
	if res, err := lim.Allow(ctx, "hammer", limit); err != nil || res.Allowed || res.Source != limiter.SourceDenyCache {
		t.Errorf("refused client, Redis down: %+v, %v; want refused from the cache", res, err)
	}
	if res, err := lim.Allow(ctx, "other", limit); err != nil || !res.Allowed || res.Source != limiter.SourceFailOpen {
		t.Errorf("other client, Redis down: %+v, %v; want admitted by the failure policy", res, err)
	}
}
