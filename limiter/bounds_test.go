package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

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
		redistest.AssertKeysExpire(t, b, prefix)
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

// capacityLimit is, for each algorithm, a limit at the largest capacity it accepts (for the
// windows and the token bucket, at the bound of their products).
var capacityLimit = map[limiter.Algorithm]limiter.Limit{
	limiter.FixedWindow:   limiter.PerSecond(limiter.MaxRate),
	limiter.SlidingWindow: limiter.Per(1<<40, 1024*time.Millisecond), // rate × period in ms = 2^50
	limiter.SlidingLog:    limiter.PerHour(limiter.MaxSlidingLogRate),
	limiter.TokenBucket:   limiter.Per(16500, time.Millisecond).WithBurst(1 << 51), // 2^51 tokens of 1/2: at 2^52
}

// Every limit, cost and instant the limiter accepts works, and just past each bound it is refused:
// the longest period, the largest capacity, the largest cost, the last instant.
func TestLimiterBounds(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			t.Run(a.alg.String(), func(t *testing.T) {
				ctx := context.Background()
				prefix := redistest.Prefix(t)
				// The scripts set each key's expiry at an instant (PXAT) computed from the injected
				// clock, and Redis expires it by its own: at the real instant, a window of the
				// clocked limiter must still be ahead when the next call comes, however slow the
				// machine. At the real now, the 1-second window of the largest capacity could end
				// between the call that fills it and the call that must be refused (which then found
				// no key and was admitted). An hour ahead, every window used below ends in the
				// (real) future by at least an hour.
				at := time.Now().Add(time.Hour)
				lim, err := limiter.New(b.Client, a.alg, limiter.WithKeyPrefix(prefix))
				if err != nil {
					t.Fatal(err)
				}
				clocked, err := limiter.New(b.Client, a.alg, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return at }))
				if err != nil {
					t.Fatal(err)
				}

				// The longest period: a request, then a refusal that says when (not never).
				long := limiter.Per(1, limiter.MaxPeriod)
				for _, l := range []*limiter.Limiter{lim, clocked} {
					id := fmt.Sprintf("period-%p", l)
					if r, err := l.Allow(ctx, id, long); err != nil || !r.Allowed {
						t.Fatalf("Allow under %v = %+v, %v; want admitted", long, r, err)
					}
					r, err := l.Allow(ctx, id, long)
					if err != nil || r.Allowed || r.RetryAfter <= 0 || r.RetryAfter > 2*limiter.MaxPeriod ||
						r.ResetAfter < r.RetryAfter || r.ResetAfter > 2*limiter.MaxPeriod {
						t.Fatalf("second Allow under %v = %+v, %v; want refused until within two periods", long, r, err)
					}
				}
				for _, l := range []limiter.Limit{limiter.Per(1, limiter.MaxPeriod+time.Millisecond),
					limiter.Per(1, limiter.InfDuration.Truncate(time.Millisecond))} {
					if r, err := lim.Allow(ctx, "period", l); !errors.Is(err, limiter.ErrInvalidLimit) {
						t.Errorf("Allow under %v = %+v, %v; want ErrInvalidLimit", l, r, err)
					}
				}

				// The largest capacity, taken whole; then one more waits (at the same instant: the
				// bucket gains 16.5 tokens a microsecond); a larger cost never fits.
				c := capacityLimit[a.alg]
				if r, err := clocked.AllowN(ctx, "capacity", c, c.Capacity()); err != nil || !r.Allowed || r.Remaining != 0 {
					t.Fatalf("AllowN(%d) under %v = %+v, %v; want admitted with 0 left", c.Capacity(), c, r, err)
				}
				if r, err := clocked.Allow(ctx, "capacity", c); err != nil || r.Allowed || r.RetryAfter <= 0 || r.RetryAfter > 2*c.Period {
					t.Fatalf("Allow after the whole capacity of %v = %+v, %v; want refused for at most two periods", c, r, err)
				}
				for _, n := range []int64{c.Capacity() + 1, math.MaxInt64} {
					if r, err := lim.AllowN(ctx, "too-much", c, n); err != nil || r.Allowed || r.RetryAfter != limiter.InfDuration || r.Remaining != c.Capacity() {
						t.Errorf("AllowN(%d) under %v = %+v, %v; want never, nothing counted", n, c, r, err)
					}
				}

				// The last instant: decisions work there, with their periods; a microsecond later, or
				// before 1970, the clock is refused.
				at = time.UnixMicro(1<<53 - 2*int64(limiter.MaxPeriod/time.Microsecond))
				if r, err := clocked.Allow(ctx, "last", long); err != nil || !r.Allowed {
					t.Fatalf("Allow at %v = %+v, %v", at, r, err)
				}
				if r, err := clocked.Allow(ctx, "last", long); err != nil || r.Allowed || r.RetryAfter > 2*limiter.MaxPeriod {
					t.Fatalf("second Allow at %v = %+v, %v; want refused until within two periods", at, r, err)
				}
				for _, when := range []time.Time{at.Add(time.Microsecond), time.UnixMicro(0), time.Date(-300000, 1, 1, 0, 0, 0, 0, time.UTC)} {
					at = when
					if r, err := clocked.Allow(ctx, "last", long); err == nil || errors.Is(err, limiter.ErrInvalidLimit) {
						t.Errorf("Allow at %v = %+v, %v; want an error about the clock", when, r, err)
					}
				}
				redistest.AssertKeysExpire(t, b, prefix)
			})
		}
	})
}

