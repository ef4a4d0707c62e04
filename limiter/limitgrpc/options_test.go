package limitgrpc_test

import (
	"context"
	"log/slog"
	"net"
	"strconv"
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
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// ByClientIP over real gRPC: behind a trusted proxy (the test's loopback address), each client
// named in x-forwarded-for has its own quota, IPv6 grouped by /64; from a peer that is not trusted,
// the metadata buys nothing.
func TestLimiterGRPCClientIP(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	serve := func(name string, c limitgrpc.ClientIP) healthpb.HealthClient {
		key, err := limitgrpc.ByClientIP(c)
		if err != nil {
			t.Fatal(err)
		}
		limits := []limiter.Limit{limiter.PerMinute(2).WithName(name)}
		return serveHealth(t, grpc.NewServer(grpc.UnaryInterceptor(limitgrpc.UnaryServerInterceptor(lim, key, limits))))
	}
	call := func(client healthpb.HealthClient, kv ...string) codes.Code {
		_, err := client.Check(metadata.AppendToOutgoingContext(ctx, kv...), &healthpb.HealthCheckRequest{})
		return status.Code(err)
	}
	const ok, no = codes.OK, codes.ResourceExhausted
	behind := serve("xff", limitgrpc.ClientIP{TrustedProxies: []string{"127.0.0.1"}})
	for i, c := range []struct {
		xff  string
		want codes.Code
	}{
		{"203.0.113.1", ok}, {"203.0.113.1", ok}, {"203.0.113.1", no},
		{"spoofed, 203.0.113.2", ok}, {"1.1.1.1, 203.0.113.2", ok}, {"203.0.113.2", no},
		{"2001:db8:1:2::1", ok}, {"2001:db8:1:2::2", ok}, {"2001:db8:1:2:aaaa::9", no},
	} {
		if got := call(behind, "x-forwarded-for", c.xff); got != c.want {
			t.Errorf("behind a trusted proxy, call %d from %s: %v, want %v", i, c.xff, got, c.want)
		}
	}
	fwd := serve("forwarded", limitgrpc.ClientIP{TrustedProxies: []string{"127.0.0.0/8"}, Header: "Forwarded"})
	for i, want := range []codes.Code{ok, ok, no} {
		if got := call(fwd, "forwarded", `for="[2001:db8:9::1]:1234"`, "x-forwarded-for", "203.0.113.77"); got != want {
			t.Errorf("Forwarded, call %d: %v, want %v", i, got, want)
		}
	}
	direct := serve("direct", limitgrpc.ClientIP{TrustedProxies: []string{"10.0.0.0/8"}})
	for i, want := range []codes.Code{ok, ok, no} {
		if got := call(direct, "x-forwarded-for", "203.0.113."+strconv.Itoa(50+i)); got != want {
			t.Errorf("untrusted peer, call %d: %v, want %v (the peer's own quota)", i, got, want)
		}
	}
	for _, c := range []limitgrpc.ClientIP{{TrustedProxies: []string{"10.0.0.0/33"}}, {Header: "x-real-ip"}, {IPv6Prefix: 129}} {
		if _, err := limitgrpc.ByClientIP(c); err == nil || !strings.HasPrefix(err.Error(), "limitgrpc: ByClientIP: ") {
			t.Errorf("ByClientIP(%+v): %v, want an error", c, err)
		}
	}
}

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

// Limits in shadow mode are in no metadata, and a call only they refuse goes on: the client sees
// what it would see without them.
func TestLimiterGRPCShadow(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	api, next := limiter.PerHour(5).WithName("api"), limiter.PerHour(1).WithName("next").WithShadow()
	both := grpcServer(t, lim, []limiter.Limit{api, next})
	alone := grpcServer(t, lim, []limiter.Limit{next.WithName("alone")})
	for i := range 3 {
		var header metadata.MD
		if _, err := both.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil {
			t.Fatalf("call %d: %v, want admitted (only the shadow limit refuses)", i, err)
		}
		if got := header.Get("ratelimit-policy"); len(got) != 1 || got[0] != `"api";q=5;w=3600` {
			t.Errorf("call %d: ratelimit-policy %q, want api alone", i, got)
		}
		if got := header.Get("ratelimit"); len(got) != 1 || !strings.HasPrefix(got[0], `"api";r=`) || strings.Contains(got[0], "next") {
			t.Errorf("call %d: ratelimit %q, want api alone", i, got)
		}
		header = nil
		if _, err := alone.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil ||
			len(header.Get("ratelimit")) != 0 || len(header.Get("ratelimit-policy")) != 0 {
			t.Errorf("a shadow limit alone, call %d: %v, header %v; want admitted, no rate-limit metadata", i, err, header)
		}
	}
}

// ByPeerIP gives one identifier per IPv4 address, in whatever form it came, and per IPv6 /64 (a
// host given a /64 cannot take a fresh quota with each address); a call without a peer is limited
// under "unknown", not exempted.
func TestByPeerIP(t *testing.T) {
	tcp := func(ip string) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000} }
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{tcp("192.0.2.1"), "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1").To16(), Port: 1}, "192.0.2.1"},
		{tcp("2001:db8::1"), "2001:db8::/64"},
		{tcp("2001:db8::ffff:9"), "2001:db8::/64"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::/64"},
		{&net.UnixAddr{Name: "/run/app.sock", Net: "unix"}, "/run/app.sock"},
		{nil, "unknown"},
	} {
		ctx := context.Background()
		if c.addr != nil {
			ctx = peer.NewContext(ctx, &peer.Peer{Addr: c.addr})
		}
		if got := limitgrpc.ByPeerIP(ctx, "/svc/Method"); got != c.want {
			t.Errorf("ByPeerIP(%v): %q, want %q", c.addr, got, c.want)
		}
	}
}
