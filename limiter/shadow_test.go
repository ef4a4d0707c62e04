package limiter_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// A limit in shadow mode is rolled out beside an enforced one: it decides and counts as if
// enforced, but its refusals admit the request, say Shadow, and do not stop the enforced limit
// from counting. Its state holds what the limit would hold were it enforced.
func TestLimiterShadowLimit(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			t.Run(a.alg.String(), func(t *testing.T) {
				ctx := context.Background()
				prefix := redistest.Prefix(t)
				now := time.UnixMicro((time.Now().UnixMicro()/3600e6+1)*3600e6 + 60e6)
				lim, err := limiter.New(b.Client, a.alg, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return now }))
				if err != nil {
					t.Fatal(err)
				}
				api := limiter.PerHour(5).WithName("api")
				tight := limiter.PerHour(2).WithName("new").WithShadow()
				for i := range 5 {
					r, err := lim.AllowAll(ctx, "c", 1, api, tight)
					wantShadow := i >= 2
					if err != nil || !r.Allowed || r.Shadow != wantShadow || r.All[0].Remaining != int64(4-i) ||
						r.All[1].Shadow != wantShadow || !r.All[1].Allowed || r.All[0].Shadow {
						t.Fatalf("request %d: %+v, %v; want admitted, shadow %v, %d left under api", i, r, err, wantShadow, 4-i)
					}
					if wantShadow && (r.Limit != tight || r.RetryAfter <= 0 || r.RetryAfter > 2*time.Hour || r.All[1].Remaining != 0) {
						t.Errorf("request %d: %+v; want the shadow refusal binding, with its retry-after", i, r)
					}
				}
				// The shadow limit counted only what it admitted: 2, as if enforced.
				if r, err := lim.Peek(ctx, "c", tight); err != nil || r.Remaining != 0 || !r.Shadow {
					t.Errorf("Peek of the shadow limit: %+v, %v; want 0 left, a shadow refusal", r, err)
				}
				if r, err := lim.Peek(ctx, "c", api.WithShadow()); err != nil || r.Remaining != 0 {
					t.Errorf("Peek of api, same key in shadow mode: %+v, %v; want its 0 left", r, err)
				}
				// The enforced limit refuses: refused, and Shadow says the new one would have too.
				r, err := lim.AllowAll(ctx, "c", 1, api, tight)
				if err != nil || r.Allowed || !r.Shadow || r.Limit != api || r.RetryAfter <= 0 {
					t.Fatalf("request 6: %+v, %v; want refused by api, Shadow set", r, err)
				}

				// A wide shadow limit beside a tight enforced one: a request refused by the enforced
				// limit is not counted by the shadow limit either.
				narrow, wide := limiter.PerHour(2).WithName("narrow"), limiter.PerHour(10).WithName("wide").WithShadow()
				for i := range 4 {
					r, err := lim.AllowAll(ctx, "d", 1, narrow, wide)
					if err != nil || r.Allowed != (i < 2) || r.Shadow {
						t.Fatalf("narrow/wide request %d: %+v, %v", i, r, err)
					}
				}
				if r, err := lim.Peek(ctx, "d", wide); err != nil || r.Remaining != 8 {
					t.Errorf("Peek of the wide shadow limit: %+v, %v; want 8 left (2 admitted)", r, err)
				}

				// A cost above the shadow limit's capacity is a shadow refusal "never".
				if r, err := lim.AllowAll(ctx, "e", 3, api, tight); err != nil || !r.Allowed || !r.Shadow || r.RetryAfter != limiter.InfDuration || r.All[0].Remaining != 2 {
					t.Errorf("cost 3 over a shadow limit of 2: %+v, %v; want admitted by api, a shadow refusal never", r, err)
				}
				// Moved from shadow to enforcing, the limit keeps its count.
				if r, err := lim.Allow(ctx, "c", limiter.PerHour(2).WithName("new")); err != nil || r.Allowed || r.Shadow {
					t.Errorf("the new limit enforced: %+v, %v; want refused (it holds 2)", r, err)
				}
				redistest.AssertKeysExpire(t, b, prefix)
			})
		}
	})
}

// With Redis down, the failure policy decides, and shadow mode still refuses nothing: a
// fail-closed refusal of a limit in shadow mode admits; the local fallback counts as the scripts do.
// The deny cache keeps only enforced refusals.
func TestLimiterShadowWhenRedisFails(t *testing.T) {
	srv, rdb := redistest.Private(t)
	ctx := context.Background()
	closed, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailClosed(time.Second)), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	local, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	cached, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithDenyCache(10))
	if err != nil {
		t.Fatal(err)
	}
	api, next := limiter.PerHour(1).WithName("api"), limiter.PerHour(1).WithName("next").WithShadow()

	// The deny cache: a refusal by a shadow limit alone is not cached; an enforced one is.
	if r, err := cached.AllowAll(ctx, "x", 1, limiter.PerHour(5).WithName("wide"), next); err != nil || !r.Allowed || r.Shadow {
		t.Fatalf("first: %+v, %v", r, err)
	}
	if r, err := cached.AllowAll(ctx, "x", 1, limiter.PerHour(5).WithName("wide"), next); err != nil || !r.Allowed || !r.Shadow || r.Source != limiter.SourceRedis {
		t.Fatalf("second: %+v, %v; want a shadow refusal from Redis", r, err)
	}
	if r, err := cached.AllowAll(ctx, "x", 1, limiter.PerHour(5).WithName("wide"), next); err != nil || !r.Allowed || r.Source != limiter.SourceRedis {
		t.Fatalf("third: %+v, %v; want Redis asked again (nothing cached)", r, err)
	}

	srv.Stop()
	r, err := closed.AllowAll(ctx, "k", 1, next)
	if err != nil || !r.Allowed || !r.Shadow || r.Source != limiter.SourceFailClosed {
		t.Errorf("fail-closed, a shadow limit only: %+v, %v; want admitted, Shadow", r, err)
	}
	r, err = closed.AllowAll(ctx, "k", 1, api, next)
	if err != nil || r.Allowed || r.Source != limiter.SourceFailClosed {
		t.Errorf("fail-closed, an enforced limit: %+v, %v; want refused", r, err)
	}
	for i := range 3 {
		r, err := local.AllowAll(ctx, "k", 1, limiter.PerHour(2).WithName("two"), next)
		if err != nil || !r.Allowed != (i == 2) || r.Shadow != (i >= 1) || r.Source != limiter.SourceLocal {
			t.Errorf("local %d: %+v, %v", i, r, err)
		}
	}
}
