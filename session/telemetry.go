package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/redisfail"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope of the store's spans and metrics.
const scope = "github.com/gatehouse/gatehouse/session"

const (
	attrOperation = attribute.Key("gatehouse.session.operation")
	attrOutcome   = attribute.Key("gatehouse.session.outcome")
	attrFound     = attribute.Key("gatehouse.session.found")
	attrConflict  = attribute.Key("gatehouse.session.conflict")
	attrBytes     = attribute.Key("gatehouse.session.bytes")
	attrCount     = attribute.Key("gatehouse.session.count")
	attrKeyHash   = attribute.Key("gatehouse.session.key_hash")
)

type instruments struct {
	ops      metric.Int64Counter
	duration metric.Float64Histogram
	size     metric.Int64Histogram
}

func newInstruments(mp metric.MeterProvider) instruments {
	m := telemetry.Meter(mp, scope)
	var errs [3]error
	var in instruments
	in.ops, errs[0] = m.Int64Counter("gatehouse.session.operations",
		metric.WithUnit("{operation}"),
		metric.WithDescription("Session operations, by operation and outcome (ok, not_found, conflict, read_only, malformed; "+
			"failures, also as error.type: contended, too_large, corrupt, invalid_argument, canceled, closed, timeout, unavailable, oom, error_reply, _OTHER)."))
	in.duration, errs[1] = m.Float64Histogram("gatehouse.session.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Time of a session operation, by operation, and by error.type when it failed "+
			"(contended, too_large, corrupt, invalid_argument, canceled, closed, timeout, unavailable, oom, error_reply, _OTHER)."),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets...))
	in.size, errs[2] = m.Int64Histogram("gatehouse.session.size",
		metric.WithUnit("By"),
		metric.WithDescription("Attribute bytes read by a load or written by a save."),
		metric.WithExplicitBucketBoundaries(telemetry.SizeBuckets...))
	for _, err := range errs {
		if err != nil {
			otel.Handle(err)
		}
	}
	return in
}

// op is one observed operation.
type op struct {
	name   string
	script string // the script's name, "" for plain commands
	ctx    context.Context
	span   trace.Span
	start  time.Time
	key    Key
	bytes  int                // attribute bytes read or written; -1 when not applicable
	count  int                // sessions listed or destroyed; -1 when not applicable
	cancel context.CancelFunc // ends the WithTimeout bound, if any
}

// begin starts an operation's span.
func (st *Store) begin(ctx context.Context, name, script string) (context.Context, op) {
	ctx, span := st.tracer.Start(ctx, spanNames[name])
	o := op{name: name, script: script, ctx: ctx, span: span, start: time.Now(), bytes: -1, count: -1}
	if st.timeout > 0 {
		ctx, o.cancel = context.WithTimeout(ctx, st.timeout)
	}
	return ctx, o
}

var spanNames = map[string]string{}

func init() {
	for _, n := range []string{"load", "save", "destroy", "rotate", "login", "list", "destroy_user"} {
		spanNames[n] = "gatehouse.session." + n
	}
}

// sized reports whether the operation's payload size would be recorded, so that it is measured
// only then.
func (st *Store) sized(o *op) bool {
	return o.span.IsRecording() || st.inst.size.Enabled(o.ctx)
}

