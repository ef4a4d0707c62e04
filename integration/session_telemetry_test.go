package integration

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// sessionOutcome is one Store operation run for TestSessionTelemetryOutcomes, and the outcome its
// span and metrics must report.
type sessionOutcome struct {
	outcome string // gatehouse.session.outcome
	op      string // gatehouse.session.operation
	failure bool   // a failure: status Error and error.type = outcome; else neither
	run     func() error
}

// Every outcome a Store operation can have, produced against a real server (and, for
// "unavailable", a port nothing listens on): its span says the outcome, and error.type with status
// Error exactly when it is a failure, with the same value; the operations counter and the
// duration histogram carry error.type on the same terms (a timeout is error.type=timeout, as the
// limiter says it); the metric descriptions list every outcome and error.type; and no span, event
// or status holds a token, a storage key, a user ID or a value.
func TestSessionTelemetryOutcomes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private Redis server")
	}
	ctx := context.Background()
	srv, admin := redistest.Private(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	prefix := redistest.Prefix(t)
	observed := func(client redis.UniversalClient, opts ...session.Option) *session.Store {
		t.Helper()
		st, err := session.NewStore(client, append([]session.Option{session.WithKeyPrefix(prefix),
			session.WithTracerProvider(tp), session.WithMeterProvider(mp)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := observed(admin, session.WithRotationGrace(time.Minute), session.WithMaxSize(session.MinMaxSize))
	const user, other, payload = "alice-secret-77@example.com", "bob-secret-99@example.com", "4111-1111-secret"

	// Sessions prepared without telemetry, so that only the operations below are observed.
	plain, err := session.NewStore(admin, session.WithKeyPrefix(prefix), session.WithRotationGrace(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var tokens []session.Token
	var keys []session.Key
	stored := func() *session.Session {
		t.Helper()
		s := sessiontest.Stored(t, plain, "card", payload)
		tokens, keys = append(tokens, s.Token()), append(keys, s.Key())
		return s
	}
	signedIn := func(u string) *session.Session {
		t.Helper()
		s := stored()
		if err := plain.Login(ctx, s, u); err != nil {
			t.Fatal(err)
		}
		tokens, keys = append(tokens, s.Token()), append(keys, s.Key())
		return s
	}
	load := func(s *session.Session) *session.Session {
		t.Helper()
		return sessiontest.MustLoad(t, plain, s.Token())
	}

	loaded, rotated, destroyed, byKey := stored(), stored(), load(stored()), signedIn(user)
	mine := load(signedIn(user))
	signedIn(other)
	signedIn(other)
	stale := stored()
	fresh, staleView := load(stale), load(stale)
	if err := plain.Rotate(ctx, fresh); err != nil { // staleView's save now conflicts
		t.Fatal(err)
	}
	staleView.Put("x", "1")
	graced := stored()
	oldTok := graced.Token()
	if err := plain.Rotate(ctx, graced); err != nil {
		t.Fatal(err)
	}
	throughOld := sessiontest.MustLoad(t, plain, oldTok) // read-only: rotated within the grace window
	corrupt := stored()
	if err := admin.HDel(ctx, string(corrupt.Key()), "_d").Err(); err != nil {
		t.Fatal(err)
	}
	unsaved, err := plain.New()
	if err != nil {
		t.Fatal(err)
	}
	tokens = append(tokens, unsaved.Token(), throughOld.Token())
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	refused := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DisableIdentity: true, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { refused.Close() })
	down := observed(refused)
	paused := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { paused.Close() })
	slow := observed(paused, session.WithTimeout(200*time.Millisecond))
	if err := paused.Ping(ctx).Err(); err != nil { // a connection in the pool before the pause
		t.Fatal(err)
	}

	cases := []sessionOutcome{
		{"ok", "load", false, func() error { _, err := st.Load(ctx, loaded.Token()); return err }},
		{"ok", "save", false, func() error {
			s, err := st.New()
			if err != nil {
				return err
			}
			s.Put("card", payload)
			err = st.Save(ctx, s)
			tokens, keys = append(tokens, s.Token()), append(keys, s.Key())
			return err
		}},
		{"ok", "rotate", false, func() error {
			s := load(rotated)
			err := st.Rotate(ctx, s)
			tokens, keys = append(tokens, s.Token()), append(keys, s.Key())
			return err
		}},
		{"ok", "destroy", false, func() error { return st.Destroy(ctx, destroyed) }},
		{"ok", "destroy", false, func() error { return st.DestroyKey(ctx, byKey.Key()) }},
		{"ok", "list", false, func() error { _, err := st.ListByUser(ctx, user); return err }},
		{"ok", "destroy_user", false, func() error { _, err := st.DestroyOthers(ctx, mine); return err }},
		{"ok", "destroy_user", false, func() error { _, err := st.DestroyAllForUser(ctx, other); return err }},
		{"ok", "login", false, func() error {
			s := load(stored())
			err := st.Login(ctx, s, user)
			tokens, keys = append(tokens, s.Token()), append(keys, s.Key())
			return err
		}},
		{"not_found", "load", false, func() error { return want(st.Load(ctx, unsaved.Token()))(session.ErrNotFound) }},
		{"malformed", "load", false, func() error { return want(st.Load(ctx, "not-a-token"))(session.ErrMalformed) }},
		{"conflict", "save", false, func() error { return wantErr(st.Save(ctx, staleView), session.ErrConflict) }},
		{"read_only", "rotate", false, func() error { return wantErr(st.Rotate(ctx, throughOld), session.ErrReadOnly) }},
		{"too_large", "save", true, func() error {
			s, err := st.New()
			if err != nil {
				return err
			}
			s.Put("card", strings.Repeat(payload, 100))
			return wantErr(st.Save(ctx, s), session.ErrTooLarge)
		}},
		{"corrupt", "load", true, func() error { return want(st.Load(ctx, corrupt.Token()))(session.ErrCorrupt) }},
		{"canceled", "load", true, func() error { return want(st.Load(canceled, loaded.Token()))(context.Canceled) }},
		{"invalid_argument", "login", true, func() error { return wantErr(st.Login(ctx, load(stored()), ""), nil) }},
		{"invalid_argument", "list", true, func() error { _, err := st.ListByUser(ctx, ""); return wantErr(err, nil) }},
		{"unavailable", "load", true, func() error { return want(down.Load(ctx, loaded.Token()))(session.ErrUnavailable) }},
		{"timeout", "load", true, func() error {
			if err := admin.Do(ctx, "CLIENT", "PAUSE", 60_000, "ALL").Err(); err != nil {
				return err
			}
			defer admin.Do(ctx, "CLIENT", "UNPAUSE")
			return want(slow.Load(ctx, loaded.Token()))(session.ErrUnavailable)
		}},
	}
	for _, c := range cases {
		if err := c.run(); err != nil {
			t.Fatalf("%s %s: %v", c.op, c.outcome, err)
		}
	}
	spans := rec.Ended()
	if len(spans) != len(cases) {
		t.Fatalf("%d spans for %d operations", len(spans), len(cases))
	}

	destroyKey := -1 // the case of DestroyKey, a plain DEL: the last "destroy" (Destroy runs session_destroy)
	for i, c := range cases {
		if c.op == "destroy" {
			destroyKey = i
		}
	}
	t.Run("spans", func(t *testing.T) {
		for i, c := range cases {
			sp := spans[i]
			outcome, _ := spanAttr(sp, "gatehouse.session.outcome")
			typ, hasType := spanAttr(sp, "error.type")
			if sp.Name() != "gatehouse.session."+c.op || outcome.AsString() != c.outcome {
				t.Errorf("span %d: %s with outcome %q; want gatehouse.session.%s with %q", i, sp.Name(), outcome.AsString(), c.op, c.outcome)
			}
			switch {
			case c.failure && (sp.Status().Code != codes.Error || typ.AsString() != c.outcome):
				t.Errorf("%s %s: status %v, error.type %q; want Error and %q", c.op, c.outcome, sp.Status().Code, typ.AsString(), c.outcome)
			case !c.failure && (sp.Status().Code == codes.Error || hasType):
				t.Errorf("%s %s: status %v, error.type %q; want neither: not a failure", c.op, c.outcome, sp.Status().Code, typ.AsString())
			}
			if sys, _ := spanAttr(sp, "db.system.name"); sys.AsString() != "redis" {
				t.Errorf("%s %s: db.system.name %q, want redis", c.op, c.outcome, sys.AsString())
			}
			if c.outcome == "ok" {
				wantOp, wantBatch := "EVALSHA", int64(0)
				plainDEL := c.op == "destroy" && i == destroyKey
				switch {
				case plainDEL:
					wantOp = "DEL"
				case c.op == "load": // a pipeline: HGETALL, then the touch's EVALSHA
					wantOp, wantBatch = "BATCH", 2
				}
				if got, _ := spanAttr(sp, "db.operation.name"); got.AsString() != wantOp {
					t.Errorf("%s: db.operation.name %q, want %q", c.op, got.AsString(), wantOp)
				}
				if got, ok := spanAttr(sp, "db.operation.batch.size"); got.AsInt64() != wantBatch || ok != (wantBatch > 0) {
					t.Errorf("%s: db.operation.batch.size %v (set: %t), want %d", c.op, got.AsInt64(), ok, wantBatch)
				}
				if _, ok := spanAttr(sp, "db.stored_procedure.name"); ok == (c.op == "load" || plainDEL) {
					t.Errorf("%s: db.stored_procedure.name set: %t; want it on script calls, not on a batch or DEL", c.op, ok)
				}
			}
		}
	})

	t.Run("no secrets in spans", func(t *testing.T) {
		secrets := []string{user, other, payload}
		for _, tok := range tokens {
			secrets = append(secrets, string(tok), string(tok)[4:])
		}
		for _, k := range keys {
			secrets = append(secrets, string(k), string(k)[strings.LastIndex(string(k), ":")+1:])
		}
		for _, l := range leaks(spans, secrets) {
			t.Error(l)
		}
	})

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	metrics := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			metrics[m.Name] = m
		}
	}
	// What the metrics must count: by operation, outcome and error.type.
	wantOps, wantDurations := map[string]int64{}, map[string]int64{}
	for _, c := range cases {
		typ := ""
		if c.failure {
			typ = c.outcome
		}
		wantOps[c.op+"/"+c.outcome+"/"+typ]++
		wantDurations[c.op+"/"+typ]++
	}
	attrs := func(set attribute.Set, keys ...attribute.Key) string {
		vals := make([]string, len(keys))
		for i, k := range keys {
			if v, ok := set.Value(k); ok {
				vals[i] = v.AsString()
			}
		}
		return strings.Join(vals, "/")
	}

	t.Run("operations counter", func(t *testing.T) {
		got := map[string]int64{}
		for _, p := range metrics["gatehouse.session.operations"].Data.(metricdata.Sum[int64]).DataPoints {
			got[attrs(p.Attributes, "gatehouse.session.operation", "gatehouse.session.outcome", "error.type")] += p.Value
		}
		if !maps.Equal(got, wantOps) {
			t.Errorf("operations by operation/outcome/error.type:\n got %v\nwant %v", got, wantOps)
		}
	})

	t.Run("duration histogram", func(t *testing.T) {
		got := map[string]int64{}
		for _, p := range metrics["gatehouse.session.duration"].Data.(metricdata.Histogram[float64]).DataPoints {
			got[attrs(p.Attributes, "gatehouse.session.operation", "error.type")] += int64(p.Count)
		}
		if !maps.Equal(got, wantDurations) {
			t.Errorf("durations by operation/error.type:\n got %v\nwant %v", got, wantDurations)
		}
	})

	t.Run("descriptions", func(t *testing.T) {
		ops, dur := metrics["gatehouse.session.operations"].Description, metrics["gatehouse.session.duration"].Description
		for _, c := range cases {
			if !listed(ops, c.outcome) {
				t.Errorf("the operations counter's description does not list the outcome %s: %q", c.outcome, ops)
			}
			if c.failure && !listed(dur, c.outcome) {
				t.Errorf("the duration histogram's description does not list the error.type %s: %q", c.outcome, dur)
			}
		}
		for _, s := range []string{"operation", "error.type"} {
			if !strings.Contains(dur, s) {
				t.Errorf("the duration histogram's description does not mention %s: %q", s, dur)
			}
		}
	})
}

// listed reports whether description lists word as one item of a list: "(a, word, b)".
func listed(description, word string) bool {
	return slices.ContainsFunc(strings.FieldsFunc(description, func(r rune) bool {
		return r == ',' || r == '(' || r == ')' || r == ' ' || r == ';' || r == ':' || r == '.'
	}), func(s string) bool { return s == word })
}

// want returns a check that err (the second result of a call) matches target.
func want[T any](_ T, err error) func(target error) error {
	return func(target error) error { return wantErr(err, target) }
}

// wantErr returns nil when err matches target (any error, for a nil target), else an error saying
// what came instead.
func wantErr(err, target error) error {
	switch {
	case err == nil:
		return fmt.Errorf("no error; want %v", target)
	case target != nil && !errors.Is(err, target):
		return fmt.Errorf("%w; want %v", err, target)
	}
	return nil
}
