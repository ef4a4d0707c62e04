package limitgrpc_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limitgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// A call the limiter could not decide is logged (at most once a second for failures of Redis; no
// identifier) and ends as the error handler says: a nil error lets it go on.
func TestLimiterGRPCErrorHandlerAndLogger(t *testing.T) {
	srv, rdb := redistest.Private(t)
	srv.Stop()
	lim, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	var logs limitertest.Logs
	var mu sync.Mutex
	var handled []error
	const who = "client-4242-secret"
	key := func(context.Context, string) string { return who }
	limits := []limiter.Limit{limiter.PerMinute(10).WithName("rpc")}
	client := serveHealth(t, grpc.NewServer(grpc.UnaryInterceptor(limitgrpc.UnaryServerInterceptor(lim, key, limits,
		limitgrpc.WithLogger(logs.Logger()),
		limitgrpc.WithErrorHandler(func(_ context.Context, method string, err error) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, err)
			if method != healthpb.Health_Check_FullMethodName {
				return status.Error(codes.Internal, "wrong method "+method)
			}
			return nil // fail open, here
		})))))
	start := time.Now()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Errorf("Redis down, a handler that lets the call go on: %v", err)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	recs := logs.Records()
	if len(handled) != 10 || handled[0] == nil || len(recs) < 1 || len(recs) > 1+int(elapsed/time.Second) {
		t.Fatalf("10 calls with Redis down in %v: %d handled, %d records; want 10, and one record per second begun:\n%s", elapsed, len(handled), len(recs), logs.Text())
	}
	if r := recs[0]; r.Level != slog.LevelError || r.Message != "limitgrpc: rate limit not decided" ||
		!strings.Contains(logs.Text(), "method=/grpc.health.v1.Health/Check") || strings.Contains(logs.Text(), "4242") {
		t.Errorf("records:\n%s", logs.Text())
	}
}
