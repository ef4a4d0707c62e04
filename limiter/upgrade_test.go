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

// Keys written by the scripts of earlier versions (testdata/<version>, kept as they were) are read
// for what they say: the first decisions after an upgrade neither forget what was used nor fail.
// v1 is the previous release, whose token bucket, kept at one token per whole microseconds, is
// read as the whole tokens it owed, rounded up; v2 is the text state the binary one replaced, read
// exactly.
func TestLimiterReadsStateOfThePreviousRelease(t *testing.T) {
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) { readsStateOf(t, version) })
	}
}

// readsStateOf checks TestLimiterReadsStateOfThePreviousRelease for the scripts of one version.
func readsStateOf(t *testing.T, version string) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		minute := (time.Now().UnixMicro()/60e6 + 2) * 60e6 // a minute ahead of the server's clock
		for _, a := range algorithms {
			t.Run(a.alg.String(), func(t *testing.T) {
				prefix := redistest.Prefix(t)
				src, err := os.ReadFile("testdata/" + version + "/" + a.alg.String() + ".lua")
				if err != nil {
					t.Fatal(err)
				}
				old := script.New(version+"_"+a.alg.String(), string(src))
				limit := limiter.PerMinute(5)
				args := []any{limit.Rate, limit.Period.Milliseconds()}
				if a.alg == limiter.TokenBucket {
					limit = limiter.Per(2, 10*time.Minute).WithBurst(5) // one token per 300 s
					args = []any{limit.Capacity(), int64(300e6)}        // v1: burst, interval (µs)
					if version != "v1" {
						args = []any{limit.Capacity(), int64(1), int64(300e6)} // burst, r, p
					}
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
					now += 150e6 // 2.5 tokens owed: read as 3 from v1, exactly from v2
					r, err = lim.AllowN(ctx, "user", limit, 3)
					if version == "v1" {
						expect("3 more 150 s later", r, err, false, 2, 300*time.Second)
					} else {
						expect("3 more 150 s later", r, err, false, 2, 150*time.Second)
					}
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
