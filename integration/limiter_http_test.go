package integration

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
	"github.com/hashicorp/go-retryablehttp"
	"github.com/rs/cors"
)

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
		for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.SlidingLog, limiter.TokenBucket} {
			t.Run(alg.String(), func(t *testing.T) {
				lim, err := limiter.New(b.Client, alg, limiter.WithKeyPrefix(redistest.Prefix(t)))
				if err != nil {
					t.Fatal(err)
				}
				limits := []limiter.Limit{limiter.PerMinute(5).WithName("burst"), limiter.PerHour(100).WithName("hourly")}
				srv, seen := limitertest.RecordedServer(t, lim, limits, limithttp.WithLegacyFields())
				req, err := retryablehttp.NewRequest(http.MethodGet, srv.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("X-Client", "erin")
				req.Header.Set("X-Cost", "6")
				res, err := retryingClient(srv).Do(req)
				if err != nil {
					s := seen()
					t.Fatalf("go-retryablehttp: %v; the server saw %d attempts, the first answered with RateLimit %q", err, len(s), s[0].State)
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
				if got := res.Header.Get("X-RateLimit-Limit"); got != "5" {
					t.Errorf("X-RateLimit-Limit %q, want the capacity that refused, 5", got)
				}
				// Nothing was counted: the next request of cost 1 leaves 4.
				if res := limitertest.Get(t, srv, "/", "erin"); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("RateLimit"), `"burst";r=4;`) {
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
	srv, seen := limitertest.RecordedServer(t, lim, []limiter.Limit{limiter.PerSecond(1).WithName("s")})
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
	if len(s) != 3 || s[0].RetryAfter != "" || s[1].RetryAfter == "" || s[2].RetryAfter != "" {
		t.Fatalf("the server saw %+v, want an admission, a refusal with Retry-After, an admission", s)
	}
	wait, _ := strconv.Atoi(s[1].RetryAfter)
	if wait < 1 || s[2].At.Sub(s[1].At) < time.Duration(wait)*time.Second {
		t.Errorf("the retry came %v after the refusal, which said Retry-After %q", s[2].At.Sub(s[1].At), s[1].RetryAfter)
	}
}

// WithExposedFields behind a real CORS layer (rs/cors, wrapping the middleware): responses to
// cross-origin requests, admitted or refused, list the rate-limit fields after what the CORS
// layer exposes, which is kept; requests without Origin get nothing added.
func TestLimiterMiddlewareExposedFields(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	app := cors.New(cors.Options{AllowedOrigins: []string{"https://app.example"}, ExposedHeaders: []string{"X-Request-Id"}})
	for _, c := range []struct {
		name string
		opts []limithttp.Option
		want []string
	}{
		{"ietf", []limithttp.Option{limithttp.WithExposedFields()}, []string{"x-request-id", "ratelimit", "ratelimit-policy", "retry-after"}},
		{"legacy", []limithttp.Option{limithttp.WithExposedFields(), limithttp.WithLegacyFields()},
			[]string{"x-request-id", "ratelimit", "ratelimit-policy", "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}},
		{"off", nil, []string{"x-request-id"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(app.Handler(limithttp.Middleware(lim, limitertest.ByClient, []limiter.Limit{limiter.PerMinute(1).WithName(c.name)}, c.opts...)(ok)))
			defer srv.Close()
			for i, status := range []int{200, 429} {
				res, _ := limitertest.Send(t, srv, "X-Client", "kim", "Origin", "https://app.example")
				if res.StatusCode != status || res.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
					t.Fatalf("request %d: %s, Access-Control-Allow-Origin %q", i, res.Status, res.Header.Get("Access-Control-Allow-Origin"))
				}
				if got := limitertest.Exposed(res.Header); !slices.Equal(got, c.want) {
					t.Errorf("request %d: Access-Control-Expose-Headers %q, want %q", i, got, c.want)
				}
			}
			// No Origin: not a CORS request; nothing is added.
			if res := limitertest.Get(t, srv, "/", "lou"); len(res.Header.Values("Access-Control-Expose-Headers")) != 0 {
				t.Errorf("without Origin: Access-Control-Expose-Headers %q", res.Header.Values("Access-Control-Expose-Headers"))
			}
		})
	}
}
