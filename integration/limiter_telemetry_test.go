package integration

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A decision made by the failure policy is a span with the decision, the source and the Redis
// error (status Error, error.type unavailable), and counts in the decisions metric by source.
func TestLimiterFailurePolicyTelemetry(t *testing.T) {
	srv, rdb := redistest.Private(t)
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	const secretKey = "client-203.0.113.9"
	lim, err := limiter.New(rdb, limiter.FixedWindow, limiter.WithFailurePolicy(limiter.FailOpen()),
		limiter.WithTracerProvider(tp), limiter.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	limit := limiter.PerMinute(5).WithName("api")
	if _, err := lim.Allow(ctx, secretKey, limit); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if res, err := lim.Allow(ctx, secretKey, limit); err != nil || res.Source != limiter.SourceFailOpen {
		t.Fatalf("%+v, %v", res, err)
	}

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, want := range []struct {
		source string
		status codes.Code
	}{{"redis", codes.Unset}, {"fail_open", codes.Error}} {
		sp := spans[i]
		if v, _ := spanAttr(sp, "gatehouse.limiter.source"); v.AsString() != want.source {
			t.Errorf("span %d: source %q, want %q", i, v.AsString(), want.source)
		}
		if v, _ := spanAttr(sp, "gatehouse.limiter.decision"); v.AsString() != "allowed" {
			t.Errorf("span %d: decision %q, want allowed", i, v.AsString())
		}
		if sp.Status().Code != want.status {
			t.Errorf("span %d: status %v, want %v", i, sp.Status().Code, want.status)
		}
	}
	failed := spans[1]
	if v, _ := spanAttr(failed, "error.type"); v.AsString() != "unavailable" {
		t.Errorf("fail-open span: error.type %q, want unavailable", v.AsString())
	}
	if len(failed.Events()) == 0 || failed.Events()[0].Name != "exception" {
		t.Errorf("fail-open span: events %v, want the Redis error recorded", failed.Events())
	}
	if l := leaks(spans, []string{secretKey}); len(l) > 0 {
		t.Errorf("the key leaked: %v", l)
	}

	counts := decisionCounts(t, reader, "gatehouse.limiter.source", "gatehouse.limiter.decision")
	if counts["redis/allowed"] != 1 || counts["fail_open/allowed"] != 1 || len(counts) != 2 {
		t.Errorf("decisions by source/decision: %v, want one redis/allowed and one fail_open/allowed", counts)
	}
}

// WithShadowMode puts every limit in shadow mode: nothing is refused, each limit counts what it
// admits, and the span and the decisions metric record the would-be refusals.
func TestLimiterShadowMode(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, alg := range limitertest.Algorithms {
			t.Run(alg.String(), func(t *testing.T) {
				ctx := context.Background()
				prefix := redistest.Prefix(t)
				rec := tracetest.NewSpanRecorder()
				reader := sdkmetric.NewManualReader()
				now := time.UnixMicro((time.Now().UnixMicro()/3600e6+1)*3600e6 + 60e6)
				lim, err := limiter.New(b.Client, alg, limiter.WithKeyPrefix(prefix), limiter.WithShadowMode(),
					limiter.WithClock(func() time.Time { return now }), limiter.WithDenyCache(10),
					limiter.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))),
					limiter.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
				if err != nil {
					t.Fatal(err)
				}
				limit := limiter.PerHour(2).WithName("api")
				for i := range 4 {
					r, err := lim.Allow(ctx, "c", limit)
					if err != nil || !r.Allowed || r.Shadow != (i >= 2) || r.Source != limiter.SourceRedis {
						t.Fatalf("request %d: %+v, %v; want admitted by Redis, shadow from the third", i, r, err)
					}
				}
				// Two limits, both in shadow mode: each counts what it admits, alone.
				small, large := limiter.PerHour(1).WithName("small"), limiter.PerHour(5).WithName("large")
				for i := range 3 {
					if r, err := lim.AllowAll(ctx, "d", 1, small, large); err != nil || !r.Allowed || r.Shadow != (i >= 1) {
						t.Fatalf("AllowAll %d: %+v, %v", i, r, err)
					}
				}
				if r, err := lim.Peek(ctx, "d", large); err != nil || r.Remaining != 2 {
					t.Errorf("Peek of large: %+v, %v; want 2 left (3 counted)", r, err)
				}

				spans := rec.Ended()
				var shadowSpans int
				for _, sp := range spans {
					dec, _ := spanAttr(sp, "gatehouse.limiter.decision")
					sh, ok := spanAttr(sp, "gatehouse.limiter.shadow")
					if ok && sh.AsBool() {
						shadowSpans++
						if dec.AsString() != "denied" {
							t.Errorf("a shadow refusal's span says decision %q, want denied", dec.AsString())
						}
					}
				}
				if shadowSpans != 4 {
					t.Errorf("%d spans marked shadow, want 4", shadowSpans)
				}
				counts := decisionCounts(t, reader, "gatehouse.limiter.decision", "gatehouse.limiter.shadow")
				if counts["denied/true"] != 4 || counts["allowed/"] != 4 || len(counts) != 2 {
					t.Errorf("decisions by decision/shadow: %v; want 4 denied in shadow, 4 allowed (3 requests, a peek)", counts)
				}
				redistest.AssertKeysExpire(t, b, prefix)
			})
		}
	})
}

