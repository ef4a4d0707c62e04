package integration

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The limiter and the session store, given the same failure of a real server, record the same
// error.type on their spans and on their duration histograms, so that one dashboard keyed on it
// counts both: a stopped server, a client the program closed, a pool timeout, a read timeout, a
// server out of memory, and an error reply (a user whose ACL forbids the scripts' writes).
func TestErrorTypeSameInLimiterAndSessions(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		want string
		// breakIt breaks the server or the client of the test, whose connection is open.
		breakIt func(t *testing.T, srv *redistest.Server, admin, client *redis.Client)
		opts    func(*redis.Options)
	}{
		{name: "stopped server", want: "unavailable",
			breakIt: func(t *testing.T, srv *redistest.Server, _, _ *redis.Client) { srv.Stop() }},
		{name: "client closed by the program", want: "closed",
			breakIt: func(t *testing.T, _ *redistest.Server, _, client *redis.Client) { client.Close() }},
		{name: "pool timeout", want: "timeout",
			opts: func(o *redis.Options) {
				o.PoolSize, o.PoolTimeout, o.ClientName = 1, 50*time.Millisecond, "errortype-pool"
			},
			breakIt: func(t *testing.T, _ *redistest.Server, admin, client *redis.Client) {
				// The pool's one connection waits in BLPOP until the test ends.
				done := make(chan struct{})
				go func() { defer close(done); client.BLPop(context.Background(), 0, "errortype:never") }()
				id := strconv.FormatInt(redistest.WaitBlocked(t, admin, "errortype-pool"), 10)
				t.Cleanup(func() { admin.ClientKillByFilter(context.Background(), "ID", id); <-done })
			}},
		{name: "read timeout (CLIENT PAUSE)", want: "timeout",
			opts: func(o *redis.Options) { o.ReadTimeout = 100 * time.Millisecond },
			breakIt: func(t *testing.T, _ *redistest.Server, admin, _ *redis.Client) {
				do(t, admin, "CLIENT", "PAUSE", 60_000, "ALL") // the server stops when the test ends
			}},
		{name: "OOM under noeviction", want: "oom",
			breakIt: func(t *testing.T, _ *redistest.Server, admin, _ *redis.Client) {
				do(t, admin, "CONFIG", "SET", "maxmemory-policy", "noeviction")
				do(t, admin, "CONFIG", "SET", "maxmemory", "1")
			}},
		{name: "error reply (ACL forbids writes)", want: "error_reply",
			breakIt: func(t *testing.T, _ *redistest.Server, admin, _ *redis.Client) {
				do(t, admin, "ACL", "SETUSER", "default", "-@write")
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, admin := redistest.Private(t)
			var opts []func(*redis.Options)
			if c.opts != nil {
				opts = append(opts, c.opts)
			}
			client := redistest.ClientFor(t, srv.Addr, opts...)
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			lim, err := limiter.New(client, limiter.FixedWindow, limiter.WithTracerProvider(tp), limiter.WithMeterProvider(mp))
			if err != nil {
				t.Fatal(err)
			}
			st, err := session.NewStore(client, session.WithTracerProvider(tp), session.WithMeterProvider(mp))
			if err != nil {
				t.Fatal(err)
			}
			s, err := st.New()
			if err != nil {
				t.Fatal(err)
			}
			s.Put("k", "v")
			// Both work before the failure (and the pool holds its connection).
			if _, err := lim.Allow(ctx, "client", limiter.PerMinute(5)); err != nil {
				t.Fatal(err)
			}
			if err := st.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			c.breakIt(t, srv, admin, client)
			s.Put("k", "w")
			_, limErr := lim.Allow(ctx, "client", limiter.PerMinute(5))
			saveErr := st.Save(ctx, s)
			if limErr == nil || saveErr == nil {
				t.Fatalf("limiter: %v; session store: %v; want both to fail", limErr, saveErr)
			}

			spans := rec.Ended()
			got := map[string]string{} // span name: error.type
			for _, sp := range spans[len(spans)-2:] {
				v, _ := spanAttr(sp, "error.type")
				got[sp.Name()] = v.AsString()
			}
			l, ss := got["gatehouse.limiter.allow"], got["gatehouse.session.save"]
			if l != c.want || ss != c.want {
				t.Errorf("error.type on spans: limiter %q (%v), session store %q (%v); want both %q", l, limErr, ss, saveErr, c.want)
			}

			var rm metricdata.ResourceMetrics
			if err := reader.Collect(ctx, &rm); err != nil {
				t.Fatal(err)
			}
			hist := map[string]string{} // histogram: error.type of its failed data points
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					if h, ok := m.Data.(metricdata.Histogram[float64]); ok && strings.HasSuffix(m.Name, ".duration") {
						for _, p := range h.DataPoints {
							if v, ok := p.Attributes.Value("error.type"); ok {
								hist[m.Name] += v.AsString()
							}
						}
					}
				}
			}
			if hist["gatehouse.limiter.duration"] != c.want || hist["gatehouse.session.duration"] != c.want {
				t.Errorf("error.type on duration histograms: %v; want %q on both", hist, c.want)
			}
		})
	}
}

// do runs a command through admin, failing the test if it fails.
func do(t *testing.T, admin *redis.Client, args ...any) {
	t.Helper()
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}
