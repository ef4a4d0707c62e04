package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// The contract every algorithm keeps, run over each of them against real Redis, with each way of
// sending decisions.
func TestLimiterContract(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			for _, send := range sendModes {
				t.Run(a.alg.String()+send.suffix, func(t *testing.T) {
					prefix := redistest.Prefix(t)
					lim, err := limiter.New(b.Client, a.alg, append(send.opts, limiter.WithKeyPrefix(prefix))...)
					if err != nil {
						t.Fatal(err)
					}
					contract(t, b, lim, prefix)
					redistest.AssertKeysExpire(t, b, prefix)
				})
			}
		}
	})
}

func contract(t *testing.T, b *redistest.Backend, lim *limiter.Limiter, prefix string) {
	ctx := context.Background()
	per := limiter.PerMinute(5)

	t.Run("admits exactly the limit, then denies with a retry time", func(t *testing.T) {
		for i := range 5 {
			r, err := lim.Allow(ctx, "exact", per)
			if err != nil || !r.Allowed || r.Remaining != int64(4-i) {
				t.Fatalf("Allow #%d = %+v, %v; want allowed with %d remaining", i+1, r, err, 4-i)
			}
		}
		r, err := lim.Allow(ctx, "exact", per)
		if err != nil || r.Allowed || r.Remaining != 0 {
			t.Fatalf("Allow #6 = %+v, %v; want denied with 0 remaining", r, err)
		}
		// At most two periods: the sliding window's previous count still weighs in the next window
		// (5 requests made early in a minute are followed by the 6th 12s into the next minute).
		if r.RetryAfter <= 0 || r.RetryAfter > 2*time.Minute {
			t.Errorf("RetryAfter = %v, want within (0, 2m]", r.RetryAfter)
		}
		if r.ResetAfter < r.RetryAfter {
			t.Errorf("ResetAfter %v < RetryAfter %v", r.ResetAfter, r.RetryAfter)
		}
	})

	t.Run("a denied request changes nothing", func(t *testing.T) {
		for range 5 {
			if _, err := lim.Allow(ctx, "denied", per); err != nil {
				t.Fatal(err)
			}
		}
		before := dump(t, b, prefix, "denied")
		for range 20 {
			if r, err := lim.Allow(ctx, "denied", per); err != nil || r.Allowed {
				t.Fatalf("Allow = %+v, %v; want denied", r, err)
			}
			if r, err := lim.AllowN(ctx, "denied", per, 3); err != nil || r.Allowed {
				t.Fatalf("AllowN(3) = %+v, %v; want denied", r, err)
			}
		}
		if after := dump(t, b, prefix, "denied"); after != before {
			t.Errorf("denied requests changed the stored state:\nbefore %q\nafter  %q", before, after)
		}
	})

	t.Run("peek counts nothing", func(t *testing.T) {
		for range 10 {
			r, err := lim.Peek(ctx, "peek", per)
			if err != nil || !r.Allowed || r.Remaining != 5 {
				t.Fatalf("Peek = %+v, %v; want allowed with 5 remaining", r, err)
			}
		}
		if _, err := lim.AllowN(ctx, "peek", per, 2); err != nil {
			t.Fatal(err)
		}
		if r, err := lim.Peek(ctx, "peek", per); err != nil || r.Remaining != 3 {
			t.Fatalf("Peek after AllowN(2) = %+v, %v; want 3 remaining", r, err)
		}
	})

	t.Run("a cost above capacity is never allowed", func(t *testing.T) {
		r, err := lim.AllowN(ctx, "never", per, 6)
		if err != nil || r.Allowed || r.RetryAfter != limiter.InfDuration {
			t.Fatalf("AllowN(6) of 5/min = %+v, %v; want denied with RetryAfter InfDuration", r, err)
		}
		if r.Remaining != 5 {
			t.Errorf("Remaining = %d, want 5 (nothing counted)", r.Remaining)
		}
		if _, err := lim.WaitN(ctx, "never", per, 6); err == nil {
			t.Error("WaitN(6) of 5/min returned no error")
		}
	})

	t.Run("reset forgets", func(t *testing.T) {
		for range 5 {
			lim.Allow(ctx, "reset", per)
		}
		if err := lim.Reset(ctx, "reset", per); err != nil {
			t.Fatal(err)
		}
		if r, err := lim.Peek(ctx, "reset", per); err != nil || r.Remaining != 5 || r.ResetAfter != 0 {
			t.Fatalf("Peek after Reset = %+v, %v; want 5 remaining, nothing to reset", r, err)
		}
	})

	t.Run("AllowAll counts all or nothing", func(t *testing.T) {
		fast, slow := limiter.PerSecond(3), limiter.PerHour(4)
		for i := range 3 {
			r, err := lim.AllowAll(ctx, "multi", 1, fast, slow)
			if err != nil || !r.Allowed || len(r.All) != 2 {
				t.Fatalf("AllowAll #%d = %+v, %v; want allowed", i+1, r, err)
			}
		}
		// The hourly limit has 1 left, the per-second one none: denied, and the hourly one keeps its 1.
		r, err := lim.AllowAll(ctx, "multi", 1, fast, slow)
		if err != nil || r.Allowed {
			t.Fatalf("AllowAll #4 = %+v, %v; want denied", r, err)
		}
		if r.Limit != fast || !r.All[1].Allowed || r.All[1].Remaining != 1 {
			t.Errorf("AllowAll #4: binding %v, hourly %+v; want the per-second limit binding and 1 left per hour", r.Limit, r.All[1])
		}
		if p, _ := lim.Peek(ctx, "multi", slow); p.Remaining != 1 {
			t.Errorf("hourly limit has %d left after a denied AllowAll, want 1", p.Remaining)
		}
	})

	t.Run("identifiers with braces and any bytes stay in one slot", func(t *testing.T) {
		for _, id := range []string{"}x", "{", "a{b}c", "%7B", "\x00\xff", strings.Repeat("z", 300)} {
			r, err := lim.AllowAll(ctx, id, 1, limiter.PerSecond(10), limiter.PerMinute(100))
			if err != nil || !r.Allowed {
				t.Fatalf("AllowAll(%q) = %+v, %v", id, r, err)
			}
		}
		// "{" and "%7B" must not share state: the escaping is one to one.
		a, _ := lim.Peek(ctx, "{", limiter.PerSecond(10))
		c, _ := lim.Peek(ctx, "%7B", limiter.PerSecond(10))
		if a.Remaining != 9 || c.Remaining != 9 {
			t.Errorf("remaining for %q and %q = %d and %d, want 9 each", "{", "%7B", a.Remaining, c.Remaining)
		}
	})

	t.Run("invalid input is refused before Redis", func(t *testing.T) {
		cases := []struct {
			name string
			call func() error
			want error
		}{
			{"zero rate", func() error { _, err := lim.Allow(ctx, "k", limiter.PerSecond(0)); return err }, limiter.ErrInvalidLimit},
			{"negative rate", func() error { _, err := lim.Allow(ctx, "k", limiter.PerSecond(-1)); return err }, limiter.ErrInvalidLimit},
			{"zero period", func() error { _, err := lim.Allow(ctx, "k", limiter.Per(1, 0)); return err }, limiter.ErrInvalidLimit},
			{"sub-millisecond period", func() error { _, err := lim.Allow(ctx, "k", limiter.Per(1, 1500*time.Microsecond)); return err }, limiter.ErrInvalidLimit},
			{"negative burst", func() error { _, err := lim.Allow(ctx, "k", limiter.PerSecond(1).WithBurst(-1)); return err }, limiter.ErrInvalidLimit},
			{"huge limit", func() error { _, err := lim.Allow(ctx, "k", limiter.Per(limiter.MaxRate+1, time.Hour)); return err }, limiter.ErrInvalidLimit},
			{"zero cost", func() error { _, err := lim.AllowN(ctx, "k", per, 0); return err }, limiter.ErrInvalidCost},
			{"negative cost", func() error { _, err := lim.AllowN(ctx, "k", per, -3); return err }, limiter.ErrInvalidCost},
			{"empty key", func() error { _, err := lim.Allow(ctx, "", per); return err }, limiter.ErrInvalidKey},
			{"no limits", func() error { _, err := lim.AllowAll(ctx, "k", 1); return err }, limiter.ErrInvalidLimit},
			{"two limits, one key", func() error { _, err := lim.AllowAll(ctx, "k", 1, per, limiter.Per(9, time.Minute)); return err }, limiter.ErrInvalidLimit},
		}
		for _, c := range cases {
			if err := c.call(); !errors.Is(err, c.want) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			}
		}
	})

	t.Run("wait waits until allowed", func(t *testing.T) {
		fast := limiter.Per(2, 200*time.Millisecond)
		start := time.Now()
		for range 5 {
			r, err := lim.Wait(ctx, "wait", fast)
			if err != nil || !r.Allowed {
				t.Fatalf("Wait = %+v, %v", r, err)
			}
		}
		// 5 requests at 2 per 200ms need at least two refills after the first two.
		if el := time.Since(start); el < 150*time.Millisecond {
			t.Errorf("5 waits at 2/200ms took %v; they cannot all have been admitted at once", el)
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		for range 5 {
			lim.Allow(ctx, "wait-deadline", per)
		}
		if _, err := lim.Wait(dctx, "wait-deadline", per); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait past the deadline: err = %v, want DeadlineExceeded", err)
		}
	})
}

// dump returns the stored state of the one key of identifier key under prefix: its serialized value
// and its absolute expiry.
func dump(t *testing.T, b *redistest.Backend, prefix, key string) string {
	t.Helper()
	ctx := context.Background()
	var keys []string
	masters, _ := b.Masters(ctx)
	for _, n := range masters {
		ks, _ := n.Keys(ctx, prefix+"{"+key+"}*").Result()
		keys = append(keys, ks...)
	}
	if len(keys) != 1 {
		t.Fatalf("found keys %q for %q, want one", keys, key)
	}
	v, err := b.Client.Dump(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	at, err := b.Client.PExpireTime(ctx, keys[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%q expiring at %v", v, at)
}
