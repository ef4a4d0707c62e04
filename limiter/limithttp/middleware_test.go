package limithttp_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
)

func limitedServer(t *testing.T, lim *limiter.Limiter, limits []limiter.Limit, opts ...limithttp.Option) *httptest.Server {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewServer(limithttp.Middleware(lim, limitertest.ByClient, limits, opts...)(ok))
	t.Cleanup(srv.Close)
	return srv
}

// The middleware over real HTTP and real Redis: admitted, then refused with 429, the IETF fields
// on both, Retry-After on the refusal, and exempt requests untouched.
func TestLimiterMiddleware(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		srv := limitedServer(t, lim, []limiter.Limit{limiter.PerMinute(2).WithName("api")})
		for i, want := range []struct {
			status    int
			remaining string
		}{{200, "1"}, {200, "0"}, {429, "0"}, {429, "0"}} {
			res := limitertest.Get(t, srv, "/", "alice")
			if res.StatusCode != want.status {
				t.Fatalf("request %d: %s, want %d", i, res.Status, want.status)
			}
			if got := res.Header.Get("RateLimit-Policy"); got != `"api";q=2;w=60` {
				t.Errorf("request %d: RateLimit-Policy %q", i, got)
			}
			state := res.Header.Get("RateLimit")
			var r, tt int
			if _, err := fmt.Sscanf(state, `"api";r=%d;t=%d`, &r, &tt); err != nil || strconv.Itoa(r) != want.remaining || tt < 1 || tt > 60 {
				t.Errorf("request %d: RateLimit %q, want r=%s and 1 <= t <= 60", i, state, want.remaining)
			}
			retry := res.Header.Get("Retry-After")
			if want.status == 429 {
				s, err := strconv.Atoi(retry)
				if err != nil || s < 1 || s > 60 || s != tt {
					t.Errorf("request %d: Retry-After %q, want the window's end (t=%d)", i, retry, tt)
				}
			} else if retry != "" {
				t.Errorf("request %d: Retry-After %q on an admitted request", i, retry)
			}
		}
		// Another client has its own quota; an empty identifier is exempt and gets no fields.
		if res := limitertest.Get(t, srv, "/", "bob"); res.StatusCode != 200 {
			t.Errorf("bob: %s", res.Status)
		}
		for range 3 {
			if res := limitertest.Get(t, srv, "/", ""); res.StatusCode != 200 || res.Header.Get("RateLimit") != "" {
				t.Errorf("exempt request: %s, RateLimit %q", res.Status, res.Header.Get("RateLimit"))
			}
		}
	})
}

// Several limits are decided at once and each gets its item; per-request limits and costs apply.
func TestLimiterMiddlewareSeveralLimits(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		lim, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		burst := limiter.PerMinute(1).WithBurst(5).WithName("burst")
		hourly := limiter.PerHour(100).WithName("hourly")
		srv := limitedServer(t, lim, []limiter.Limit{burst, hourly},
			limithttp.WithCost(func(r *http.Request) int64 {
				n, _ := strconv.ParseInt(r.URL.Query().Get("cost"), 10, 64)
				return max(n, 1)
			}))
		res := limitertest.Get(t, srv, "/?cost=3", "carol")
		if res.StatusCode != 200 {
			t.Fatalf("%s", res.Status)
		}
		if got, want := res.Header.Get("RateLimit-Policy"), `"burst";q=5;w=300, "hourly";q=100;w=3600`; got != want {
			t.Errorf("RateLimit-Policy %q, want %q", got, want)
		}
		if got, want := res.Header.Get("RateLimit"), `"burst";r=2;t=180, "hourly";r=97;t=108`; got != want {
			t.Errorf("RateLimit %q, want %q", got, want)
		}
		// Cost 3 again: the burst limit refuses (one more token comes within a minute), and the
		// hourly one is not charged.
		res = limitertest.Get(t, srv, "/?cost=3", "carol")
		var r1, t1, r2, t2 int
		state := res.Header.Get("RateLimit")
		if _, err := fmt.Sscanf(state, `"burst";r=%d;t=%d, "hourly";r=%d;t=%d`, &r1, &t1, &r2, &t2); err != nil ||
			r1 != 2 || t1 < 179 || t1 > 180 || r2 != 97 || t2 < 107 || t2 > 108 {
			t.Errorf("refused: RateLimit %q, want burst r=2 t=180 and hourly r=97 t=108, less the time passed", state)
		}
		if retry, _ := strconv.Atoi(res.Header.Get("Retry-After")); res.StatusCode != 429 || retry < 59 || retry > 60 {
			t.Errorf("over the burst: %s, Retry-After %q, want 429 and 60 s less the time passed", res.Status, res.Header.Get("Retry-After"))
		}
		// A cost over the capacity can never be admitted: 413 with no Retry-After.
		res = limitertest.Get(t, srv, "/?cost=6", "carol")
		if res.StatusCode != 413 || res.Header.Get("Retry-After") != "" {
			t.Errorf("cost over capacity: %s, Retry-After %q", res.Status, res.Header.Get("Retry-After"))
		}
	})
}

