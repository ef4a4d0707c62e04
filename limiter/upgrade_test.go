package limiter_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/limiter"
)

// Keys written by the scripts of the previous release (testdata/v1, kept as they were) are read for
// what they say: the first decisions after an upgrade neither forget what was used nor fail. A
// token bucket's state, kept then at one token per whole microseconds, is read as the whole tokens
// it owed, rounded up.
func TestLimiterReadsStateOfThePreviousRelease(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		minute := (time.Now().UnixMicro()/60e6 + 2) * 60e6 // a minute ahead of the server's clock
		for _, a := range algorithms {
			t.Run(a.alg.String(), func(t *testing.T) {
				prefix := redistest.Prefix(t)
				src, err := os.ReadFile("testdata/v1/" + a.alg.String() + ".lua")
				if err != nil {
					t.Fatal(err)
				}
				old := script.New("v1_"+a.alg.String(), string(src))
				limit := limiter.PerMinute(5)
				args := []any{limit.Rate, limit.Period.Milliseconds()}
				if a.alg == limiter.TokenBucket {
					limit = limiter.Per(2, 10*time.Minute).WithBurst(5) // one token per 300 s
					args = []any{limit.Capacity(), int64(300e6)}
				}
				now := minute + 10e6
				key := limitertest.Key(prefix, a.alg, "user", limit)
				// The previous release admits 3 at once.
				v, err := old.Run(ctx, b.Client, []string{key}, append([]any{3, 0, now}, args...)...)
				if err != nil || v.([]any)[0] != int64(1) {
					t.Fatalf("the previous script: %v, %v", v, err)
				}
				lim, err := limiter.New(b.Client, a.alg, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return time.UnixMicro(now) }))
				if err != nil {
					t.Fatal(err)
				}
				expect := func(what string, r limiter.Result, err error, allowed bool, remaining int64, retry time.Duration) {
					t.Helper()
					if err != nil || r.Allowed != allowed || r.Remaining != remaining || r.RetryAfter != retry {
						t.Errorf("%s: %+v, %v; want allowed %v, %d left, retry after %v", what, r, err, allowed, remaining, retry)
					}
				}
				r, err := lim.Peek(ctx, "user", limit)
				expect("peek after the upgrade", r, err, true, 2, 0)
				if a.alg == limiter.TokenBucket {
					r, err = lim.AllowN(ctx, "user", limit, 3)
					expect("3 more at once", r, err, false, 2, 300*time.Second)
					now += 150e6 // 2.5 tokens owed, read as 3
					r, err = lim.AllowN(ctx, "user", limit, 3)
					expect("3 more 150 s later", r, err, false, 2, 300*time.Second)
				}
				r, err = lim.Allow(ctx, "user", limit)
				expect("one more", r, err, true, 1, 0)
				r, err = lim.Peek(ctx, "user", limit)
				expect("peek", r, err, true, 1, 0)
				switch a.alg {
				case limiter.FixedWindow:
					now = minute + 60e6
					r, err = lim.Peek(ctx, "user", limit)
					expect("peek in the next window", r, err, true, 5, 0)
				case limiter.SlidingWindow:
					now = minute + 60e6 // the 4 counted weigh fully at the start of the next window
					r, err = lim.Peek(ctx, "user", limit)
					expect("peek in the next window", r, err, true, 1, 0)
				}
				redistest.AssertKeysExpire(t, b, prefix)
			})
		}
	})
}
