package integration

import (
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

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/hashicorp/go-retryablehttp"
)

// get sends GET path with the X-Client header set to client, and returns the response with its
// body read.
func get(t *testing.T, srv *httptest.Server, path, client string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Client", client)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

func byHeader(r *http.Request) string { return r.Header.Get("X-Client") }

func limitedServer(t *testing.T, lim *limiter.Limiter, limits []limiter.Limit, opts ...limiter.HTTPOption) *httptest.Server {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewServer(limiter.Middleware(lim, byHeader, limits, opts...)(ok))
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
			res := get(t, srv, "/", "alice")
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
		if res := get(t, srv, "/", "bob"); res.StatusCode != 200 {
			t.Errorf("bob: %s", res.Status)
		}
		for range 3 {
			if res := get(t, srv, "/", ""); res.StatusCode != 200 || res.Header.Get("RateLimit") != "" {
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
			limiter.WithCost(func(r *http.Request) int64 {
				n, _ := strconv.ParseInt(r.URL.Query().Get("cost"), 10, 64)
				return max(n, 1)
			}))
		res := get(t, srv, "/?cost=3", "carol")
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
		res = get(t, srv, "/?cost=3", "carol")
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
		res = get(t, srv, "/?cost=6", "carol")
		if res.StatusCode != 413 || res.Header.Get("Retry-After") != "" {
			t.Errorf("cost over capacity: %s, Retry-After %q", res.Status, res.Header.Get("Retry-After"))
		}
	})
}

// With Redis down, the middleware answers as the limiter's failure policy says.
func TestLimiterMiddlewareRedisDown(t *testing.T) {
	srv, rdb := privateServer(t)
	srv.Stop()
	limit := []limiter.Limit{limiter.PerMinute(10).WithName("api")}
	for _, c := range []struct {
		name       string
		opts       []limiter.Option
		status     int
		retryAfter string
	}{
		{"no policy", nil, 503, ""},
		{"fail open", []limiter.Option{limiter.WithFailOpen()}, 200, ""},
		{"fail closed", []limiter.Option{limiter.WithFailClosed(2500 * time.Millisecond)}, 503, "3"},
	} {
		lim, err := limiter.New(rdb, limiter.SlidingWindow, c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		res := get(t, limitedServer(t, lim, limit), "/", "dave")
		if res.StatusCode != c.status || res.Header.Get("Retry-After") != c.retryAfter || res.Header.Get("RateLimit") != "" {
			t.Errorf("%s: %s, Retry-After %q, RateLimit %q; want %d, Retry-After %q and no RateLimit",
				c.name, res.Status, res.Header.Get("Retry-After"), res.Header.Get("RateLimit"), c.status, c.retryAfter)
		}
	}
}

// arrival is what the server saw of one request: when it came, and what the middleware answered.
type arrival struct {
	at         time.Time
	retryAfter string
	state      string
}

// recordedServer serves the middleware (with the cost taken from the X-Cost header) behind a
// recorder of every request that reaches it.
func recordedServer(t *testing.T, lim *limiter.Limiter, limits []limiter.Limit, opts ...limiter.HTTPOption) (*httptest.Server, func() []arrival) {
	t.Helper()
	var mu sync.Mutex
	var seen []arrival
	cost := limiter.WithCost(func(r *http.Request) int64 {
		n, _ := strconv.ParseInt(r.Header.Get("X-Cost"), 10, 64)
		return max(n, 1)
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mw := limiter.Middleware(lim, byHeader, limits, append([]limiter.HTTPOption{cost}, opts...)...)(ok)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		mw.ServeHTTP(w, r)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, arrival{at: at, retryAfter: w.Header().Get("Retry-After"), state: w.Header().Get("RateLimit")})
	}))
	t.Cleanup(srv.Close)
	return srv, func() []arrival {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// retryingClient is go-retryablehttp's client with its DefaultRetryPolicy and DefaultBackoff,
// waiting at most 10ms between attempts unless the server says otherwise.
func retryingClient(srv *httptest.Server) *retryablehttp.Client {
	c := retryablehttp.NewClient()
	c.HTTPClient = srv.Client()
	c.Logger = nil
	c.RetryMax = 3
	c.RetryWaitMin, c.RetryWaitMax = time.Millisecond, 10*time.Millisecond
	return c
}

// A request that can never be admitted (its cost is above the capacity) is answered 413 Content
// Too Large, without Retry-After (RFC 9110: its absence says the condition is not temporary) and
// without a RateLimit field, whose t could only say "now": go-retryablehttp's DefaultRetryPolicy
// does not retry it. Every algorithm, standalone and cluster.
func TestLimiterMiddlewareNeverAdmitted(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, alg := range []*limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.SlidingLog, limiter.TokenBucket} {
			t.Run(alg.String(), func(t *testing.T) {
				lim, err := limiter.New(b.Client, alg, limiter.WithKeyPrefix(redistest.Prefix(t)))
				if err != nil {
					t.Fatal(err)
				}
				limits := []limiter.Limit{limiter.PerMinute(5).WithName("burst"), limiter.PerHour(100).WithName("hourly")}
				srv, seen := recordedServer(t, lim, limits)
				req, err := retryablehttp.NewRequest(http.MethodGet, srv.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Client", "erin")
				req.Header.Set("X-Cost", "6")
				res, err := retryingClient(srv).Do(req)
				if err != nil {
					s := seen()
					t.Fatalf("go-retryablehttp: %v; the server saw %d attempts, the first answered with RateLimit %q", err, len(s), s[0].state)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if attempts := len(seen()); res.StatusCode != http.StatusRequestEntityTooLarge || attempts != 1 {
					t.Errorf("cost above capacity: %s after %d attempts, want 413 after 1", res.Status, attempts)
				}
				if got := res.Header.Get("RateLimit-Policy"); got != `"burst";q=5;w=60, "hourly";q=100;w=3600` {
					t.Errorf("RateLimit-Policy %q", got)
				}
				for _, f := range []string{"Retry-After", "RateLimit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
					if v, ok := res.Header[f]; ok {
						t.Errorf("cost above capacity: %s %q, want none", f, v)
					}
				}
				// Nothing was counted: the next request of cost 1 leaves 4.
				if res := get(t, srv, "/", "erin"); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("RateLimit"), `"burst";r=4;`) {
					t.Errorf("after the refusal: %s, RateLimit %q", res.Status, res.Header.Get("RateLimit"))
				}
			})
		}
	})
}