// With Redis down, the middleware answers as the limiter's failure policy says.
func TestLimiterMiddlewareRedisDown(t *testing.T) {
	srv, rdb := redistest.Private(t)
	srv.Stop()
	limit := []limiter.Limit{limiter.PerMinute(10).WithName("api")}
	for _, c := range []struct {
		name       string
		opts       []limiter.Option
		status     int
		retryAfter string
	}{
		{"no policy", nil, 503, ""},
		{"fail open", []limiter.Option{limiter.WithFailurePolicy(limiter.FailOpen())}, 200, ""},
		{"fail closed", []limiter.Option{limiter.WithFailurePolicy(limiter.FailClosed(2500 * time.Millisecond))}, 503, "3"},
	} {
		lim, err := limiter.New(rdb, limiter.SlidingWindow, c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		res := limitertest.Get(t, limitedServer(t, lim, limit, limithttp.WithLegacyFields()), "/", "dave")
		if res.StatusCode != c.status || res.Header.Get("Retry-After") != c.retryAfter || res.Header.Get("RateLimit") != "" {
			t.Errorf("%s: %s, Retry-After %q, RateLimit %q; want %d, Retry-After %q and no RateLimit",
				c.name, res.Status, res.Header.Get("Retry-After"), res.Header.Get("RateLimit"), c.status, c.retryAfter)
		}
		// What is known of the quota without Redis: its size only.
		if c.status != 503 || c.retryAfter != "" {
			if res.Header.Get("X-RateLimit-Limit") != "10" || res.Header.Get("X-RateLimit-Remaining") != "" || res.Header.Get("X-RateLimit-Reset") != "" {
				t.Errorf("%s: legacy fields %v, want X-RateLimit-Limit only", c.name, res.Header)
			}
		}
	}
}

// With Redis down, the local fallback refuses a cost above its share of the capacity (Instances
// 2: 2 of 5) as never; Redis, when back, would admit it. The middleware answers 503 without
// Retry-After or RateLimit, so that a client backs off and tries again, not 413.
func TestLimiterMiddlewareLocalShare(t *testing.T) {
	srv, rdb := redistest.Private(t)
	srv.Stop()
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{Instances: 2})), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	web, seen := limitertest.RecordedServer(t, lim, []limiter.Limit{limiter.PerMinute(5).WithName("burst")})
	res, _ := limitertest.Send(t, web, "X-Client", "gina", "X-Cost", "3")
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "" || len(seen()) != 1 || seen()[0].State != "" {
		t.Errorf("cost 3 over a local share of 2: %s, Retry-After %q, RateLimit %q; want 503 and neither",
			res.Status, res.Header.Get("Retry-After"), seen()[0].State)
	}
}