// end records the operation's outcome on its span and metrics, and returns err, marked
// ErrUnavailable when it is a failure of Redis.
func (st *Store) end(o *op, err error) error {
	if o.cancel != nil {
		o.cancel()
	}
	ctx := o.ctx
	kind := failure(err)
	if kind.Failed() && !errors.Is(err, ErrUnavailable) {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	outcome, failed := outcomeOf(err, kind)
	errType := ""
	if failed {
		errType = outcome
	}
	if o.span.IsRecording() {
		o.span.SetAttributes(telemetry.RedisSystem, attrOperation.String(o.name), attrOutcome.String(outcome))
		switch {
		case o.name == "load":
			// A pipeline of two commands (HGETALL, and EVALSHA of session_touch): a batch, by the
			// database conventions, of operations of different names, so without a stored
			// procedure of its own.
			o.span.SetAttributes(telemetry.DBOperationName.String("BATCH"), telemetry.DBOperationBatchSize.Int(2))
		case o.script != "":
			o.span.SetAttributes(telemetry.DBOperationName.String("EVALSHA"), telemetry.DBStoredProcedureName.String(o.script))
		case o.name == "destroy":
			o.span.SetAttributes(telemetry.DBOperationName.String("DEL"))
		}
		if o.name == "load" {
			o.span.SetAttributes(attrFound.Bool(err == nil))
		}
		if errors.Is(err, ErrConflict) {
			o.span.SetAttributes(attrConflict.Bool(true))
		}
		if o.bytes >= 0 {
			o.span.SetAttributes(attrBytes.Int(o.bytes))
		}
		if o.count >= 0 {
			o.span.SetAttributes(attrCount.Int(o.count))
		}
		if st.keyHash != nil && o.key != "" {
			o.span.SetAttributes(attrKeyHash.String(st.keyHash.Hash(string(o.key))))
		}
		var failure error
		if failed {
			failure = err
		}
		telemetry.End(o.span, failure, errType)
	} else {
		o.span.End()
	}
	if st.inst.ops.Enabled(ctx) {
		attrs := []attribute.KeyValue{attrOperation.String(o.name), attrOutcome.String(outcome)}
		if failed {
			attrs = append(attrs, telemetry.ErrorType.String(errType))
		}
		st.inst.ops.Add(ctx, 1, metric.WithAttributes(attrs...))
	}
	if st.inst.duration.Enabled(ctx) {
		attrs := []attribute.KeyValue{attrOperation.String(o.name)}
		if failed {
			attrs = append(attrs, telemetry.ErrorType.String(errType))
		}
		st.inst.duration.Record(ctx, time.Since(o.start).Seconds(), metric.WithAttributes(attrs...))
	}
	if o.bytes >= 0 && st.inst.size.Enabled(ctx) {
		st.inst.size.Record(ctx, int64(o.bytes), metric.WithAttributes(attrOperation.String(o.name)))
	}
	return err
}

// failure returns the kind of failure of Redis that err is (see ErrUnavailable). The store's own
// verdicts are not, even when they wrap an I/O error: a corrupt record (a value cut short), an
// oversized session, a malformed token.
func failure(err error) redisfail.Kind {
	if err == nil {
		return redisfail.None
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMalformed) {
		return redisfail.Other
	}
	return redisfail.Classify(err)
}

// outcomeOf names the outcome of an operation that returned err, a failure of Redis of kind, and
// reports whether it is a failure (its span has status Error, and its name is the error.type)
// rather than an answer a session store gives in its normal course: a session not found, a write
// refused after another request's rotation or through a rotated token, a forged token.
func outcomeOf(err error, kind redisfail.Kind) (outcome string, failed bool) {
	switch {
	case err == nil:
		return "ok", false
	case kind.Failed():
		return kind.ErrorType(), true // timeout, unavailable or oom, as the limiter says them
	case errors.Is(err, ErrNotFound):
		return "not_found", false
	case errors.Is(err, ErrConflict):
		return "conflict", false
	case errors.Is(err, ErrReadOnly):
		return "read_only", false
	case errors.Is(err, ErrMalformed):
		return "malformed", false
	case errors.Is(err, ErrContended):
		return "contended", true
	case errors.Is(err, ErrTooLarge):
		return "too_large", true
	case errors.Is(err, ErrCorrupt):
		return "corrupt", true
	case isInvalidArgument(err):
		return "invalid_argument", true
	default:
		return kind.ErrorType(), true // canceled, closed, error_reply or _OTHER, as the limiter says them
	}
}

// payload returns the encoded size of values.
func payload(values map[string]string) int {
	n := 0
	for _, v := range values {
		n += len(v)
	}
	return n
}
