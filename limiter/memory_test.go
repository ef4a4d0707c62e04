package limiter_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// The sliding log's memory is bounded by its limit: however many requests arrive over however many
// windows, its sorted set never holds more than the limit's members after an admitted call.
func TestSlidingLogMemoryBoundedByLimit(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		var now atomic.Int64
		now.Store(time.Now().Add(time.Minute).UnixMicro()) // ahead of the server, whose clock expires keys
		lim, err := limiter.New(b.Client, limiter.SlidingLog, limiter.WithKeyPrefix(prefix),
			limiter.WithClock(func() time.Time { return time.UnixMicro(now.Load()) }))
		if err != nil {
			t.Fatal(err)
		}
		per := limiter.Per(50, time.Second)
		key := prefix + "{bounded}:sl:1000"
		var most int64
		for i := range 2000 {
			now.Add(7_000) // 7ms apart: 143 requests arrive per window, 50 are admitted
			r, err := lim.Allow(ctx, "bounded", per)
			if err != nil {
				t.Fatal(err)
			}
			n := b.Client.ZCard(ctx, key).Val()
			if r.Allowed && n > per.Rate {
				t.Fatalf("request %d: the log holds %d members, more than the limit %d", i, n, per.Rate)
			}
			most = max(most, n)
		}
		// The set must have filled up to the limit: otherwise the test read the wrong key.
		if most != per.Rate {
			t.Errorf("the log never held more than %d members of %q, want exactly the limit %d", most, key, per.Rate)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// MEMORY USAGE of one identifier's state under each algorithm stays within what docs/algorithms.md
// states (Redis 7.0, a 12-byte identifier, this test's 17-byte prefix); -v prints the figures.
func TestLimiterMemoryUsage(t *testing.T) {
	// The most bytes one key may take after n requests of a PerMinute(100) limit.
	bound := map[string]func(n int64) int64{
		"fixed_window":   func(int64) int64 { return 128 },
		"sliding_window": func(int64) int64 { return 128 },
		"token_bucket":   func(int64) int64 { return 144 },
		"sliding_log":    func(n int64) int64 { return 100 + 40*n }, // ~36 B per request in a listpack
	}
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	for _, a := range algorithms {
		prefix := redistest.Prefix(t)
		lim, err := limiter.New(b.Client, a.alg, limiter.WithKeyPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		per := limiter.PerMinute(100)
		for _, n := range []int{1, 100} {
			id := "user:1234567"
			lim.Reset(ctx, id, per)
			for range n {
				if _, err := lim.Allow(ctx, id, per); err != nil {
					t.Fatal(err)
				}
			}
			masters, _ := b.Masters(ctx)
			found := 0
			for _, m := range masters {
				for _, k := range m.Keys(ctx, prefix+"*").Val() {
					found++
					used := m.MemoryUsage(ctx, k).Val()
					t.Logf("%-14s after %3d requests: %s = %d bytes", a.alg, n, k, used)
					if limit := bound[a.alg.String()](int64(n)); used > limit {
						t.Errorf("%s after %d requests: %d bytes, more than the %d docs/algorithms.md allows for", a.alg, n, used, limit)
					}
				}
			}
			if found != 1 {
				t.Errorf("%s after %d requests: %d keys, want 1", a.alg, n, found)
			}
		}
	}
}

// The worst case docs/algorithms.md states for the sliding window: with 10 per second, 10 requests
// at the last millisecond of one window and 9 at 900ms into the next are all admitted, 19 inside
// one second, and the 10th at 900ms is refused.
func TestSlidingWindowDocumentedWorstCase(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	var now atomic.Int64
	base := time.Now().Add(time.Minute).Truncate(time.Second).UnixMicro()
	lim, err := limiter.New(b.Client, limiter.SlidingWindow, limiter.WithKeyPrefix(redistest.Prefix(t)),
		limiter.WithClock(func() time.Time { return time.UnixMicro(now.Load()) }))
	if err != nil {
		t.Fatal(err)
	}
	per := limiter.PerSecond(10)
	admit := func(at int64, n int) int {
		now.Store(at)
		got := 0
		for range n {
			if r, err := lim.Allow(ctx, "adversary", per); err != nil {
				t.Fatal(err)
			} else if r.Allowed {
				got++
			}
		}
		return got
	}
	if got := admit(base+999_000, 10); got != 10 {
		t.Fatalf("at 999ms: %d admitted, want 10", got)
	}
	if got := admit(base+1_900_000, 10); got != 9 {
		t.Fatalf("at 1900ms: %d admitted, want 9", got)
	}
}
