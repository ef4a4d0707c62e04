package limitgrpc_test

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
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
	return serveHealth(t, grpc.NewServer(
		grpc.UnaryInterceptor(limitgrpc.UnaryServerInterceptor(lim, limitgrpc.ByPeerIP, limits, opts...)),
		grpc.StreamInterceptor(limitgrpc.StreamServerInterceptor(lim, limitgrpc.ByPeerIP, limits, opts...)),
	))
}

// serveHealth serves the health service with srv on a loopback port until the test ends, and
// returns a client for it made with dial.
func serveHealth(t *testing.T, srv *grpc.Server, dial ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), append(dial, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// Unary and streaming calls over real gRPC and real Redis: admitted, then refused with
// ResourceExhausted, a RetryInfo detail and the retry pushback trailer; the rate-limit metadata on
// both, as header when admitted and as trailer when refused.
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
			md := header
			if want != codes.OK {
				md = trailer
			}
			if got := md.Get("ratelimit-policy"); len(got) != 1 || got[0] != `"rpc";q=2;w=60` {
				t.Errorf("call %d: ratelimit-policy %q", i, got)
			}
			if got := md.Get("ratelimit"); len(got) != 1 || !strings.HasPrefix(got[0], `"rpc";r=`+strconv.Itoa(max(1-i, 0))+";t=") {
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
		// A stream is one request when it opens: this one is refused too, Trailers-Only.
		stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("stream: %v, want ResourceExhausted", err)
		}
		if md, _ := stream.Header(); len(md) != 0 {
			t.Errorf("refused stream: header %v, want none", md)
		}
		if tr := stream.Trailer(); len(tr.Get("grpc-retry-pushback-ms")) != 1 || len(tr.Get("ratelimit")) != 1 || len(tr.Get("ratelimit-policy")) != 1 {
			t.Errorf("refused stream: trailer %v, want the pushback and the rate-limit metadata", tr)
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
	srv, rdb := redistest.Private(t)
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

// grpcCall is what the server saw of one attempt: when it came, the metadata the limiter set as
// header and as trailer, and the status it ended with.
type grpcCall struct {
	at      time.Time
	header  metadata.MD
	trailer metadata.MD
	status  *status.Status
}

// recordingStream keeps the metadata set on a unary call's stream, and passes it on.
type recordingStream struct {
	grpc.ServerTransportStream
	header, trailer metadata.MD
}

func (s *recordingStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return s.ServerTransportStream.SetHeader(md)
}

func (s *recordingStream) SetTrailer(md metadata.MD) error {
	s.trailer = metadata.Join(s.trailer, md)
	return s.ServerTransportStream.SetTrailer(md)
}

// retryPolicy is a service config that retries RESOURCE_EXHAUSTED health checks up to 3 attempts,
// 10ms apart unless the server's pushback says otherwise.
const retryPolicy = `{"methodConfig": [{"name": [{"service": "grpc.health.v1.Health"}], "retryPolicy": {
	"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.01s", "backoffMultiplier": 1,
	"retryableStatusCodes": ["RESOURCE_EXHAUSTED"]}}]}`

// recordedGRPC serves the health service behind a recorder of every attempt and the limiter's
// unary interceptor (the cost taken from the x-cost metadata), and returns a client with
// retryPolicy.
func recordedGRPC(t *testing.T, lim *limiter.Limiter, limits []limiter.Limit) (healthpb.HealthClient, func() []grpcCall) {
	t.Helper()
	var mu sync.Mutex
	var seen []grpcCall
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		at := time.Now()
		st := &recordingStream{ServerTransportStream: grpc.ServerTransportStreamFromContext(ctx)}
		res, err := handler(grpc.NewContextWithServerTransportStream(ctx, st), req)
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, grpcCall{at: at, header: st.header, trailer: st.trailer, status: status.Convert(err)})
		return res, err
	}
	cost := limitgrpc.WithCost(func(ctx context.Context, _ string) int64 {
		md, _ := metadata.FromIncomingContext(ctx)
		n, _ := strconv.ParseInt(strings.Join(md.Get("x-cost"), ""), 10, 64)
		return max(n, 1)
	})
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(record, limitgrpc.UnaryServerInterceptor(lim, limitgrpc.ByPeerIP, limits, cost)))
	return serveHealth(t, srv, grpc.WithDefaultServiceConfig(retryPolicy)), func() []grpcCall {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// A refused call goes out as a Trailers-Only response, with the rate-limit metadata among the
// trailers, so that a grpc-go client with a retry policy for RESOURCE_EXHAUSTED honours
// grpc-retry-pushback-ms: it waits the pushback (not its own 10ms backoff) and the retry passes.
func TestLimiterGRPCRetryPushback(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		lim, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		client, seen := recordedGRPC(t, lim, []limiter.Limit{limiter.Per(1, 400*time.Millisecond).WithName("rpc")})
		for i := range 2 {
			if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("call %d: %v (the server saw %d attempts)", i, err, len(seen()))
			}
		}
		s := seen()
		if len(s) != 3 || s[0].status.Code() != codes.OK || s[1].status.Code() != codes.ResourceExhausted || s[2].status.Code() != codes.OK {
			t.Fatalf("the server saw %d attempts, want an admission, a refusal, an admission: %+v", len(s), s)
		}
		refused := s[1]
		if len(refused.header) != 0 {
			t.Errorf("refusal: header metadata %v, want none (a Trailers-Only response)", refused.header)
		}
		if got := refused.trailer.Get("ratelimit-policy"); len(got) != 1 || got[0] != `"rpc";q=1;w=1` {
			t.Errorf("refusal: trailer ratelimit-policy %q", got)
		}
		if got := refused.trailer.Get("ratelimit"); len(got) != 1 || !strings.HasPrefix(got[0], `"rpc";r=0;t=`) {
			t.Errorf("refusal: trailer ratelimit %q", got)
		}
		push, err := strconv.Atoi(strings.Join(refused.trailer.Get("grpc-retry-pushback-ms"), ""))
		if err != nil || push < 1 || push > 400 {
			t.Fatalf("refusal: grpc-retry-pushback-ms %q, want 1..400", refused.trailer.Get("grpc-retry-pushback-ms"))
		}
		var delay time.Duration
		for _, d := range refused.status.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				delay = ri.RetryDelay.AsDuration()
			}
		}
		if delay <= 0 || (delay+time.Millisecond-1)/time.Millisecond != time.Duration(push) {
			t.Errorf("refusal: RetryInfo delay %v, want the pushback %dms (rounded up)", delay, push)
		}
		if waited := s[2].at.Sub(refused.at); waited < time.Duration(push)*time.Millisecond {
			t.Errorf("the retry came %v after the refusal, before its pushback of %dms", waited, push)
		}
		if got := s[2].header.Get("ratelimit"); len(got) != 1 || !strings.HasPrefix(got[0], `"rpc";r=0;t=`) {
			t.Errorf("admitted retry: header ratelimit %q", got)
		}
	})
}

