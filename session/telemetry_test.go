package session

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// With no SDK installed (the global providers' defaults) or with noop providers, telemetry costs
// no allocation: a traced Load allocates exactly what the untraced load does, against real Redis.
func TestTelemetryOffAllocatesNothing(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	if err := gatehouse.Preload(ctx, b.Client); err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]Option{
		"global providers, no SDK": nil,
		"noop providers":           {WithTracerProvider(tracenoop.NewTracerProvider()), WithMeterProvider(metricnoop.NewMeterProvider())},
	} {
		st, err := NewStore(b.Client, append(opts, WithKeyPrefix(redistest.Prefix(t)))...)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := st.New()
		s.Put("user", "ada")
		if err := st.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		tok := s.Token()
		untraced := testing.AllocsPerRun(300, func() {
			if _, err := st.load(ctx, tok); err != nil {
				t.Fatal(err)
			}
		})
		traced := testing.AllocsPerRun(300, func() {
			if _, err := st.Load(ctx, tok); err != nil {
				t.Fatal(err)
			}
		})
		if traced != untraced {
			t.Errorf("%s: Load allocates %v per call, the untraced load %v", name, traced, untraced)
		}
		t.Logf("%s: %v allocations per Load, traced and untraced", name, traced)
	}
}
