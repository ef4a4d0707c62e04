// Package telemetry is the OpenTelemetry plumbing shared by the limiter and session packages:
// tracers and meters under each package's own instrumentation scope (with gatehouse's version and
// the semantic conventions' schema URL), spans that cost nothing while no SDK is installed, the
// semantic-convention attributes both use, and hashed keys.
package telemetry

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Version is gatehouse's version, the instrumentation version of every tracer and meter: the next
// release while CHANGELOG.md's top section is Unreleased (TestVersionMatchesChangelog checks it).
const Version = "0.9.0"

// SchemaURL is the schema of the semantic conventions the attributes below follow.
const SchemaURL = semconv.SchemaURL

// Attribute keys of the semantic conventions.
const (
	DBSystemName          = semconv.DBSystemNameKey          // db.system.name
	DBOperationName       = semconv.DBOperationNameKey       // db.operation.name
	DBOperationBatchSize  = semconv.DBOperationBatchSizeKey  // db.operation.batch.size
	DBStoredProcedureName = semconv.DBStoredProcedureNameKey // db.stored_procedure.name
	ErrorType             = semconv.ErrorTypeKey             // error.type
	ServerAddress         = semconv.ServerAddressKey         // server.address
	ServerPort            = semconv.ServerPortKey            // server.port
)

// RedisSystem is db.system.name=redis.
var RedisSystem = semconv.DBSystemNameRedis

// initialTracerProvider is the global TracerProvider as this package found it: otel's delegating
// default, before a program installs an SDK. otel.SetTracerProvider replaces what
// otel.GetTracerProvider returns, so while it returns this same provider no SDK is installed. (A
// program that installs an SDK before this package initialises, in an init function, must pass
// its provider with the packages' WithTracerProvider: the global one is taken as the default.)
var initialTracerProvider = otel.GetTracerProvider()

// noSpan is the span Start returns while tracing is off: it records nothing, and returning it
// allocates nothing.
var noSpan trace.Span = noop.Span{}

// Tracer starts spans under one instrumentation scope, from a configured TracerProvider or from
// the global one as it is at each call. While the provider is a no-op (no SDK installed, or a
// noop.TracerProvider), Start returns the context unchanged and a span that does not record,
// without allocating.
type Tracer struct {
	scope    string
	explicit trace.TracerProvider // nil: follow the global provider
	tracer   trace.Tracer         // the explicit provider's tracer, nil if it is a no-op
	global   atomic.Pointer[globalTracer]
}

type globalTracer struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
}

// NewTracer returns a Tracer for scope (the instrumenting package's import path) from tp, or from
// the global provider when tp is nil.
func NewTracer(tp trace.TracerProvider, scope string) *Tracer {
	t := &Tracer{scope: scope}
	if tp != nil && !same(tp, initialTracerProvider) {
		t.explicit = tp
		if !isNoop(tp) {
			t.tracer = newTracer(tp, scope)
		}
	}
	return t
}

func newTracer(tp trace.TracerProvider, scope string) trace.Tracer {
	return tp.Tracer(scope, trace.WithInstrumentationVersion(Version), trace.WithSchemaURL(SchemaURL))
}

// Start starts an INTERNAL span named name. With tracing off it returns ctx and a span that does
// not record: callers guard attribute work with span.IsRecording() and always end the span.
func (t *Tracer) Start(ctx context.Context, name string) (context.Context, trace.Span) {
	tr := t.current()
	if tr == nil {
		return ctx, noSpan
	}
	return tr.Start(ctx, name, internalKind)
}

var internalKind = trace.WithSpanKind(trace.SpanKindInternal)

func (t *Tracer) current() trace.Tracer {
	if t.explicit != nil {
		return t.tracer
	}
	tp := otel.GetTracerProvider()
	if same(tp, initialTracerProvider) || isNoop(tp) {
		return nil
	}
	if g := t.global.Load(); g != nil && same(g.tp, tp) {
		return g.tracer
	}
	g := &globalTracer{tp: tp, tracer: newTracer(tp, t.scope)}
	t.global.Store(g)
	return g.tracer
}

// same reports whether a and b are the same provider, without the panic of == on a dynamic type
// that is not comparable.
func same(a, b trace.TracerProvider) bool {
	ta := reflect.TypeOf(a)
	return ta == reflect.TypeOf(b) && (ta == nil || ta.Comparable() && a == b)
}

func isNoop(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case noop.TracerProvider, *noop.TracerProvider:
		return true
	}
	return false
}

// End records err on span (when err is a failure, not an expected outcome) with error.type
// errType, and ends the span. A span that does not record costs nothing.
func End(span trace.Span, err error, errType string) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, errType)
		span.SetAttributes(ErrorType.String(errType))
	}
	span.End()
}

// Meter returns the meter for scope (the instrumenting package's import path) of mp, or of the
// global provider when mp is nil.
func Meter(mp metric.MeterProvider, scope string) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(scope, metric.WithInstrumentationVersion(Version), metric.WithSchemaURL(SchemaURL))
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
