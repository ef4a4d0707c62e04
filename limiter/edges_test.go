package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// A server clock that jumped back (an NTP step, a failover to a host behind): the sliding log
// still counts the requests it logged at the later instants, so its key must live until they age
// out, as the token bucket's and the sliding window's do.
func TestSlidingLogClockBackKeepsKey(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		srvNow, err := b.Client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		at := srvNow.Add(time.Minute)
		prefix := redistest.Prefix(t)
		lim, err := limiter.New(b.Client, limiter.SlidingLog, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return at }))
		if err != nil {
			t.Fatal(err)
		}
		limit := limiter.Per(3, time.Minute)
		if res, err := lim.Allow(ctx, "back", limit); err != nil || !res.Allowed {
			t.Fatalf("first: %+v, %v", res, err)
		}
		later := at
		at = at.Add(-30 * time.Second) // the clock jumps back 30 s
		res, err := lim.Allow(ctx, "back", limit)
		if err != nil || !res.Allowed || res.Remaining != 1 {
			t.Fatalf("after the jump: %+v, %v; want admitted with 1 left", res, err)
		}
		if want := later.Add(time.Minute).Sub(at); res.ResetAfter < want {
			t.Errorf("ResetAfter %v; the request at the later instant counts for %v more", res.ResetAfter, want)
		}
		key := limitertest.Key(prefix, limiter.SlidingLog, "back", limit)
		exp, err := b.Client.PExpireTime(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if want := later.Add(time.Minute).UnixMilli(); exp.Milliseconds() < want {
			t.Errorf("key expires at %d ms, %v before the request logged at the later instant ages out (%d)",
				exp.Milliseconds(), time.Duration(want-exp.Milliseconds())*time.Millisecond, want)
		}
	})
}
