package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// A limit changed while state exists keeps what was used, in every algorithm: up (a customer
// upgraded from 2 to 5 an hour has 3 left, not 0), down (from 5 to 2 after using 2: nothing left,
// not a third), and, for named limits, to a longer or shorter period.
// TestLimiterMatchesModelAcrossLimitChanges drives random changes against the models.
func TestLimiterChangedLimitKeepsWhatWasUsed(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			t.Run(a.alg.String(), func(t *testing.T) {
				ctx := context.Background()
				prefix := redistest.Prefix(t)
				// 10 minutes into an hour, ahead of the server's clock.
				now := time.UnixMicro((time.Now().UnixMicro()/3600e6+1)*3600e6 + 600e6)
				lim, err := limiter.New(b.Client, a.alg, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return now }))
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range []struct {
					name     string
					from, to limiter.Limit
					used     int64
					left     int64 // what the new limit has left after used under the old one
				}{
					{"up", limiter.PerHour(2), limiter.PerHour(5), 2, 3},
					{"down", limiter.PerHour(5), limiter.PerHour(2), 2, 0},
					{"longer period", limiter.PerHour(5), limiter.Per(5, 2*time.Hour), 3, 2},
					{"shorter period", limiter.PerHour(5), limiter.PerMinute(5), 3, 2},
					{"down, shorter period", limiter.PerHour(10), limiter.PerMinute(4), 6, 0},
				} {
					from, to := c.from.WithName(c.name), c.to.WithName(c.name)
					if r, err := lim.AllowN(ctx, "customer", from, c.used); err != nil || !r.Allowed {
						t.Fatalf("%s: AllowN(%d) under %v = %+v, %v", c.name, c.used, from, r, err)
					}
					r, err := lim.Peek(ctx, "customer", to)
					if err != nil || r.Remaining != c.left {
						t.Errorf("%s: %d used under %v, then under %v: Peek = %+v, %v; want %d left", c.name, c.used, from, to, r, err, c.left)
					}
					r, err = lim.AllowN(ctx, "customer", to, c.left+1)
					if err != nil || r.Allowed || r.RetryAfter <= 0 || r.RetryAfter == limiter.InfDuration {
						t.Errorf("%s: AllowN(%d) under %v = %+v, %v; want refused for a while", c.name, c.left+1, to, r, err)
					}
					if c.left > 0 {
						if r, err := lim.AllowN(ctx, "customer", to, c.left); err != nil || !r.Allowed || r.Remaining != 0 {
							t.Errorf("%s: AllowN(%d) under %v = %+v, %v; want admitted with nothing left", c.name, c.left, to, r, err)
						}
					}
				}
				redistest.AssertKeysExpire(t, b, prefix)
			})
		}
	})
}

// What skewed injected clocks do to a fixed window, as the WithClock doc states it: hosts share
// the state but not the window. A host whose clock is behind reads the count of the window ahead
// and is held until that window ends; when it admits a request, it moves the window's end back to
// its own, and the host ahead then finds the window over: a fresh quota.
func TestWithClockSkewOnAFixedWindow(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	minute := (time.Now().UnixMicro()/60e6 + 3) * 60e6
	ahead, behind := time.UnixMicro(minute+10e6), time.UnixMicro(minute-50e6) // one window apart
	a, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return ahead }))
	if err != nil {
		t.Fatal(err)
	}
	bh, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return behind }))
	if err != nil {
		t.Fatal(err)
	}
	limit := limiter.PerMinute(2)
	if r, err := a.AllowN(ctx, "c", limit, 2); err != nil || !r.Allowed {
		t.Fatalf("ahead: %+v, %v", r, err)
	}
	r, err := bh.Allow(ctx, "c", limit)
	if err != nil || r.Allowed || r.RetryAfter != 110*time.Second {
		t.Errorf("behind, after the host ahead took 2: %+v, %v; want refused until the window ahead ends, 110s", r, err)
	}
	if err := a.Reset(ctx, "c", limit); err != nil {
		t.Fatal(err)
	}
	a.Allow(ctx, "c", limit)
	if r, err := bh.Allow(ctx, "c", limit); err != nil || !r.Allowed {
		t.Fatalf("behind, after the host ahead took 1: %+v, %v; want admitted (2 of 2)", r, err)
	}
	if r, err := a.AllowN(ctx, "c", limit, 2); err != nil || !r.Allowed {
		t.Errorf("ahead, after the host behind moved the window back: %+v, %v; want a fresh quota (4 in one window)", r, err)
	}
}

// The sliding log names a request's member after its instant and the live count it was admitted
// at, which at one instant only grows while the window stays the same. Under a named limit whose
// window changes, calls at one instant can see different counts (a shorter window's call removes
// members a longer window still counts) and pick a name already taken: each request still gets a
// member of its own, so none goes uncounted.
func TestSlidingLogCountsEveryRequestAtOneInstant(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		at := time.Now().Add(time.Hour)
		lim, err := limiter.New(b.Client, limiter.SlidingLog, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return at }))
		if err != nil {
			t.Fatal(err)
		}
		hour, second := limiter.PerHour(10).WithName("x"), limiter.PerSecond(10).WithName("x")
		allow := func(lim *limiter.Limiter, l limiter.Limit, n, left int64) {
			t.Helper()
			if r, err := lim.AllowN(ctx, "user", l, n); err != nil || !r.Allowed || r.Remaining != left {
				t.Fatalf("AllowN(%d) under %v = %+v, %v; want admitted with %d left", n, l, r, err, left)
			}
		}
		later := at
		at = at.Add(-2 * time.Second)
		allow(lim, hour, 2, 8) // two members 2 s before the instant
		at = later
		allow(lim, hour, 1, 7)   // the third, named after the count 2
		allow(lim, second, 1, 8) // 1 s counts only that one; named after the count 1; removes the first two
		allow(lim, hour, 2, 6)   // the count is 2 again: the name of the third is taken
		if n := b.Client.ZCard(ctx, limitertest.Key(prefix, limiter.SlidingLog, "user", hour)).Val(); n != 4 {
			t.Errorf("the log holds %d members; want 4, one per request of the last second", n)
		}
		if r, err := lim.Peek(ctx, "user", hour); err != nil || r.Remaining != 6 {
			t.Errorf("Peek under %v = %+v, %v; want 6 left", hour, r, err)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}
