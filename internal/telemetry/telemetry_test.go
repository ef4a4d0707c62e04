package telemetry

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	"go.opentelemetry.io/otel/trace/noop"
)

// Version is the release CHANGELOG.md's top section names: the next release under Unreleased
// ("Next release: X"), or the latest released heading.
func TestVersionMatchesChangelog(t *testing.T) {
	b, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	heading := regexp.MustCompile(`(?m)^## \[([^\]]+)\]`).FindStringSubmatch(log)
	if heading == nil {
		t.Fatal("CHANGELOG.md has no '## [...]' section")
	}
	want := heading[1]
	if want == "Unreleased" {
		next := regexp.MustCompile(`(?m)^Next release: ([0-9]+\.[0-9]+\.[0-9]+)\.$`).FindStringSubmatch(log)
		if next == nil {
			t.Fatal("CHANGELOG.md's Unreleased section does not say 'Next release: X.Y.Z.'")
		}
		want = next[1]
	}
	if Version != want {
		t.Errorf("telemetry.Version = %q, CHANGELOG.md says %q", Version, want)
	}
}

// recorder is a TracerProvider of the test's own that records how its tracers were made and
// starts spans that record.
type recorder struct {
	embedded.TracerProvider
	scopes []string
	cfgs   []trace.TracerConfig
}

func (r *recorder) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	r.scopes = append(r.scopes, name)
	r.cfgs = append(r.cfgs, trace.NewTracerConfig(opts...))
	return recordingTracer{}
}

type recordingTracer struct{ embedded.Tracer }

func (recordingTracer) Start(ctx context.Context, _ string, _ ...trace.SpanStartOption) (context.Context, trace.Span) {
	return ctx, &recordingSpan{}
}

type recordingSpan struct {
	noop.Span
	ended bool
}

func (s *recordingSpan) IsRecording() bool          { return !s.ended }
func (s *recordingSpan) End(...trace.SpanEndOption) { s.ended = true }

// uncomparable is a TracerProvider whose dynamic type == would panic on.
type uncomparable struct {
	embedded.TracerProvider
	_ []int
}

func (uncomparable) Tracer(string, ...trace.TracerOption) trace.Tracer { return recordingTracer{} }

type ctxKey struct{}

// Tracing off: while the global provider is the one gatehouse found (no SDK), or a noop provider
// is given, Start returns ctx itself and a span that does not record, allocating nothing. Once a
// program installs a provider, spans come from it, under the scope with Version and SchemaURL.
// The phases run in order: the global provider cannot be put back.
func TestTracer(t *testing.T) {
	ctx := context.WithValue(context.Background(), ctxKey{}, 1)
	global := NewTracer(nil, "example.com/scope")
	explicitNoop := NewTracer(noop.NewTracerProvider(), "example.com/scope")
	sameAsGlobal := NewTracer(otel.GetTracerProvider(), "example.com/scope")
	for name, tr := range map[string]*Tracer{"global, no SDK": global, "noop provider": explicitNoop, "the initial global, given": sameAsGlobal} {
		c, span := tr.Start(ctx, "op")
		if c != ctx || span.IsRecording() || span.SpanContext().IsValid() {
			t.Errorf("%s: Start = (%v, recording %v), want ctx itself and a span that does not record", name, c, span.IsRecording())
		}
		allocs := testing.AllocsPerRun(100, func() {
			_, span := tr.Start(ctx, "op")
			End(span, context.Canceled, "canceled")
		})
		if allocs != 0 {
			t.Errorf("%s: Start and End allocate %v times, want 0", name, allocs)
		}
	}

	rec := &recorder{}
	otel.SetTracerProvider(rec)
	for name, tr := range map[string]*Tracer{"global": global, "the initial global, given": sameAsGlobal} {
		if _, span := tr.Start(ctx, "op"); !span.IsRecording() {
			t.Errorf("%s: with a provider installed, the span does not record", name)
		}
	}
	if _, span := explicitNoop.Start(ctx, "op"); span.IsRecording() {
		t.Error("a noop provider given explicitly: the span records")
	}
	if len(rec.scopes) == 0 {
		t.Fatal("the installed provider made no tracer")
	}
	for i, scope := range rec.scopes {
		cfg := rec.cfgs[i]
		if scope != "example.com/scope" || cfg.InstrumentationVersion() != Version || cfg.SchemaURL() != SchemaURL {
			t.Errorf("tracer %d: scope %q, version %q, schema %q; want %q, %q, %q", i, scope,
				cfg.InstrumentationVersion(), cfg.SchemaURL(), "example.com/scope", Version, SchemaURL)
		}
	}
	span := &recordingSpan{}
	End(span, nil, "")
	if !span.ended {
		t.Error("End did not end a recording span")
	}

	otel.SetTracerProvider(uncomparable{})
	if _, span := global.Start(ctx, "op"); !span.IsRecording() {
		t.Error("a provider of an uncomparable type: the span does not record")
	}
	if _, span := NewTracer(uncomparable{}, "s").Start(ctx, "op"); !span.IsRecording() {
		t.Error("a provider of an uncomparable type, given: the span does not record")
	}
}

type meterRecorder struct {
	metricnoop.MeterProvider
	name string
	cfg  metric.MeterConfig
}

func (m *meterRecorder) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	m.name, m.cfg = name, metric.NewMeterConfig(opts...)
	return m.MeterProvider.Meter(name, opts...)
}

func TestMeterScope(t *testing.T) {
	mp := &meterRecorder{}
	Meter(mp, "example.com/scope")
	if mp.name != "example.com/scope" || mp.cfg.InstrumentationVersion() != Version || mp.cfg.SchemaURL() != SchemaURL {
		t.Errorf("meter: scope %q, version %q, schema %q", mp.name, mp.cfg.InstrumentationVersion(), mp.cfg.SchemaURL())
	}
	if !strings.HasPrefix(SchemaURL, "https://opentelemetry.io/schemas/") {
		t.Errorf("SchemaURL = %q", SchemaURL)
	}
}
