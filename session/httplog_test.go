package session

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// records collects a slog logger's records as JSON.
type records struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *records) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// all returns the records so far, and forgets them.
func (l *records) all(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(&l.buf)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	l.buf.Reset()
	return out
}

// While Redis is down, the middleware logs the first failure at once, then one record per
// interval saying how many it did not log; when Redis answers again, one record with the rest.
// Against a real server stopped and started again; the interval passes on a clock of the test's,
// so that only counts of records are asserted.
func TestFailureLogInterval(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private Redis")
	}
	srv, err := redistest.StartServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	st, err := NewStore(rdb, WithKeyPrefix(redistest.Prefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.New()
	s.Put("a", 1)
	if err := st.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	now := time.Unix(1_000_000, 0)
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	clock := middlewareOptionFunc(func(c *middlewareConfig) {
		c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	logs := &records{}
	h := Middleware(st, WithLogger(slog.New(slog.NewJSONHandler(logs, nil))), WithFailureLogInterval(time.Minute), clock)(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	request := func(want int) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.AddCookie(&http.Cookie{Name: "session", Value: string(s.Token())})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("status %d, want %d", rec.Code, want)
		}
	}
	expect := func(what string, want ...map[string]any) {
		t.Helper()
		got := logs.all(t)
		if len(got) != len(want) {
			t.Fatalf("%s: %d records, want %d: %v", what, len(got), len(want), got)
		}
		for i, w := range want {
			for k, v := range w {
				if got[i][k] != v {
					t.Errorf("%s: record %d: %s = %v, want %v (%v)", what, i, k, got[i][k], v, got[i])
				}
			}
		}
	}

	srv.Stop()
	for range 5 {
		request(http.StatusServiceUnavailable)
	}
	expect("5 failures at once", map[string]any{"msg": "session: load failed", "level": "ERROR", "unavailable": true, "suppressed": nil})
	advance(time.Minute - time.Nanosecond)
	request(http.StatusServiceUnavailable)
	expect("a failure within the interval")
	advance(time.Nanosecond)
	request(http.StatusServiceUnavailable)
	expect("the first failure after the interval", map[string]any{"msg": "session: load failed", "suppressed": 5.0})
	for range 3 {
		request(http.StatusServiceUnavailable)
	}
	expect("3 more within the interval")

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	request(http.StatusOK) // the session is gone with the server's memory: a new one
	expect("Redis answers within the interval")
	advance(time.Minute)
	request(http.StatusOK)
	expect("Redis answers after the interval", map[string]any{"msg": "session: Redis answers again", "level": "WARN", "suppressed": 3.0})
	advance(time.Hour)
	request(http.StatusOK)
	expect("Redis answers again, nothing left")

	// The next outage is logged at once.
	srv.Stop()
	request(http.StatusServiceUnavailable)
	expect("a new outage", map[string]any{"msg": "session: load failed", "suppressed": nil})
}
