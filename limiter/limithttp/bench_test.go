package limithttp_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
)

// Benchmarks run against the first selected backend ('make bench' selects a private standalone
// server). Compare figures within one run: absolute numbers depend on the machine.

// benchLimiter returns a token-bucket limiter with the scripts loaded.
func benchLimiter(b *testing.B) *limiter.Limiter {
	be := redistest.Get(b, redistest.Names()[0])
	if err := gatehouse.Preload(context.Background(), be.Client); err != nil {
		b.Fatal(err)
	}
	lim, err := limiter.New(be.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(b)))
	if err != nil {
		b.Fatal(err)
	}
	return lim
}

// benchKeys are the identifiers the benchmarks cycle through, made once so that building them is not
// counted.
var benchKeys = func() []string {
	k := make([]string, 1000)
	for i := range k {
		k[i] = "client-" + strconv.Itoa(i)
	}
	return k
}()

// The HTTP middleware around a handler that writes nothing, against a direct AllowAll with the
// same two limits: what the RateLimit fields and the plumbing add per request.
func BenchmarkMiddleware(b *testing.B) {
	lim := benchLimiter(b)
	limits := []limiter.Limit{limiter.PerSecond(1 << 30).WithName("burst"), limiter.PerHour(1 << 30).WithName("hourly")}
	b.Run("AllowAll", func(b *testing.B) {
		ctx := context.Background()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := lim.AllowAll(ctx, benchKeys[i%len(benchKeys)], 1, limits...); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	clientIP, err := limithttp.ByClientIP(limithttp.ClientIP{TrustedProxies: []string{"10.0.0.0/8"}})
	if err != nil {
		b.Fatal(err)
	}
	// The middleware alone, then with each option that adds work to an admitted request.
	for _, c := range []struct {
		name string
		opts []limithttp.Option
		key  func(i int) limithttp.KeyFunc
		req  func(r *http.Request)
	}{
		{name: "Middleware"},
		{name: "Middleware/legacy", opts: []limithttp.Option{limithttp.WithLegacyFields()}},
		{name: "Middleware/exposed", opts: []limithttp.Option{limithttp.WithExposedFields()},
			req: func(r *http.Request) { r.Header.Set("Origin", "https://app.example") }},
		{name: "Middleware/client-ip", key: func(int) limithttp.KeyFunc { return clientIP },
			req: func(r *http.Request) {
				r.RemoteAddr = "10.0.0.1:4000"
				r.Header.Set("X-Forwarded-For", "203.0.113.9, 10.0.0.2")
			}},
	} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			var key limithttp.KeyFunc = func(*http.Request) string { return benchKeys[i%len(benchKeys)] }
			if c.key != nil {
				key = c.key(i)
			}
			h := limithttp.Middleware(lim, key, limits, c.opts...)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if c.req != nil {
				c.req(req)
			}
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				clear(w.Header())
				h.ServeHTTP(w, req)
				// By the canonical name: Get("RateLimit") would allocate the canonical form, a
				// cost of the benchmark's own.
				if len(w.Header()["Ratelimit"]) == 0 {
					b.Fatal("no RateLimit field")
				}
				i++
			}
		})
	}
}
