package integration

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// Every cost the sliding log accepts works, up to MaxSlidingLogRate in one call: the members are
// added in chunks, since one ZADD of 2 × cost arguments passes Lua's stack from about 4,000 on.
func TestSlidingLogLargestCost(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		lim, err := limiter.New(b.Client, limiter.SlidingLog, limiter.WithKeyPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		max := limiter.PerHour(limiter.MaxSlidingLogRate)

		r, err := lim.AllowN(ctx, "whole", max, limiter.MaxSlidingLogRate)
		if err != nil || !r.Allowed || r.Remaining != 0 {
			t.Fatalf("AllowN(%d) of %v = %+v, %v; want admitted with 0 left", limiter.MaxSlidingLogRate, max, r, err)
		}
		if r, err := lim.Allow(ctx, "whole", max); err != nil || r.Allowed {
			t.Fatalf("Allow after the whole limit was taken = %+v, %v; want denied", r, err)
		}
		if n := logMembers(t, b, prefix, "whole"); n != limiter.MaxSlidingLogRate {
			t.Errorf("the log holds %d members, want %d", n, limiter.MaxSlidingLogRate)
		}

		// 4,000 then 6,000 at the same instant (members must stay distinct), then one more: denied.
		for _, n := range []int64{4000, 6000} {
			if r, err := lim.AllowN(ctx, "parts", max, n); err != nil || !r.Allowed {
				t.Fatalf("AllowN(%d) = %+v, %v; want admitted", n, r, err)
			}
		}
		if r, err := lim.Allow(ctx, "parts", max); err != nil || r.Allowed || r.Remaining != 0 {
			t.Fatalf("Allow after 4,000 + 6,000 = %+v, %v; want denied", r, err)
		}
		if n := logMembers(t, b, prefix, "parts"); n != limiter.MaxSlidingLogRate {
			t.Errorf("the log holds %d members, want %d", n, limiter.MaxSlidingLogRate)
		}

		// Two limits at once, each at its maximum.
		second := limiter.PerMinute(limiter.MaxSlidingLogRate).WithName("m")
		r, err = lim.AllowAll(ctx, "both", limiter.MaxSlidingLogRate, max, second)
		if err != nil || !r.Allowed || r.All[0].Remaining != 0 || r.All[1].Remaining != 0 {
			t.Fatalf("AllowAll(%d) = %+v, %v; want admitted by both with 0 left", limiter.MaxSlidingLogRate, r, err)
		}
		assertKeysExpire(t, b, prefix)
	})
}

// logMembers returns how many members the sliding-log keys of identifier id hold.
func logMembers(t *testing.T, b *redistest.Backend, prefix, id string) int64 {
	t.Helper()
	ctx := context.Background()
	masters, err := b.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, n := range masters {
		keys, err := n.Keys(ctx, prefix+"{"+id+"}*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			c, err := n.ZCard(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			total += c
		}
	}
	return total
}
