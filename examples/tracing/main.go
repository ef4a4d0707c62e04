// Command tracing runs a few rate-limit decisions and session operations against Redis and exports
// their traces over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set (for example
// http://localhost:4318 for a local Jaeger), so they can be looked at in Jaeger, Tempo or any OTLP
// backend. The standard OTEL_* variables configure the exporter and OTEL_SERVICE_NAME the service.
//
//	REDIS_URL=redis://localhost:6379/0 OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 go -C examples run ./tracing
//
// A Redis that does not answer makes it fail after runTimeout, and an OTLP endpoint that does not
// answer costs at most flushTimeout at the end; either way it prints the error and exits 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// How long the example's calls may take, all together, and how long its last export may take: a
// Redis or an OTLP endpoint that does not answer costs that much, not minutes.
const (
	runTimeout   = 5 * time.Second
	flushTimeout = 3 * time.Second
)

func main() {
	redisURL := os.Getenv("REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://localhost:6379/0"
	}
	if err := run(context.Background(), redisURL, "example:"); err != nil {
		slog.Error("tracing example failed", "error", err)
		os.Exit(1)
	}
}

// run sets up tracing, makes the calls (giving up after runTimeout), and flushes the traces
// before it returns (giving up after flushTimeout).
func run(ctx context.Context, redisURL, prefix string) (err error) {
	shutdown, err := setupTracing(ctx)
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		if ferr := shutdown(fctx); ferr != nil {
			err = errors.Join(err, fmt.Errorf("exporting the traces: %w", ferr))
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()

	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password included
		}
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	opt.ContextTimeoutEnabled = true // runTimeout bounds the calls
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := redisotel.InstrumentTracing(rdb, redisotel.WithDBStatement(false), redisotel.WithCallerEnabled(false)); err != nil {
		return err
	}
	if err := gatehouse.Preload(ctx, rdb); err != nil {
		return fmt.Errorf("redis at %s: %w", opt.Addr, err)
	}

	tracer := otel.Tracer("example")
	ctx, span := tracer.Start(ctx, "GET /api/orders")
	defer span.End()

	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithKeyPrefix(prefix+"rl:"))
	if err != nil {
		return err
	}
	for i := range 3 {
		res, err := lim.Allow(ctx, "client-42", limiter.PerMinute(2).WithName("orders"))
		if err != nil {
			return err
		}
		fmt.Printf("request %d: allowed=%v remaining=%d retry-after=%v\n", i+1, res.Allowed, res.Remaining, res.RetryAfter)
	}

	store, err := session.NewStore(rdb, session.WithKeyPrefix(prefix+"s:"))
	if err != nil {
		return err
	}
	s, err := store.New()
	if err != nil {
		return err
	}
	s.Put("cart", []string{"book"})
	if err := store.Save(ctx, s); err != nil {
		return err
	}
	if err := store.Login(ctx, s, "user-42"); err != nil {
		return err
	}
	if _, err := store.Load(ctx, s.Token()); err != nil {
		return err
	}
	fmt.Println("session saved, signed in and read back")
	return nil
}

// setupTracing installs a global TracerProvider exporting over OTLP/HTTP when
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, and nothing otherwise.
func setupTracing(ctx context.Context) (shutdown func(context.Context) error, err error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx) // configured by the OTEL_EXPORTER_OTLP_* variables
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.Environment())
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}
