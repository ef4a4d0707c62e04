// Package limitertest holds what the limiter's tests share across packages: the algorithms, and
// where a limiter keeps an identifier's state.
package limitertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
)

// Algorithms are the limiter's algorithms, in the order tests run them.
var Algorithms = []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.SlidingLog, limiter.TokenBucket}

// Discard is a logger that drops every record, for tests whose failures are expected.
var Discard = slog.New(slog.DiscardHandler)

// Logs is a slog.Handler that keeps every record, at every level, for tests to inspect.
type Logs struct {
	mu      sync.Mutex
	records []slog.Record
}

// Logger returns a logger writing to l.
func (l *Logs) Logger() *slog.Logger { return slog.New(l) }

// Records returns the records kept so far.
func (l *Logs) Records() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records)
}

// Len returns how many records were kept.
func (l *Logs) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.records)
}

// Text returns the records as text, one a line: level, message and attributes, for searching.
func (l *Logs) Text() string {
	var b strings.Builder
	for _, r := range l.Records() {
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		b.WriteByte('\n')
	}
	return b.String()
}

// Enabled implements slog.Handler: every level.
func (l *Logs) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *Logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

// WithAttrs implements slog.Handler; the tests' loggers add no attributes of their own.
func (l *Logs) WithAttrs([]slog.Attr) slog.Handler { return l }

// WithGroup implements slog.Handler; the tests' loggers open no groups.
func (l *Logs) WithGroup(string) slog.Handler { return l }

// Key returns the Redis key of the state of identifier id under limit, for a limiter with the key
// prefix prefix (limiter.DefaultKeyPrefix without WithKeyPrefix).
func Key(prefix string, alg limiter.Algorithm, id string, limit limiter.Limit) string {
	tag := [...]string{limiter.FixedWindow: "fw", limiter.SlidingWindow: "sw", limiter.SlidingLog: "sl", limiter.TokenBucket: "tb"}[alg]
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

// RecordedServer serves limithttp.Middleware over lim and limits, keyed by the X-Client header and
// with the cost taken from the X-Cost header, behind a recorder of every request that reaches it;
// the function it returns lists what the server saw so far.
func RecordedServer(t testing.TB, lim *limiter.Limiter, limits []limiter.Limit, opts ...limithttp.Option) (*httptest.Server, func() []Arrival) {
	t.Helper()
	var mu sync.Mutex
	var seen []Arrival
	cost := limithttp.WithCost(func(r *http.Request) int64 {
		n, _ := strconv.ParseInt(r.Header.Get("X-Cost"), 10, 64)
		return max(n, 1)
	})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mw := limithttp.Middleware(lim, ByClient, limits, append([]limithttp.Option{cost}, opts...)...)(ok)
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
