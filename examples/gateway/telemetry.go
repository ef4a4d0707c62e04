package main

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// setupTelemetry installs global trace and meter providers that export over OTLP/HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT is set, configured by the standard OTEL_* variables
// (OTEL_SERVICE_NAME names the service). Without it, nothing is installed and gatehouse's
// instrumentation costs nothing.
func setupTelemetry(ctx context.Context) (shutdown func(context.Context) error, err error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return func(context.Context) error { return nil }, nil
	}
	res, err := resource.Merge(resource.Default(), resource.Environment())
	if err != nil {
		return nil, err
	}
	texp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, err
	}
	mexp, err := otlpmetrichttp.New(ctx)
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(texp), sdktrace.WithResource(res))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(mexp)), sdkmetric.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(propagation.TraceContext{}) // a caller's traceparent continues its trace
	return func(ctx context.Context) error {
		// Both flush what they hold; ctx bounds the pair, whatever the endpoint does.
		terr, merr := tp.Shutdown(ctx), mp.Shutdown(ctx)
		switch {
		case terr != nil && merr != nil:
			return fmt.Errorf("traces: %w; metrics: %w", terr, merr)
		case terr != nil:
			return fmt.Errorf("traces: %w", terr)
		case merr != nil:
			return fmt.Errorf("metrics: %w", merr)
		}
		return nil
	}, nil
}
