package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracedClient returns a new client for the backend's servers, wired to redisotel the way
// docs/tracing.md says: no statements, no caller frames, no handshake commands that fail on Redis 7.0.
func tracedClient(t *testing.T, b *redistest.Backend, tp trace.TracerProvider, statements bool) redis.UniversalClient {
	t.Helper()
	maint := &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	var c redis.UniversalClient
	switch bc := b.Client.(type) {
	case *redis.ClusterClient:
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: bc.Options().Addrs, DisableIdentity: true, MaintNotificationsConfig: maint})
	case *redis.Client:
		o := bc.Options()
		c = redis.NewClient(&redis.Options{Addr: o.Addr, DB: o.DB, Username: o.Username, Password: o.Password, DisableIdentity: true, MaintNotificationsConfig: maint})
	}
	t.Cleanup(func() { c.Close() })
	if err := redisotel.InstrumentTracing(c,
		redisotel.WithTracerProvider(tp),
		redisotel.WithDBStatement(statements),
		redisotel.WithCallerEnabled(false),
	); err != nil {
		t.Fatal(err)
	}
	return c
}

// secrets the scenario below hands the library; none may reach a span or a metric.
type secrets struct{ key, user, payload string }

func (s *secrets) all(tokens ...session.Token) []string {
	out := []string{s.key, s.user, s.payload}
	for _, tok := range tokens {
		out = append(out, string(tok), string(tok)[4:]) // the token and its secret part
	}
	return out
}

