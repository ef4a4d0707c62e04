package integration

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The cost of telemetry on a decision: with no SDK installed (the default), and with the SDK
// tracing every call and collecting metrics.
func BenchmarkAllowTelemetry(b *testing.B) {
	be := redistest.Get(b, redistest.Names()[0])
	ctx := context.Background()
	if err := gatehouse.Preload(ctx, be.Client); err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	for _, c := range []struct {
		name string
		opts []limiter.Option
	}{
		{"no-sdk", nil},
		{"sdk", []limiter.Option{limiter.WithTracerProvider(tp), limiter.WithMeterProvider(mp)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			lim, err := limiter.New(be.Client, limiter.TokenBucket, append(c.opts, limiter.WithKeyPrefix(redistest.Prefix(b)))...)
			if err != nil {
				b.Fatal(err)
			}
			limit := limiter.PerSecond(1 << 30)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := lim.Allow(ctx, "k", limit); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