// WithLegacyFields: X-RateLimit-Limit, -Remaining and -Reset describe the binding limit (the one
// with the fewest remaining, or the one that refused), Reset in epoch seconds at the end of that
// limit's t; without the option, none of them.
func TestLimiterMiddlewareLegacyFields(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.TokenBucket} {
			t.Run(alg.String(), func(t *testing.T) {
				lim, err := limiter.New(b.Client, alg, limiter.WithKeyPrefix(redistest.Prefix(t)))
				if err != nil {
					t.Fatal(err)
				}
				minute := limiter.PerMinute(3) // the windows' capacity is the rate, the bucket's its burst
				if alg == limiter.TokenBucket {
					minute = limiter.PerMinute(1).WithBurst(3)
				}
				limits := []limiter.Limit{limiter.PerHour(100).WithName("hourly"), minute.WithName("minute")}
				srv := limitedServer(t, lim, limits, limithttp.WithLegacyFields())
				for i, want := range []struct {
					status    int
					remaining string
				}{{200, "2"}, {200, "1"}, {200, "0"}, {429, "0"}} {
					before := time.Now()
					res := limitertest.Get(t, srv, "/", "hank")
					after := time.Now()
					if res.StatusCode != want.status {
						t.Fatalf("request %d: %s, want %d", i, res.Status, want.status)
					}
					var r1, t1, r2, t2 int
					if _, err := fmt.Sscanf(res.Header.Get("RateLimit"), `"hourly";r=%d;t=%d, "minute";r=%d;t=%d`, &r1, &t1, &r2, &t2); err != nil {
						t.Fatalf("request %d: RateLimit %q: %v", i, res.Header.Get("RateLimit"), err)
					}
					if got := res.Header.Get("X-RateLimit-Limit"); got != "3" {
						t.Errorf("request %d: X-RateLimit-Limit %q, want the minute limit's capacity, 3", i, got)
					}
					if got := res.Header.Get("X-RateLimit-Remaining"); got != want.remaining || got != strconv.Itoa(r2) {
						t.Errorf("request %d: X-RateLimit-Remaining %q, want %s (r=%d)", i, got, want.remaining, r2)
					}
					// Reset is the instant t (rounded up) ends, in epoch seconds: within a second of
					// when the request was decided, plus t.
					reset, err := strconv.ParseInt(res.Header.Get("X-RateLimit-Reset"), 10, 64)
					lo, hi := float64(before.UnixNano())/1e9+float64(t2)-1, float64(after.UnixNano())/1e9+float64(t2)+1
					if err != nil || float64(reset) <= lo || float64(reset) >= hi {
						t.Errorf("request %d: X-RateLimit-Reset %q, want epoch seconds in (%.1f, %.1f) for t=%d", i, res.Header.Get("X-RateLimit-Reset"), lo, hi, t2)
					}
				}
				plain := limitedServer(t, lim, limits)
				if res := limitertest.Get(t, plain, "/", "ivan"); res.Header.Get("X-RateLimit-Limit") != "" || res.Header.Get("X-RateLimit-Reset") != "" {
					t.Errorf("without WithLegacyFields: %v", res.Header)
				}
			})
		}
	})
}

// problemBody is what ProblemDetails writes.
type problemBody struct {
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Status     int      `json:"status"`
	Detail     string   `json:"detail"`
	Violated   []string `json:"violated-policies"`
	RetryAfter *int64   `json:"retry_after"`
}

// getProblem sends GET with the client and cost given, and decodes the problem details body.
func getProblem(t *testing.T, srv *httptest.Server, client, cost string) (*http.Response, problemBody, string) {
	t.Helper()
	res, raw := limitertest.Send(t, srv, "X-Client", client, "X-Cost", cost)
	var p problemBody
	if res.StatusCode != 200 {
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("%s: body %q is not JSON: %v", res.Status, raw, err)
		}
	}
	return res, p, string(raw)
}

