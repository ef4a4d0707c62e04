package limithttp_test

import (
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limithttp"
)

// A request the limiter could not decide is logged, then answered by the error handler: Redis
// down under FailError (at most one record a second, so an outage does not log every request),
// and an invalid cost (every time). No record holds the identifier or the URL.
func TestLimiterMiddlewareLogsFailures(t *testing.T) {
	srv, rdb := redistest.Private(t)
	srv.Stop()
	lim, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	var logs limitertest.Logs
	var handled atomic.Int64
	web, _ := limitertest.RecordedServer(t, lim, []limiter.Limit{limiter.PerMinute(5).WithName("api")}, limithttp.WithLogger(logs.Logger()),
		limithttp.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			handled.Add(1)
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}))
	const who, path = "kim-4242-secret", "/orders/order-777-secret"
	start := time.Now()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if res := limitertest.Get(t, web, path, who); res.StatusCode != 503 {
				t.Errorf("Redis down: %s, want the error handler's 503", res.Status)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	recs := logs.Records()
	if handled.Load() != 20 || len(recs) < 1 || len(recs) > 1+int(elapsed/time.Second) {
		t.Fatalf("20 requests with Redis down in %v: %d handled, %d records; want 20, and one record per second begun:\n%s", elapsed, handled.Load(), len(recs), logs.Text())
	}
	r := recs[0]
	if r.Level != slog.LevelError || r.Message != "limithttp: rate limit not decided" || !strings.Contains(logs.Text(), "method=GET") || !strings.Contains(logs.Text(), "connection refused") {
		t.Errorf("record: %s", logs.Text())
	}
	// An invalid limit is the program's error, logged every time.
	before := logs.Len()
	invalid := limitedServer(t, lim, []limiter.Limit{{Name: "zero"}}, limithttp.WithLogger(logs.Logger()))
	for range 3 {
		if res := limitertest.Get(t, invalid, path, who); res.StatusCode != 503 {
			t.Fatalf("an invalid limit: %s, want the default 503", res.Status)
		}
	}
	if n := logs.Len() - before; n != 3 || !strings.Contains(logs.Text(), "invalid limit") {
		t.Errorf("3 requests under an invalid limit: %d records, want 3:\n%s", n, logs.Text())
	}
	for _, s := range []string{who, "4242", "order-777"} {
		if strings.Contains(logs.Text(), s) {
			t.Errorf("the log holds %q:\n%s", s, logs.Text())
		}
	}
}
