// Command gateway is gatehouse's demo: a small API gateway that signs users in with sessions and
// rate-limits its API per user (or per client address before sign-in), with the IETF RateLimit
// fields on every response. With no -redis flag it runs on an embedded, in-process Redis stand-in
// (miniredis), so it needs nothing else:
//
//	go run ./examples/gateway
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
// spans, and Redis' EVALSHA spans, beneath it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "localhost:8080", "address to listen on")
	flag.StringVar(&cfg.redisURL, "redis", "", "Redis URL (default: an embedded in-process stand-in)")
	flag.StringVar(&cfg.upstream, "upstream", "", "URL to proxy /api/ to (default: a built-in answer)")
	flag.StringVar(&cfg.failure, "on-redis-failure", "local", "what the limiter does when Redis fails: local (an in-process limiter decides), open, closed or error")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, cfg, nil); err != nil {
		log.Fatal(err)
	}
}

// serve runs the gateway until ctx ends. ready, when not nil, receives the listening address.
func serve(ctx context.Context, cfg config, ready chan<- string) (err error) {
	shutdown, err := setupTelemetry(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, shutdown(context.WithoutCancel(ctx))) }()

	gw, err := newGateway(ctx, cfg)
	if err != nil {
		return err
	}
	defer gw.Close()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 5 * time.Second}
	log.Printf("gatehouse demo gateway on http://%s (Redis: %s)", ln.Addr(), gw.redisName)
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
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