// decisionCounts returns the decisions metric's counts by the values of the attributes keys,
// joined with "/" (an attribute absent counts as "").
func decisionCounts(t *testing.T, reader *sdkmetric.ManualReader, keys ...attribute.Key) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "gatehouse.limiter.decisions" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				vals := make([]string, len(keys))
				for i, k := range keys {
					if v, ok := dp.Attributes.Value(k); ok {
						vals[i] = v.String()
					}
				}
				out[strings.Join(vals, "/")] += dp.Value
			}
		}
	}
	return out
}

// The source of each decision, as the span and the decisions metric say it, is what decided:
// nothing for an invalid argument (Redis was never asked) and for a caller gone during a cooldown;
// the policy for a decision made during the cooldown. The duration histogram carries error.type
// when a decision failed or the policy stood in for Redis. The decisions metric's description
// lists every source.
func TestLimiterTelemetrySources(t *testing.T) {
	srv, rdb := redistest.Private(t)
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	lim, err := limiter.New(rdb, limiter.FixedWindow, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithCooldown(time.Hour),
		limiter.WithLogger(limitertest.Discard),
		limiter.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))),
		limiter.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	if err != nil {
		t.Fatal(err)
	}
	limit := limiter.PerMinute(5).WithName("api")
	if _, err := lim.Allow(ctx, "c", limit); err != nil { // Redis decides
		t.Fatal(err)
	}
	if _, err := lim.Allow(ctx, "c", limiter.Limit{Name: "api"}); !errors.Is(err, limiter.ErrInvalidLimit) { // invalid
		t.Fatalf("an invalid limit: %v", err)
	}
	srv.Stop()
	for i := range 2 { // the policy, after asking Redis; then during the cooldown, without asking
		if res, err := lim.Allow(ctx, "c", limit); err != nil || res.Source != limiter.SourceFailOpen || errors.Is(res.Err, limiter.ErrUnavailable) != (i == 1) {
			t.Fatalf("Redis down, call %d: %+v, %v", i, res, err)
		}
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := lim.Allow(gone, "c", limit); !errors.Is(err, limiter.ErrUnavailable) { // the caller gone, in the cooldown
		t.Fatalf("a canceled call in the cooldown: %v, want ErrUnavailable", err)
	}

	// Spans, in order: source and error.type.
	var got []string
	for _, sp := range rec.Ended() {
		src, _ := spanAttr(sp, "gatehouse.limiter.source")
		et, _ := spanAttr(sp, "error.type")
		got = append(got, src.AsString()+"/"+et.AsString())
	}
	want := []string{"redis/", "/invalid_argument", "fail_open/unavailable", "fail_open/unavailable", "/unavailable"}
	if !slices.Equal(got, want) {
		t.Errorf("spans' source/error.type: %q, want %q", got, want)
	}
	counts := decisionCounts(t, reader, "gatehouse.limiter.source", "gatehouse.limiter.decision", "error.type")
	if wantCounts := map[string]int64{"redis/allowed/": 1, "/error/invalid_argument": 1, "fail_open/allowed/": 2, "/error/unavailable": 1}; !maps.Equal(counts, wantCounts) {
		t.Errorf("decisions by source/decision/error.type: %v, want %v", counts, wantCounts)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	durations := map[string]uint64{}
	var description string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch m.Name {
			case "gatehouse.limiter.decisions":
				description = m.Description
			case "gatehouse.limiter.duration":
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					src, _ := dp.Attributes.Value("gatehouse.limiter.source")
					et, _ := dp.Attributes.Value("error.type")
					durations[src.AsString()+"/"+et.AsString()] += dp.Count
				}
			}
		}
	}
	// The source, as on the decisions metric: a time taken by Redis is told from one the policy's
	// cooldown answered in microseconds.
	if want := map[string]uint64{"redis/": 1, "/invalid_argument": 1, "fail_open/unavailable": 2, "/unavailable": 1}; !maps.Equal(durations, want) {
		t.Errorf("durations by source/error.type: %v, want %v", durations, want)
	}
	for s := limiter.SourceRedis; !strings.HasPrefix(s.String(), "Source("); s++ {
		if !strings.Contains(description, s.String()) {
			t.Errorf("the decisions metric's description %q does not list the source %s", description, s)
		}
	}
}