// A refusal that can pass later is 429 with Retry-After; go-retryablehttp waits that long (not its
// own 10ms) and its retry is admitted. Asserted on what the server saw: two attempts for the
// refused request, the second no sooner than Retry-After after the first.
func TestLimiterMiddlewareRetryAfterHonoured(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	lim, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv, seen := recordedServer(t, lim, []limiter.Limit{limiter.PerSecond(1).WithName("s")})
	c := retryingClient(srv)
	for i := range 2 {
		req, err := retryablehttp.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Client", "frank")
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("request %d: %s, want 200 (after a retry for the second)", i, res.Status)
		}
	}
	s := seen()
	if len(s) != 3 || s[0].retryAfter != "" || s[1].retryAfter == "" || s[2].retryAfter != "" {
		t.Fatalf("the server saw %+v, want an admission, a refusal with Retry-After, an admission", s)
	}
	wait, _ := strconv.Atoi(s[1].retryAfter)
	if wait < 1 || s[2].at.Sub(s[1].at) < time.Duration(wait)*time.Second {
		t.Errorf("the retry came %v after the refusal, which said Retry-After %q", s[2].at.Sub(s[1].at), s[1].retryAfter)
	}
}

// With Redis down, the local fallback refuses a cost above its share of the capacity (Instances
// 2: 2 of 5) as never; Redis, when back, would admit it. The middleware answers 503 without
// Retry-After or RateLimit, so that a client backs off and tries again, not 413.
func TestLimiterMiddlewareLocalShare(t *testing.T) {
	srv, rdb := privateServer(t)
	srv.Stop()
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailLocal(limiter.LocalFallback{Instances: 2}), limiter.WithFailureLog(nil))
	if err != nil {
		t.Fatal(err)
	}
	web, seen := recordedServer(t, lim, []limiter.Limit{limiter.PerMinute(5).WithName("burst")})
	req, err := http.NewRequest(http.MethodGet, web.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Client", "gina")
	req.Header.Set("X-Cost", "3")
	res, err := web.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != "" || len(seen()) != 1 || seen()[0].state != "" {
		t.Errorf("cost 3 over a local share of 2: %s, Retry-After %q, RateLimit %q; want 503 and neither",
			res.Status, res.Header.Get("Retry-After"), seen()[0].state)
	}
}