// WithDeniedHandler(ProblemDetails): each refusal as RFC 9457 problem details, with the status and
// Retry-After of the default handler, and no identifier in the body.
func TestLimiterMiddlewareProblemDetails(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		lim, err := limiter.New(b.Client, limiter.SlidingWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		limits := []limiter.Limit{limiter.PerMinute(4).WithName("minute"), limiter.PerHour(3).WithName("hourly"), limiter.PerHour(100)}
		srv, _ := limitertest.RecordedServer(t, lim, limits, limithttp.WithDeniedHandler(limithttp.ProblemDetails))
		const who = "user-4242@example.com"
		if res, _, _ := getProblem(t, srv, who, "3"); res.StatusCode != 200 {
			t.Fatalf("first request: %s", res.Status)
		}
		// Cost 1: the hourly limit (3) is used up; the minute one (1 left) would admit it.
		res, p, raw := getProblem(t, srv, who, "1")
		retry, _ := strconv.ParseInt(res.Header.Get("Retry-After"), 10, 64)
		if res.StatusCode != 429 || res.Header.Get("Content-Type") != "application/problem+json" || retry < 1 {
			t.Fatalf("refusal: %s, Content-Type %q, Retry-After %q", res.Status, res.Header.Get("Content-Type"), res.Header.Get("Retry-After"))
		}
		if p.Type != limithttp.ProblemTypeQuotaExceeded || p.Title == "" || p.Status != 429 || p.Detail == "" ||
			!slices.Equal(p.Violated, []string{"hourly"}) || p.RetryAfter == nil || *p.RetryAfter != retry {
			t.Errorf("refusal: %s, want quota-exceeded, status 429, violated [hourly], retry_after %d", raw, retry)
		}
		// Cost 4: above the hourly capacity (3), and refused for now by the minute limit (1 left):
		// 413, naming only the limit whose capacity the cost exceeds, no retry_after.
		res, p, raw = getProblem(t, srv, who, "4")
		if res.StatusCode != 413 || res.Header.Get("Retry-After") != "" || p.Status != 413 || p.Type != limithttp.ProblemTypeQuotaExceeded ||
			!slices.Equal(p.Violated, []string{"hourly"}) || p.RetryAfter != nil {
			t.Errorf("cost above capacity: %s, Retry-After %q, %s; want 413, violated [hourly], no retry_after", res.Status, res.Header.Get("Retry-After"), raw)
		}
		if strings.Contains(raw, who) || strings.Contains(raw, "4242") || strings.Contains(raw, redistest.Prefix(t)) {
			t.Errorf("the body names the identifier: %s", raw)
		}
	})
	// Redis down, failing closed: 503 about:blank, with the policy's Retry-After.
	srv, rdb := redistest.Private(t)
	srv.Stop()
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailClosed(2*time.Second)), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	web, _ := limitertest.RecordedServer(t, lim, []limiter.Limit{limiter.PerMinute(2)}, limithttp.WithDeniedHandler(limithttp.ProblemDetails))
	res, p, raw := getProblem(t, web, "jo", "1")
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "2" || p.Type != "about:blank" || p.Status != 503 || p.RetryAfter == nil || *p.RetryAfter != 2 {
		t.Errorf("failing closed: %s, Retry-After %q, %s", res.Status, res.Header.Get("Retry-After"), raw)
	}
}