// A call that can never be admitted (its cost is above the capacity) tells the client not to
// retry: a negative grpc-retry-pushback-ms, which grpc-go obeys even with RESOURCE_EXHAUSTED in
// its retry policy; no RetryInfo (no delay would help) but a QuotaFailure naming the limit and its
// capacity, not the identifier; and no ratelimit metadata, whose t would say "now".
func TestLimiterGRPCNeverAdmitted(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		lim, err := limiter.New(b.Client, limiter.SlidingWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		client, seen := recordedGRPC(t, lim, []limiter.Limit{limiter.PerMinute(5).WithName("burst"), limiter.PerHour(100).WithName("hourly")})
		var trailer metadata.MD
		_, err = client.Check(metadata.AppendToOutgoingContext(ctx, "x-cost", "6"), &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
		st := status.Convert(err)
		if s := seen(); st.Code() != codes.ResourceExhausted || len(s) != 1 {
			t.Fatalf("cost above capacity: %v after %d attempts, want ResourceExhausted after 1", st, len(s))
		}
		if got := trailer.Get("grpc-retry-pushback-ms"); len(got) != 1 || got[0] != "-1" {
			t.Errorf("grpc-retry-pushback-ms %q, want -1", got)
		}
		if got := trailer.Get("ratelimit-policy"); len(got) != 1 || got[0] != `"burst";q=5;w=60, "hourly";q=100;w=3600` {
			t.Errorf("ratelimit-policy %q", got)
		}
		if got := trailer.Get("ratelimit"); len(got) != 0 {
			t.Errorf("ratelimit %q, want none", got)
		}
		var quota *errdetails.QuotaFailure
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.RetryInfo:
				t.Errorf("RetryInfo %v on a call that can never pass", d)
			case *errdetails.QuotaFailure:
				quota = d
			}
		}
		if v := quota.GetViolations(); len(v) != 1 || v[0].QuotaId != "burst" || v[0].QuotaValue != 5 || v[0].Subject != "" || v[0].Description == "" {
			t.Errorf("QuotaFailure %v, want one violation of burst, capacity 5, without a subject", quota)
		}
		// Nothing was counted.
		var header metadata.MD
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil || !strings.HasPrefix(strings.Join(header.Get("ratelimit"), ""), `"burst";r=4;`) {
			t.Errorf("after the refusal: %v, ratelimit %q", err, header.Get("ratelimit"))
		}
	})
}

// With Redis down, the local fallback refuses a cost above its share of the capacity as never;
// Redis, when back, may admit it: Unavailable, with neither RetryInfo nor pushback, so that the
// client's own backoff applies.
func TestLimiterGRPCLocalShare(t *testing.T) {
	srv, rdb := redistest.Private(t)
	srv.Stop()
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{Instances: 2})), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	client, seen := recordedGRPC(t, lim, []limiter.Limit{limiter.PerMinute(5).WithName("burst")})
	var trailer metadata.MD
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-cost", "3")
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&trailer))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || len(st.Details()) != 0 || len(trailer.Get("grpc-retry-pushback-ms")) != 0 || len(seen()) != 1 {
		t.Errorf("cost 3 over a local share of 2: %v, details %v, trailer %v after %d attempts; want Unavailable without details or pushback",
			st, st.Details(), trailer, len(seen()))
	}
}
