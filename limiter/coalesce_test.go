package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// sendMode is a way of sending decisions: the options that make it, and the end of the name of
// the subtests run with it.
type sendMode struct {
	suffix string
	opts   []limiter.Option
}

// sendModes are the ways of sending decisions the algorithm tests run under: one script call per
// decision (WithoutCoalescing), and coalesced, the default.
var sendModes = []sendMode{
	{"", []limiter.Option{limiter.WithoutCoalescing()}},
	{"/coalesced", nil},
}

// noise makes decisions for identifier id under limits of its own (so on keys of their own, in
// id's slot) through lim from three goroutines until the function it returns is called, so that a
// test's decisions for id through a coalescing limiter share script calls with others, on a
// Cluster too. That function stops them, and fails the test if no decision shared a call. Each
// goroutine has keys of its own: with an injected clock that jumps ahead, two goroutines' decisions
// on one key could reach Redis out of the order they read the clock in, and a state written
// decades ahead reads as corrupt.
func noise(t *testing.T, lim *limiter.Limiter, id string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := lim.Allow(ctx, id, limiter.PerSecond(1000).WithName(fmt.Sprintf("noise-%d-%d", g, i%3))); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		})
	}
	return func() {
		t.Helper()
		cancel()
		wg.Wait()
		checkShared(t, lim)
	}
}

// checkShared fails the test if lim coalesces and none of its decisions waited for a call under
// way and then shared a script call (or, on a Cluster, where decisions of different slots never
// share a call, a round trip): then the test proved nothing of coalescing.
func checkShared(t *testing.T, lim *limiter.Limiter) {
	t.Helper()
	if s, ok := limiter.CoalesceStats(lim); ok && (s.Queued == 0 || (s.Decisions <= s.Calls && s.Calls <= s.Trips)) {
		t.Errorf("no decision shared a call: %+v", s)
	}
}

// Through a coalescing limiter, 32 goroutines decide on good keys and on keys holding corrupt
// state or a value of another type, all mixed in shared calls: each bad decision fails with
// ErrCorruptState alone, the bad keys are left as they were, and every good decision is made
// exactly (each good key ends with exactly its admissions counted).
func TestCoalescedBadKeysFailAlone(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			t.Run(a.alg.String(), func(t *testing.T) {
				ctx := context.Background()
				prefix := redistest.Prefix(t)
				lim, err := limiter.New(b.Client, a.alg, limiter.WithKeyPrefix(prefix))
				if err != nil {
					t.Fatal(err)
				}
				per := limiter.PerHour(1000)
				writeCorrupt(t, ctx, b.Client, limitertest.Key(prefix, a.alg, "hash", per), "hash", "x")
				writeCorrupt(t, ctx, b.Client, limitertest.Key(prefix, a.alg, "garbage", per), "string", "garbage")
				before := dump(t, b, prefix, "hash") + dump(t, b, prefix, "garbage")
				var good [10]atomic.Int64
				var bad atomic.Int64
				var wg sync.WaitGroup
				for g := range 32 {
					wg.Go(func() {
						for i := range 20 {
							id := fmt.Sprintf("good-%d", (g+i)%10)
							switch i % 5 {
							case 1:
								id = "hash"
							case 3:
								id = "garbage"
							}
							r, err := lim.Allow(ctx, id, per)
							switch {
							case errors.Is(err, limiter.ErrCorruptState) && (id == "hash" || id == "garbage"):
								bad.Add(1)
							case err != nil:
								t.Errorf("%s: %v", id, err)
							case !r.Allowed:
								t.Errorf("%s: refused: %+v", id, r)
							default:
								good[(g+i)%10].Add(1)
							}
						}
					})
				}
				wg.Wait()
				if bad.Load() != 32*8 {
					t.Errorf("%d decisions on bad keys failed, want %d", bad.Load(), 32*8)
				}
				for k := range good {
					r, err := lim.Peek(ctx, fmt.Sprintf("good-%d", k), per)
					if err != nil || r.Remaining != 1000-good[k].Load() {
						t.Errorf("good-%d: %d admitted, then %+v, %v", k, good[k].Load(), r, err)
					}
				}
				if after := dump(t, b, prefix, "hash") + dump(t, b, prefix, "garbage"); after != before {
					t.Errorf("the bad keys changed:\n%s\n%s", before, after)
				}
				checkShared(t, lim)
			})
		}
	})
}

// Redis paused under 16 concurrent coalesced decisions with WithTimeout and FailOpen: each
// caller, whether its decision waited for a call or was in one, gets the failure policy's
// decision standing in for the timeout; once Redis answers again, decisions are Redis' again.
func TestCoalescedTimeoutFallsBack(t *testing.T) {
	_, rdb := redistest.Private(t)
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailOpen()),
		limiter.WithTimeout(200*time.Millisecond), limiter.WithCooldown(0), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 1000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			r, err := lim.Allow(ctx, fmt.Sprint("k", g), limiter.PerHour(10))
			if err != nil || r.Source != limiter.SourceFailOpen || !redistest.IsTimeout(r.Err) {
				t.Errorf("with Redis paused: %+v, %v; want fail-open after the timeout", r, err)
			}
		})
	}
	wg.Wait()
	if s, _ := limiter.CoalesceStats(lim); s.Queued == 0 {
		t.Errorf("no decision waited for a call: %+v", s)
	}
	// The pause ends by itself (CLIENT UNPAUSE would wait for it too).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r, err := lim.Allow(ctx, "after", limiter.PerHour(10))
		if err == nil && r.Source == limiter.SourceRedis && r.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the pause: %+v, %v", r, err)
		}
	}
}

// Decisions are coalesced by default; WithoutCoalescing and WithAutoPipeline send each in a call
// of its own (the auto-pipeliner may share a round trip). WithCoalescing, deprecated, asks for the
// default, and New refuses it with WithAutoPipeline.
func TestCoalescingIsTheDefault(t *testing.T) {
	_, rdb := redistest.Private(t)
	for name, c := range map[string]struct {
		opts      []limiter.Option
		coalesced bool
	}{
		"default":            {nil, true},
		"WithCoalescing":     {[]limiter.Option{limiter.WithCoalescing()}, true},
		"WithoutCoalescing":  {[]limiter.Option{limiter.WithoutCoalescing()}, false},
		"WithAutoPipeline":   {[]limiter.Option{limiter.WithAutoPipeline()}, false},
		"Without, then With": {[]limiter.Option{limiter.WithoutCoalescing(), limiter.WithCoalescing()}, true},
	} {
		lim, err := limiter.New(rdb, limiter.TokenBucket, c.opts...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := lim.Allow(context.Background(), "k", limiter.PerSecond(10)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, ok := limiter.CoalesceStats(lim); ok != c.coalesced {
			t.Errorf("%s: coalesced %v, want %v", name, ok, c.coalesced)
		}
	}
	if _, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithCoalescing(), limiter.WithAutoPipeline()); err == nil {
		t.Error("New accepted WithCoalescing and WithAutoPipeline together")
	}
}