// The token bucket counts exactly in fractions of a token, at every rate it accepts: up to
// 4,503,599,627 per second whatever the rate, to 4.5 × 10^15 per second for multiples of a
// million. Past its bounds (capacity × period ÷ gcd(rate, period) over 2^52 in µs, or a refill
// longer than MaxPeriod) a limit is refused.
func TestTokenBucketExact(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		now := time.UnixMicro((time.Now().UnixMicro()/1e6 + 60) * 1e6)
		lim, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		start := now
		for _, c := range []struct {
			limit limiter.Limit
			after time.Duration
			want  int64 // tokens held after being emptied, then left alone for after
		}{
			{limiter.PerSecond(10_000_000), 100 * time.Millisecond, 1_000_000}, // one token every 0.1 µs
			{limiter.PerSecond(3), 333333 * time.Microsecond, 0},               // 0.999999 of a token
			{limiter.PerSecond(3), 333334 * time.Microsecond, 1},
			{limiter.PerSecond(4_503_599_627), 100 * time.Millisecond, 450_359_962},         // the largest coprime rate: 450,359,962.7
			{limiter.PerSecond(4_503_599_627_000_000), time.Microsecond, 4_503_599_627},     // the largest per-second rate
			{limiter.Per(7, 3*time.Second).WithBurst(100), 3 * time.Second, 7},              // 7 per 3s
			{limiter.Per(16500, time.Millisecond).WithBurst(1 << 51), time.Microsecond, 16}, // at the product bound: 16.5
			{limiter.Per(1, limiter.MaxPeriod), limiter.MaxPeriod - time.Microsecond, 0},
			{limiter.Per(1, limiter.MaxPeriod), limiter.MaxPeriod, 1},
		} {
			now = start
			id := c.limit.String() + c.after.String()
			if r, err := lim.AllowN(ctx, id, c.limit, c.limit.Capacity()); err != nil || !r.Allowed || r.Remaining != 0 {
				t.Fatalf("emptying %v: %+v, %v", c.limit, r, err)
			}
			now = start.Add(c.after)
			r, err := lim.Peek(ctx, id, c.limit)
			if err != nil || r.Remaining != c.want {
				t.Errorf("%v, %v after being emptied: Peek = %+v, %v; want %d tokens", c.limit, c.after, r, err, c.want)
			}
		}
		for _, l := range []limiter.Limit{
			limiter.PerSecond(4_503_599_631),                          // coprime with a million: 4.5 × 10^15 units
			limiter.PerSecond(4_503_599_628_000_000),                  // past MaxRate
			limiter.Per(16500, time.Millisecond).WithBurst(1<<51 + 1), // one token past 2^52 units
			limiter.Per(1, limiter.MaxPeriod).WithBurst(2),            // twenty years to refill
			limiter.Per(1, time.Hour).WithBurst(87601),                // MaxPeriod and an hour to refill
		} {
			if r, err := lim.Allow(ctx, "refused", l); !errors.Is(err, limiter.ErrInvalidLimit) {
				t.Errorf("Allow under %v = %+v, %v; want ErrInvalidLimit", l, r, err)
			}
		}
		if r, err := lim.Allow(ctx, "refused", limiter.Per(1, time.Hour).WithBurst(87600)); err != nil || !r.Allowed {
			t.Errorf("a bucket refilled in MaxPeriod: %+v, %v; want admitted", r, err)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}
