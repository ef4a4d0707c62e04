package integration

import (
	"context"
	"testing"
	"time"

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
				assertKeysExpire(t, b, prefix)
			})
		}
	})
}
