// Command gateway is gatehouse's demo: a small API gateway that signs users in with sessions and
// rate-limits its API per user (or per client address before sign-in), with the IETF RateLimit
// fields on every response. With no -redis flag it runs on an embedded, in-process Redis stand-in
// (miniredis), so it needs nothing else:
//
//	go -C examples run ./gateway
//
// then, in another terminal:
//
//	curl -i localhost:8080/api/hello                       # anonymous: 5 in a burst, 1 per second
//	curl -i -c jar -d user=alice localhost:8080/login      # sign in (session cookie in ./jar)
//	curl -i -b jar localhost:8080/api/hello                # alice's own, larger quota
//	curl -i -b jar localhost:8080/me                       # alice's sessions
//
// -redis redis://host:port/db uses a real Redis instead; -upstream http://host:port proxies the
// API to a real service instead of answering it; -on-redis-failure says what the limiter does
// when Redis fails (by default an in-process limiter stands in). When OTEL_EXPORTER_OTLP_ENDPOINT is set (for
// example http://localhost:4318), traces and metrics are exported over OTLP/HTTP, so each request
// shows in Jaeger, Tempo or Grafana as an HTTP span with the limiter's and the session store's
// spans, and Redis' spans (EVALSHA, and a session load's pipeline), beneath it.
//
// It logs to standard error through log/slog: one line per request (method, route pattern,
// status, duration; never the path, a cookie, a session token, a user ID or a limiter key), and
// every failure: Redis failures the limiter's policy stands in for, the 503s it answers without
// one, and the session middleware's 500s and 503s. A start-up error (a bad flag value, a Redis
// that refuses or does not answer within -connect-timeout, an address in use) is printed and the
// command exits 1. Ctrl-C (SIGINT) or SIGTERM stops it within a few seconds (drainTimeout for
// requests in flight, then flushTimeout for the telemetry), whatever the OTLP endpoint does; a
// second Ctrl-C stops it at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
)

// How long the gateway waits, at most, for Redis at start-up (unless -connect-timeout says
// otherwise), for requests in flight when told to stop, and for the telemetry exporters' last
// flush.
const (
	defaultConnectTimeout = 5 * time.Second
	drainTimeout          = 5 * time.Second
	flushTimeout          = 3 * time.Second
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run is the command: it parses args, logs to stderr, serves until SIGINT or SIGTERM, and returns
// the exit code: 0 when stopped by a signal, 1 after an error, 2 for arguments the flag package
// cannot parse.
func run(args []string, stderr io.Writer) int {
	var cfg config
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", "localhost:8080", "address to listen on")
	fs.StringVar(&cfg.redisURL, "redis", "", "Redis URL such as redis://localhost:6379/0 (default: an embedded in-process stand-in)")
	fs.StringVar(&cfg.upstream, "upstream", "", "URL to proxy /api/ to (default: a built-in answer)")
	fs.StringVar(&cfg.failure, "on-redis-failure", "local", "what the limiter does when Redis fails: local (an in-process limiter decides), open, closed or error")
	fs.DurationVar(&cfg.connectTimeout, "connect-timeout", defaultConnectTimeout, "how long to wait for Redis to answer at start-up")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the error and the usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gateway: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return 2
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	slog.SetDefault(logger)
	// go-redis' and OpenTelemetry's own messages (a failed dial, a failed export) in the same log.
	redis.SetLogger(redisLogger{logger})
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("telemetry: export failed", "error", err)
	}))
	cfg.logger = logger

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once told to stop, the gateway says so, and a second signal ends the process at once.
	defer context.AfterFunc(ctx, func() {
		logger.Info("shutting down: press Ctrl-C again to stop at once")
		stop()
	})()
	if err := serve(ctx, cfg, nil); err != nil {
		logger.Error("gateway failed", "error", err)
		return 1
	}
	logger.Info("gateway stopped")
	return 0
}

// serve runs the gateway until ctx ends. ready, when not nil, receives the listening address.
// It returns an error if the gateway cannot start or stops serving on its own; once started, a
// shutdown that cuts requests off or cannot flush the telemetry is logged, not returned.
func serve(ctx context.Context, cfg config, ready chan<- string) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := cfg.log()
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %w", cfg.addr, err)
	}
	defer ln.Close()

	shutdown, err := setupTelemetry(ctx)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
		defer cancel()
		if err := shutdown(fctx); err != nil {
			log.Warn(fmt.Sprintf("telemetry: not everything was exported within %v of the stop", flushTimeout), "error", err)
		}
	}()

	gw, err := newGateway(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return err
	}
	defer gw.Close()

	srv := &http.Server{
		Handler:           gw.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("gatehouse demo gateway on http://"+ln.Addr().String(), "redis", gw.redisName, "on_redis_failure", cfg.failurePolicy())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn(fmt.Sprintf("requests still running after %v were cut off", drainTimeout), "error", err)
		srv.Close()
	}
	return nil
}

// redisLogger writes go-redis' messages to a slog.Logger, at Warn: they tell of failed dials and
// broken connections.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}
