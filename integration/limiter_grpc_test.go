package integration

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limitgrpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcServer serves the standard health service behind the limiter's interceptors on a loopback
// port, and returns a client for it.
func grpcServer(t *testing.T, lim *limiter.Limiter, limits []limiter.Limit, opts ...limitgrpc.Option) healthpb.HealthClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(limitgrpc.UnaryServerInterceptor(lim, limitgrpc.ByPeerIP, limits, opts...)),
		grpc.StreamInterceptor(limitgrpc.StreamServerInterceptor(lim, limitgrpc.ByPeerIP, limits, opts...)),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// Unary and streaming calls over real gRPC and real Redis: admitted, then refused with
// ResourceExhausted, a RetryInfo detail and the retry pushback trailer; the rate-limit metadata on
// both.
func TestLimiterGRPC(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		client := grpcServer(t, lim, []limiter.Limit{limiter.PerMinute(2).WithName("rpc")})
		for i, want := range []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted} {
			var header, trailer metadata.MD
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
			st := status.Convert(err)
			if st.Code() != want {
				t.Fatalf("call %d: %v, want %v", i, st, want)
			}
			if got := header.Get("ratelimit-policy"); len(got) != 1 || got[0] != `"rpc";q=2;w=60` {
				t.Errorf("call %d: ratelimit-policy %q", i, got)
			}
			if got := header.Get("ratelimit"); len(got) != 1 || !strings.HasPrefix(got[0], `"rpc";r=`+strconv.Itoa(max(1-i, 0))+";t=") {
				t.Errorf("call %d: ratelimit %q", i, got)
			}
			if want != codes.ResourceExhausted {
				continue
			}
			var delay time.Duration
			for _, d := range st.Details() {
				if ri, ok := d.(*errdetails.RetryInfo); ok {
					delay = ri.RetryDelay.AsDuration()
				}
			}
			if delay <= 0 || delay > time.Minute {
				t.Errorf("refusal: RetryInfo delay %v, want within the minute", delay)
			}
			push := trailer.Get("grpc-retry-pushback-ms")
			if ms, err := strconv.ParseInt(strings.Join(push, ""), 10, 64); err != nil || ms < delay.Milliseconds() || ms > delay.Milliseconds()+1 {
				t.Errorf("refusal: grpc-retry-pushback-ms %q, want %v rounded up", push, delay)
			}
		}
		// A stream is one request when it opens: this one is refused too.
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("stream: %v, want ResourceExhausted", err)
		}
	})
}

// A fresh stream under its limit opens and streams; per-method limits exempt what they leave out.
func TestLimiterGRPCStreamAndExempt(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lim, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(t)))
	if err != nil {
		t.Fatal(err)
	}
	watchOnly := limitgrpc.WithLimitsFor(func(_ context.Context, method string) []limiter.Limit {
		if method == healthpb.Health_Watch_FullMethodName {
			return []limiter.Limit{limiter.PerHour(1).WithName("watch")}
		}
		return nil
	})
	client := grpcServer(t, lim, nil, watchOnly)
	for range 5 {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("exempt unary call: %v", err)
		}
	}
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := stream.Recv(); err != nil || res.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first stream: %v, %v", res, err)
	}
	if md, _ := stream.Header(); len(md.Get("ratelimit")) != 1 {
		t.Errorf("first stream: header %v, want ratelimit", md)
	}
	second, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = second.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("second stream: %v, want ResourceExhausted", err)
	}
}

// With Redis down and no failure policy, calls end Unavailable without details of the cause.
func TestLimiterGRPCRedisDown(t *testing.T) {
	srv, rdb := privateServer(t)
	srv.Stop()
	lim, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	client := grpcServer(t, lim, []limiter.Limit{limiter.PerMinute(10)})
	_, err = client.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if st := status.Convert(err); st.Code() != codes.Unavailable || strings.Contains(st.Message(), "127.0.0.1") {
		t.Errorf("Redis down: %v, want Unavailable saying nothing of the cause", st)
	}
}
