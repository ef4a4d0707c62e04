// Package telemetry is the OpenTelemetry plumbing shared by the limiter and session packages: spans
// that cost nothing while no SDK is installed, and metric instruments recorded only when enabled.
package telemetry

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Scope is the instrumentation scope of every span and instrument.
const Scope = "github.com/gatehouse/gatehouse"

// Attribute keys shared by both packages.
const (
	DBSystem          = attribute.Key("db.system.name")
	DBStoredProcedure = attribute.Key("db.stored_procedure.name")
	ErrorType         = attribute.Key("error.type")
)

// RedisSystem is db.system.name=redis.
var RedisSystem = DBSystem.String("redis")

// The default global TracerProvider, before any SDK is installed, is a delegating provider of the
// otel/internal/global package. otel.SetTracerProvider replaces it (GetTracerProvider then returns
// the SDK's), so "the global is still this type" means "no SDK installed".
var defaultTracerProviderType = func() reflect.Type {
	t := reflect.TypeOf(otel.GetTracerProvider())
	if t == nil || t.String() != "*global.tracerProvider" {
		return nil // an SDK was installed before this package initialised: always trace
	}
	return t
}()

// Tracer starts spans from a configured TracerProvider, or from the global one as it is at each
// call. While the provider is a no-op (no SDK installed, or noop.TracerProvider), Start returns the
// context unchanged and a nil span, without allocating.
type Tracer struct {
	explicit trace.TracerProvider // nil: follow the global provider
	tracer   trace.Tracer         // the explicit provider's tracer, nil if it is a no-op
	global   atomic.Pointer[globalTracer]
}

type globalTracer struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

// NewTracer returns a Tracer for tp, or for the global provider when tp is nil.
func NewTracer(tp trace.TracerProvider) *Tracer {
	t := &Tracer{explicit: tp}
	if tp != nil {
		if _, isNoop := tp.(noop.TracerProvider); !isNoop {
			t.tracer = tp.Tracer(Scope)
		}
	}
	return t
}

// Start starts an INTERNAL span named name, or returns (ctx, nil) when tracing is off.
func (t *Tracer) Start(ctx context.Context, name string) (context.Context, trace.Span) {
	tr := t.current()
	if tr == nil {
		return ctx, nil
	}
	return tr.Start(ctx, name, internalKind)
}

var internalKind = trace.WithSpanKind(trace.SpanKindInternal)

func (t *Tracer) current() trace.Tracer {
	if t.explicit != nil {
		return t.tracer
	}
	tp := otel.GetTracerProvider()
	if defaultTracerProviderType != nil && reflect.TypeOf(tp) == defaultTracerProviderType {
		return nil
	}
	if g := t.global.Load(); g != nil && g.tp == tp {
		return g.tracer
	}
	g := &globalTracer{tp: tp, tracer: tp.Tracer(Scope)}
	t.global.Store(g)
	return g.tracer
}

// End records err on span (when err is a failure, not an expected outcome) and ends it. A nil
// span is fine.
func End(span trace.Span, err error, errType string) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, errType)
		span.SetAttributes(ErrorType.String(errType))
	}
	span.End()
}

// Meter returns the meter of mp, or of the global provider when mp is nil.
func Meter(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(Scope)
}

// DurationBuckets are histogram bucket bounds in seconds, fine below a millisecond, where a Redis
// call on a local network lands.
var DurationBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// SizeBuckets are histogram bucket bounds in bytes.
var SizeBuckets = []float64{0, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576}

// KeyHasher turns a caller's key into a value safe to put on a span: HMAC-SHA256 with a secret
// salt, 16 hex characters. A nil KeyHasher adds nothing.
type KeyHasher struct{ salt []byte }

// NewKeyHasher returns a KeyHasher with salt.
func NewKeyHasher(salt []byte) *KeyHasher {
	return &KeyHasher{salt: append([]byte(nil), salt...)}
}

// Hash returns the hashed form of key.
func (h *KeyHasher) Hash(key string) string {
	m := hmac.New(sha256.New, h.salt)
	m.Write([]byte(key))
	return hex.EncodeToString(m.Sum(nil)[:8])
}
