package limiter

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// With no SDK installed (the global providers' defaults) or with noop providers, telemetry costs
// no allocation: a decision allocates exactly what the untraced script call does, against real Redis.
// So does the request value that carries the decision through the limiter.
func TestTelemetryOffAllocatesNothing(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	if err := gatehouse.Preload(ctx, b.Client); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]Option{
		"global providers, no SDK": nil,
		"noop providers":           {WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider())},
	} {
		// Each decision its own call: a coalesced decision takes its waiter and batch from
		// sync.Pools, which the race detector empties at random, so its count varies by one. The
		// telemetry is the same code on both paths (AllowN around run).
		l, err := New(b.Client, TokenBucket, append(opts, WithKeyPrefix(redistest.Prefix(t)), WithoutCoalescing())...)
		if err != nil {
			t.Fatal(err)
		}
		limits := []Limit{PerSecond(1 << 30)}
		out := make([]Result, 1)
		untraced := testing.AllocsPerRun(300, func() {
			r := request{op: opAllow, key: "k", n: 1, limits: limits, out: out}
			var buf [1]string
			keys, err := l.prepare(&r, buf[:0])
			if err != nil {
				t.Fatal(err)
			}
			if err := l.run(ctx, &r, keys); err != nil {
				t.Fatal(err)
			}
		})
		// AllowN as callers make it: the span, the metrics and the request value add nothing (its
		// limits and results stay on AllowN's stack).
		traced := testing.AllocsPerRun(300, func() {
			if _, err := l.AllowN(ctx, "k", limits[0], 1); err != nil {
				t.Fatal(err)
			}
		})
		if traced != untraced {
			t.Errorf("%s: a decision allocates %v, the untraced script call %v", name, traced, untraced)
		}
		t.Logf("%s: %v allocations per decision, traced and untraced", name, traced)
	}
}
