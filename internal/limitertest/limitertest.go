// Package limitertest holds what the limiter's tests share across packages: the algorithms, and
// where a limiter keeps an identifier's state.
package limitertest

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

	"github.com/gatehouse/gatehouse/limiter"
)

// Algorithms are the limiter's algorithms, in the order tests run them.
var Algorithms = []*limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.SlidingLog, limiter.TokenBucket}

// Key returns the Redis key of the state of identifier id under limit, for a limiter with the key
// prefix prefix (limiter.DefaultKeyPrefix without WithKeyPrefix).
func Key(prefix string, alg *limiter.Algorithm, id string, limit limiter.Limit) string {
	tag := map[*limiter.Algorithm]string{limiter.FixedWindow: "fw", limiter.SlidingWindow: "sw", limiter.SlidingLog: "sl", limiter.TokenBucket: "tb"}[alg]
	name := fmt.Sprint(limit.Period.Milliseconds())
	if limit.Name != "" {
		name = "n" + limit.Name
	}
	return prefix + "{" + id + "}:" + tag + ":" + name
}

// Arrival is what a RecordedServer saw of one request: when it came, and what the middleware
// answered in Retry-After and RateLimit.
type Arrival struct {
	At         time.Time
	RetryAfter string
	State      string
}

// RecordedServer serves limiter.Middleware over lim and limits, keyed by the X-Client header and
// with the cost taken from the X-Cost header, behind a recorder of every request that reaches it;
// the function it returns lists what the server saw so far.
func RecordedServer(t testing.TB, lim *limiter.Limiter, limits []limiter.Limit, opts ...limiter.HTTPOption) (*httptest.Server, func() []Arrival) {
	t.Helper()
	var mu sync.Mutex
	var seen []Arrival
	cost := limiter.WithCost(func(r *http.Request) int64 {
		n, _ := strconv.ParseInt(r.Header.Get("X-Cost"), 10, 64)
		return max(n, 1)
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mw := limiter.Middleware(lim, ByClient, limits, append([]limiter.HTTPOption{cost}, opts...)...)(ok)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		mw.ServeHTTP(w, r)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, Arrival{At: at, RetryAfter: w.Header().Get("Retry-After"), State: w.Header().Get("RateLimit")})
	}))
	t.Cleanup(srv.Close)
	return srv, func() []Arrival {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// Get sends GET path with the X-Client header set to client, and returns the response with its
// body read.
func Get(t testing.TB, srv *httptest.Server, path, client string) *http.Response {
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

// ByClient is the key function of the tests' servers: the X-Client header.
func ByClient(r *http.Request) string { return r.Header.Get("X-Client") }

// Send sends GET / to srv with the header fields given as name, value pairs, and returns the
// response and its body.
func Send(t testing.TB, srv *httptest.Server, fields ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(fields); i += 2 {
		req.Header.Set(fields[i], fields[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

// Exposed returns the field names an Access-Control-Expose-Headers response lists, lowercased.
func Exposed(h http.Header) []string {
	var names []string
	for _, v := range h.Values("Access-Control-Expose-Headers") {
		for n := range strings.SplitSeq(v, ",") {
			names = append(names, strings.ToLower(strings.TrimSpace(n)))
		}
	}
	return names
}