// A CORS layer may set the same slice on every response (rs/cors does); the middleware adds its
// names in a new array, even when that slice has room to spare, so that responses never share
// (or race on) what it appends.
func TestLimiterMiddlewareExposedFieldsShared(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	shared := make([]string, 1, 4)
	shared[0] = "X-Request-Id"
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	mw := limithttp.Middleware(lim, limitertest.ByClient, []limiter.Limit{limiter.PerMinute(1000)}, limithttp.WithExposedFields())(ok)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Access-Control-Expose-Headers"] = shared
		mw.ServeHTTP(w, r)
	}))
	defer srv.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set("X-Client", "client-"+strconv.Itoa(i))
			req.Header.Set("Origin", "https://app.example")
			res, err := srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			if got := limitertest.Exposed(res.Header); len(got) != 4 || got[0] != "x-request-id" {
				t.Errorf("Access-Control-Expose-Headers %q", got)
			}
		})
	}
	wg.Wait()
	if spare := shared[:cap(shared)]; spare[1] != "" {
		t.Errorf("the CORS layer's slice was written past its length: %q", spare)
	}
}

// ByClientIP over real HTTP and Redis. Behind a trusted proxy (the test's own loopback address),
// each client named in X-Forwarded-For has its own quota, and the addresses of one IPv6 /64 share
// one. From a peer that is not trusted, spoofed X-Forwarded-For and Forwarded headers buy nothing:
// every request counts against the peer's address.
func TestLimiterMiddlewareClientIP(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
		serve := func(name string, c limithttp.ClientIP) *httptest.Server {
			key, err := limithttp.ByClientIP(c)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(limithttp.Middleware(lim, key, []limiter.Limit{limiter.PerMinute(2).WithName(name)})(ok))
			t.Cleanup(srv.Close)
			return srv
		}
		status := func(srv *httptest.Server, field, value string) int {
			res, _ := limitertest.Send(t, srv, field, value)
			return res.StatusCode
		}
		behind := serve("xff", limithttp.ClientIP{TrustedProxies: []string{"127.0.0.1"}})
		for i, c := range []struct {
			xff  string
			want int
		}{
			{"203.0.113.1", 200}, {"203.0.113.1", 200}, {"203.0.113.1", 429},
			{"198.51.100.2, 127.0.0.1", 200}, // a trusted hop is skipped
			{"spoofed, 203.0.113.2", 200}, {"203.0.113.2", 200}, {"1.1.1.1, 203.0.113.2", 429},
			{"2001:db8:1:2::1", 200}, {"[2001:db8:1:2::ffff]:443", 200}, {"2001:db8:1:2:aaaa::9", 429},
			{"2001:db8:1:3::1", 200},
		} {
			if got := status(behind, "X-Forwarded-For", c.xff); got != c.want {
				t.Errorf("behind a trusted proxy, request %d from %s: %d, want %d", i, c.xff, got, c.want)
			}
		}
		fwd := serve("forwarded", limithttp.ClientIP{TrustedProxies: []string{"127.0.0.0/8"}, Header: "Forwarded"})
		for i, c := range []struct {
			fwd  string
			want int
		}{
			{`for="[2001:db8:9::1]:1234";proto=https`, 200}, {`for="[2001:db8:9::2]"`, 200}, {`for=1.1.1.1, for="[2001:db8:9::3]:80"`, 429},
			{`for="_hidden"`, 200}, {"for=unknown", 200}, {"proto=https", 429}, // no address: the proxy's own quota
		} {
			if got := status(fwd, "Forwarded", c.fwd); got != c.want {
				t.Errorf("behind a trusted proxy, request %d with Forwarded %s: %d, want %d", i, c.fwd, got, c.want)
			}
		}
		// Not behind a trusted proxy: a fresh identity in every request is ignored.
		direct := serve("direct", limithttp.ClientIP{TrustedProxies: []string{"10.0.0.0/8"}})
		for i, h := range [][2]string{{"X-Forwarded-For", "203.0.113.50"}, {"Forwarded", "for=203.0.113.51"}, {"X-Forwarded-For", "10.0.0.7"}, {"X-Forwarded-For", "2001:db8::1"}} {
			want := 200
			if i >= 2 {
				want = 429
			}
			if got := status(direct, h[0], h[1]); got != want {
				t.Errorf("untrusted peer, request %d with %s %s: %d, want %d", i, h[0], h[1], got, want)
			}
		}
	})
}
