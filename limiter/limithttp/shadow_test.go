package limithttp_test

import (
	"fmt"
	"testing"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
)

// Shadow mode is a dry run: the client sees what it would see without the limits in shadow mode.
// Beside an enforced limit, a limit in shadow mode is in no field, and a request only it refuses
// is passed on with the enforced limit's fields (the binding one for the legacy fields). Under
// WithShadowMode, responses carry no rate-limit field at all, and nothing is refused.
func TestLimiterMiddlewareShadow(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		api, next := limiter.PerHour(5).WithName("api"), limiter.PerHour(1).WithName("next").WithShadow()
		srv := limitedServer(t, lim, []limiter.Limit{api, next}, limithttp.WithLegacyFields())
		for i := range 3 {
			res := limitertest.Get(t, srv, "/", "kim")
			if res.StatusCode != 200 {
				t.Fatalf("request %d: %s, want 200 (only the shadow limit refuses from the second)", i, res.Status)
			}
			if got := res.Header.Get("RateLimit-Policy"); got != `"api";q=5;w=3600` {
				t.Errorf("request %d: RateLimit-Policy %q, want the enforced limit alone", i, got)
			}
			var r, tt int
			state := res.Header.Get("RateLimit")
			if _, err := fmt.Sscanf(state, `"api";r=%d;t=%d`, &r, &tt); err != nil || r != 4-i || len(state) != len(fmt.Sprintf(`"api";r=%d;t=%d`, r, tt)) {
				t.Errorf("request %d: RateLimit %q, want api's item alone, r=%d", i, state, 4-i)
			}
			if got := res.Header.Get("X-RateLimit-Remaining"); got != fmt.Sprint(4-i) || res.Header.Get("X-RateLimit-Limit") != "5" {
				t.Errorf("request %d: X-RateLimit-Limit %q, -Remaining %q; want api's 5 and %d", i, res.Header.Get("X-RateLimit-Limit"), got, 4-i)
			}
			if got := res.Header.Get("Retry-After"); got != "" {
				t.Errorf("request %d: Retry-After %q on an admitted request", i, got)
			}
		}
		// Only limits in shadow mode: no field at all.
		alone := limitedServer(t, lim, []limiter.Limit{next.WithName("alone")}, limithttp.WithLegacyFields())
		for i := range 2 {
			res := limitertest.Get(t, alone, "/", "lee")
			if res.StatusCode != 200 || len(rateLimitFields(res.Header)) != 0 {
				t.Errorf("a shadow limit alone, request %d: %s, fields %v; want 200 and none", i, res.Status, rateLimitFields(res.Header))
			}
		}

		dry, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(t)), limiter.WithShadowMode())
		if err != nil {
			t.Fatal(err)
		}
		srv = limitedServer(t, dry, []limiter.Limit{limiter.PerHour(1).WithName("api")}, limithttp.WithLegacyFields())
		for i := range 3 {
			res := limitertest.Get(t, srv, "/", "max")
			if res.StatusCode != 200 || len(rateLimitFields(res.Header)) != 0 {
				t.Errorf("WithShadowMode, request %d: %s, fields %v; want 200 and none", i, res.Status, rateLimitFields(res.Header))
			}
		}
		// The limiter did decide: the limit is used up.
		if r, err := dry.Peek(t.Context(), "max", limiter.PerHour(1).WithName("api")); err != nil || r.Remaining != 0 || !r.Shadow {
			t.Errorf("Peek after the dry run: %+v, %v; want 0 left, a shadow refusal", r, err)
		}
	})
}

// rateLimitFields returns the rate-limit fields of h that are set.
func rateLimitFields(h map[string][]string) []string {
	var set []string
	for _, name := range []string{"Ratelimit", "Ratelimit-Policy", "Retry-After", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} {
		if len(h[name]) > 0 {
			set = append(set, name)
		}
	}
	return set
}