// scenario runs limiter and session operations that handle secrets, and returns the tokens used.
func scenario(t *testing.T, rdb redis.UniversalClient, prefix string, tp trace.TracerProvider, mp *sdkmetric.MeterProvider, sec *secrets) []session.Token {
	t.Helper()
	ctx := context.Background()
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithKeyPrefix(prefix),
		limiter.WithTracerProvider(tp), limiter.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	api := limiter.PerMinute(1).WithName("api")
	for range 2 { // allowed, then denied
		if _, err := lim.Allow(ctx, sec.key, api); err != nil {
			t.Fatal(err)
		}
	}
	st, err := session.NewStore(rdb, session.WithKeyPrefix(prefix+"s:"),
		session.WithTracerProvider(tp), session.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.New()
	s.Put("card", sec.payload)
	if err := st.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	first := s.Token()
	if _, err := st.Load(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := st.Login(ctx, s, sec.user); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Load(ctx, first); err == nil {
		t.Fatal("the pre-login token still loads")
	}
	if _, err := st.ListByUser(ctx, sec.user); err != nil {
		t.Fatal(err)
	}
	return []session.Token{first, s.Token()}
}

// leaks returns where any of the secrets appears in the spans.
func leaks(spans []sdktrace.ReadOnlySpan, secret []string) []string {
	var out []string
	check := func(where, v string) {
		for _, s := range secret {
			if s != "" && strings.Contains(v, s) {
				out = append(out, fmt.Sprintf("%s holds %q", where, s))
			}
		}
	}
	for _, sp := range spans {
		check(sp.Name()+" name", sp.Name())
		check(sp.Name()+" status", sp.Status().Description)
		for _, a := range sp.Attributes() {
			check(sp.Name()+" "+string(a.Key), a.Value.String())
		}
		for _, e := range sp.Events() {
			for _, a := range e.Attributes {
				check(sp.Name()+" event "+string(a.Key), a.Value.String())
			}
		}
	}
	return out
}

func spanAttr(sp sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, a := range sp.Attributes() {
		if string(a.Key) == key {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

func TestTelemetry(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		rdb := tracedClient(t, b, tp, false)
		if err := gatehouse.Preload(ctx, rdb); err != nil {
			t.Fatal(err)
		}
		sec := &secrets{key: "client-203.0.113.9-secret", user: "alice-secret-77@example.com", payload: "4111-1111-secret"}
		tokens := scenario(t, rdb, redistest.Prefix(t), tp, mp, sec)
		spans := rec.Ended()

		t.Run("our spans parent redisotel's", func(t *testing.T) {
			byName := map[string][]sdktrace.ReadOnlySpan{}
			for _, sp := range spans {
				byName[sp.Name()] = append(byName[sp.Name()], sp)
			}
			for _, name := range []string{"gatehouse.limiter.allow", "gatehouse.session.save", "gatehouse.session.load", "gatehouse.session.login", "gatehouse.session.list"} {
				ours := byName[name]
				if len(ours) == 0 {
					t.Errorf("no %s span; spans: %v", name, slices.Collect(func(yield func(string) bool) {
						for n := range byName {
							yield(n)
						}
					}))
					continue
				}
				for _, sp := range ours {
					if sp.SpanKind() != trace.SpanKindInternal {
						t.Errorf("%s kind %v, want internal", name, sp.SpanKind())
					}
					children := 0
					for _, c := range spans {
						if c.Parent().SpanID() == sp.SpanContext().SpanID() && (c.Name() == "evalsha" || strings.HasPrefix(c.Name(), "redis.pipeline") || c.Name() == "zrange" || c.Name() == "del") {
							children++
						}
					}
					if children == 0 {
						t.Errorf("%s has no redisotel child span", name)
					}
				}
			}
		})

		t.Run("attributes", func(t *testing.T) {
			var decisions []string
			for _, sp := range spans {
				if sp.Name() != "gatehouse.limiter.allow" {
					continue
				}
				for _, k := range []string{"gatehouse.limiter.algorithm", "gatehouse.limiter.policy", "gatehouse.limiter.limit", "gatehouse.limiter.remaining", "db.stored_procedure.name", "db.system.name"} {
					if _, ok := spanAttr(sp, k); !ok {
						t.Errorf("allow span lacks %s", k)
					}
				}
				d, _ := spanAttr(sp, "gatehouse.limiter.decision")
				decisions = append(decisions, d.AsString())
				if sp.Status().Code == codes.Error {
					t.Errorf("a %s decision marked the span as an error", d.AsString())
				}
				if d.AsString() == "denied" {
					if _, ok := spanAttr(sp, "gatehouse.limiter.retry_after"); !ok {
						t.Error("denied span lacks gatehouse.limiter.retry_after")
					}
				}
			}
			if !slices.Equal(decisions, []string{"allowed", "denied"}) {
				t.Errorf("decisions on spans = %v, want [allowed denied]", decisions)
			}
			var loads []bool
			for _, sp := range spans {
				if sp.Name() == "gatehouse.session.load" {
					f, _ := spanAttr(sp, "gatehouse.session.found")
					loads = append(loads, f.AsBool())
				}
			}
			if !slices.Equal(loads, []bool{true, false}) {
				t.Errorf("session.found on loads = %v, want [true false]", loads)
			}
		})

		// docs/tracing.md: gatehouse's spans follow the current database conventions, redisotel's
		// the older ones; an operator queries both. This pins what the page says about each.
		t.Run("conventions", func(t *testing.T) {
			ours, theirs := 0, 0
			for _, sp := range spans {
				switch {
				case strings.HasPrefix(sp.Name(), "gatehouse.session."):
					ours++
					want := map[string]string{"db.system.name": "redis", "db.operation.name": "EVALSHA"}
					load := sp.Name() == "gatehouse.session.load"
					if load { // a pipeline of HGETALL and EVALSHA: a batch of two operations
						want["db.operation.name"] = "BATCH"
						if got, _ := spanAttr(sp, "db.operation.batch.size"); got.AsInt64() != 2 {
							t.Errorf("%s: db.operation.batch.size %v, want 2", sp.Name(), got.AsInt64())
						}
					}
					for k, v := range want {
						if got, _ := spanAttr(sp, k); got.AsString() != v {
							t.Errorf("%s: %s %q, want %q", sp.Name(), k, got.AsString(), v)
						}
					}
					if got, _ := spanAttr(sp, "db.stored_procedure.name"); !load && !strings.HasPrefix(got.AsString(), "session_") {
						t.Errorf("%s: db.stored_procedure.name %q, want a session script", sp.Name(), got.AsString())
					}
					if _, old := spanAttr(sp, "db.system"); old {
						t.Errorf("%s has the older db.system", sp.Name())
					}
					if sc := sp.InstrumentationScope(); sc.SchemaURL == "" || sc.Version == "" {
						t.Errorf("%s: scope %+v without a schema URL or version", sp.Name(), sc)
					}
				case sp.Name() == "evalsha":
					theirs++
					if got, _ := spanAttr(sp, "db.system"); got.AsString() != "redis" {
						t.Errorf("redisotel's evalsha: db.system %q, want redis", got.AsString())
					}
					for _, k := range []string{"db.system.name", "db.operation.name", "db.statement"} {
						if _, ok := spanAttr(sp, k); ok {
							t.Errorf("redisotel's evalsha has %s", k)
						}
					}
					if _, ok := spanAttr(sp, "db.connection_string"); !ok {
						t.Error("redisotel's evalsha lacks db.connection_string")
					}
					if sp.SpanKind() != trace.SpanKindClient {
						t.Errorf("redisotel's evalsha: kind %v, want client", sp.SpanKind())
					}
					if sc := sp.InstrumentationScope(); sc.SchemaURL != "" {
						t.Errorf("redisotel's scope declares the schema %s: docs/tracing.md says it declares none", sc.SchemaURL)
					}
				}
			}
			if ours == 0 || theirs == 0 {
				t.Fatalf("%d session spans, %d redisotel evalsha spans: nothing compared", ours, theirs)
			}
		})

		t.Run("no errors", func(t *testing.T) {
			for _, sp := range spans {
				if sp.Status().Code == codes.Error {
					t.Errorf("span %s has error status %q", sp.Name(), sp.Status().Description)
				}
			}
		})

		t.Run("no secrets in spans", func(t *testing.T) {
			for _, l := range leaks(spans, sec.all(tokens...)) {
				t.Error(l)
			}
		})

		t.Run("metrics", func(t *testing.T) {
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(ctx, &rm); err != nil {
				t.Fatal(err)
			}
			counts := map[string]int64{}
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					var sets []attribute.Set
					switch d := m.Data.(type) {
					case metricdata.Sum[int64]:
						for _, p := range d.DataPoints {
							sets = append(sets, p.Attributes)
							counts[m.Name+" "+p.Attributes.Encoded(attribute.DefaultEncoder())] += p.Value
						}
					case metricdata.Histogram[float64]:
						for _, p := range d.DataPoints {
							sets = append(sets, p.Attributes)
							if m.Name == "gatehouse.limiter.duration" && len(p.Bounds) > 0 && p.Bounds[0] >= 0.001 {
								t.Errorf("%s first bucket %v: want sub-millisecond buckets", m.Name, p.Bounds[0])
							}
						}
						if m.Unit != "s" {
							t.Errorf("%s unit %q, want s", m.Name, m.Unit)
						}
					case metricdata.Histogram[int64]:
						for _, p := range d.DataPoints {
							sets = append(sets, p.Attributes)
							counts[m.Name+" "+p.Attributes.Encoded(attribute.DefaultEncoder())] += int64(p.Count)
						}
					}
					for _, s := range sets {
						for _, kv := range s.ToSlice() {
							for _, secret := range sec.all(tokens...) {
								if strings.Contains(kv.Value.String(), secret) {
									t.Errorf("metric %s attribute %s holds a secret", m.Name, kv.Key)
								}
							}
						}
					}
				}
			}
			want := map[string]int64{
				"gatehouse.limiter.decisions gatehouse.limiter.algorithm=token_bucket,gatehouse.limiter.decision=allowed,gatehouse.limiter.policy=api,gatehouse.limiter.source=redis": 1,
				"gatehouse.limiter.decisions gatehouse.limiter.algorithm=token_bucket,gatehouse.limiter.decision=denied,gatehouse.limiter.policy=api,gatehouse.limiter.source=redis":  1,
				"gatehouse.session.operations gatehouse.session.operation=load,gatehouse.session.outcome=ok":                                                                          1,
				"gatehouse.session.operations gatehouse.session.operation=load,gatehouse.session.outcome=not_found":                                                                   1,
				"gatehouse.session.operations gatehouse.session.operation=save,gatehouse.session.outcome=ok":                                                                          1,
				"gatehouse.session.operations gatehouse.session.operation=login,gatehouse.session.outcome=ok":                                                                         1,
				"gatehouse.session.size gatehouse.session.operation=save":                                                                                                             1,
			}
			for k, v := range want {
				if counts[k] != v {
					t.Errorf("%s = %d, want %d", k, counts[k], v)
				}
			}
		})
	})
}

// The negative control: redisotel's defaults put every command's arguments on its spans, and the
// same search finds the secrets there. Without this, "no secrets" could pass by searching nothing.
func TestTelemetryLeakSearchFindsRedisotelDefaults(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	rdb := tracedClient(t, b, tp, true)
	sec := &secrets{key: "client-198.51.100.4-secret", user: "bob-secret-99@example.com", payload: "5500-0000-secret"}
	tokens := scenario(t, rdb, redistest.Prefix(t), tp, sdkmetric.NewMeterProvider(), sec)
	found := strings.Join(leaks(rec.Ended(), sec.all(tokens...)), "\n")
	for _, s := range []string{sec.key, sec.user, sec.payload} {
		if !strings.Contains(found, s) {
			t.Errorf("with db statements on, %q was not found in any span: the leak search is blind", s)
		}
	}
}
