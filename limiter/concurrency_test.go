package limiter_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// 64 goroutines hammer one key for two windows; each window admits exactly the limit. The instants
// are injected (every goroutine decides at the same instant, first in one window, then in the
// next) so the count per window is known exactly, while the contention on the key is real.
//
// The same again with WithAutoPipeline, where the 64 goroutines' decisions share pipelines, and
// coalesced (the default), where they share script calls (many decisions on the one key in one call).
func TestLimiterExactUnderConcurrency(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			for _, send := range append(sendModes, sendMode{"/auto-pipeline", []limiter.Option{limiter.WithAutoPipeline()}}) {
				t.Run(a.alg.String()+send.suffix, func(t *testing.T) { exactUnderConcurrency(t, b, a.alg, send.opts) })
			}
		}
	})
}

func exactUnderConcurrency(t *testing.T, b *redistest.Backend, alg limiter.Algorithm, opts []limiter.Option) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	var now atomic.Int64
	now.Store(time.Now().Add(time.Minute).Truncate(time.Minute).UnixMicro() + 1000)
	lim, err := limiter.New(b.Client, alg, append(opts, limiter.WithKeyPrefix(prefix),
		limiter.WithClock(func() time.Time { return time.UnixMicro(now.Load()) }))...)
	if err != nil {
		t.Fatal(err)
	}
	// 100 per minute; the token bucket holds 100 and refills 100 per minute.
	per := limiter.PerMinute(100)
	for window := range 2 {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					r, err := lim.Allow(ctx, "hot", per)
					if err != nil {
						t.Error(err)
						return
					}
					if r.Allowed {
						admitted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if got := admitted.Load(); got != 100 {
			t.Errorf("window %d: %d of 640 admitted, want exactly 100", window, got)
		}
		// The next window: a whole period later, the sliding window's previous count
		// weighs nothing only after two periods.
		now.Add(2 * time.Minute.Microseconds())
	}
	checkShared(t, lim)
	redistest.AssertKeysExpire(t, b, prefix)
}

// On the server's own clock, 64 goroutines on one fixed-window key for about two windows: no window
// admits more than the limit, so the total is at most the limit times the windows touched.
func TestFixedWindowServerClockUnderConcurrency(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		per := limiter.Per(20, 100*time.Millisecond)
		start := time.Now()
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < 200*time.Millisecond {
					r, err := lim.Allow(ctx, "hot", per)
					if err != nil {
						t.Error(err)
						return
					}
					if r.Allowed {
						admitted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		// The run touches at most ceil(elapsed/100ms)+1 windows (it may start mid-window).
		windows := int64(time.Since(start)/(100*time.Millisecond)) + 2
		if got := admitted.Load(); got > 20*windows || got < 20 {
			t.Errorf("admitted %d in %d windows or fewer, want between 20 and %d", got, windows, 20*windows)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// Through the auto-pipeliner, decisions still recover from an emptied script cache, and a paused
// Redis still ends in the failure policy on time.
func TestLimiterAutoPipelineRecovers(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		lim, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithAutoPipeline(), limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		redistest.FlushScripts(ctx, t, b.Client)
		var wg sync.WaitGroup
		var admitted atomic.Int64
		for range 16 {
			wg.Go(func() {
				res, err := lim.Allow(ctx, "k", limiter.PerHour(10))
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					admitted.Add(1)
				}
			})
		}
		wg.Wait()
		if admitted.Load() != 10 {
			t.Errorf("%d of 16 admitted after SCRIPT FLUSH, want 10", admitted.Load())
		}
	})

	_, rdb := redistest.Private(t)
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithAutoPipeline(), limiter.WithFailurePolicy(limiter.FailOpen()),
		limiter.WithTimeout(200*time.Millisecond), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := lim.Allow(ctx, "slow", limiter.PerHour(10))
	if err != nil || res.Source != limiter.SourceFailOpen || !redistest.IsTimeout(res.Err) {
		t.Errorf("auto-pipelined with Redis paused: %+v, %v; want fail-open after the timeout", res, err)
	}
	rdb.Do(ctx, "CLIENT", "UNPAUSE")
}

// With Redis stopped (SIGSTOP), auto-pipelined decisions made at once by many goroutines each end
// in the failure policy once WithTimeout has passed, while Redis is still stopped: not when the
// batch ahead of them gets its reply, nor at the client's read timeout (30s here). 10 seconds is
// the bound on a hang, not on speed.
func TestLimiterAutoPipelineTimeoutUnderStall(t *testing.T) {
	srv, _ := redistest.Private(t)
	c := redistest.ClientFor(t, srv.Addr, func(o *redis.Options) { o.ReadTimeout, o.WriteTimeout = 30*time.Second, 30*time.Second })
	lim, err := limiter.New(c, limiter.TokenBucket, limiter.WithAutoPipeline(), limiter.WithFailurePolicy(limiter.FailOpen()),
		limiter.WithTimeout(200*time.Millisecond), limiter.WithCooldown(0), limiter.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := lim.Allow(ctx, "k", limiter.PerHour(10)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	const goroutines, calls = 32, 3
	var returned atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range calls {
				res, err := lim.Allow(ctx, "k", limiter.PerHour(10))
				if err != nil || res.Source != limiter.SourceFailOpen || !redistest.IsTimeout(res.Err) {
					t.Errorf("auto-pipelined with Redis stopped: %+v, %v; want fail-open after the timeout", res, err)
				}
				returned.Add(1)
			}
		})
	}
	for deadline := time.Now().Add(10 * time.Second); returned.Load() < goroutines*calls && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := returned.Load(); n < goroutines*calls {
		t.Errorf("%d of %d decisions had returned 10s after Redis stopped, with WithTimeout(200ms)", n, goroutines*calls)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}
