package limiter

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/telemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope of the limiter's spans and metrics.
const scope = "github.com/gatehouse/gatehouse/limiter"

// WithTracerProvider sets where the limiter's spans go (default: the global TracerProvider, as it
// is at each call). With no SDK installed, or a noop provider, no span is started at all.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets where the limiter's metrics go (default: the global MeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithHashedKeyAttribute adds gatehouse.limiter.key_hash to spans: HMAC-SHA256 of the caller's key
// with salt, 16 hex characters, so that one client's decisions can be found in traces without the
// key itself (a user ID, an IP address) appearing anywhere. Keys never become metric attributes.
func WithHashedKeyAttribute(salt []byte) Option {
	return optionFunc(func(c *config) { c.keyHash = telemetry.NewKeyHasher(salt) })
}

// Span and metric attribute keys. docs/tracing.md lists them all.
const (
	attrAlgorithm  = attribute.Key("gatehouse.limiter.algorithm")
	attrPolicy     = attribute.Key("gatehouse.limiter.policy")
	attrDecision   = attribute.Key("gatehouse.limiter.decision")
	attrLimit      = attribute.Key("gatehouse.limiter.limit")
	attrRemaining  = attribute.Key("gatehouse.limiter.remaining")
	attrRetryAfter = attribute.Key("gatehouse.limiter.retry_after")
	attrCost       = attribute.Key("gatehouse.limiter.cost")
	attrLimits     = attribute.Key("gatehouse.limiter.limits")
	attrKeyHash    = attribute.Key("gatehouse.limiter.key_hash")
	attrOperation  = attribute.Key("gatehouse.limiter.operation")
	attrWaited     = attribute.Key("gatehouse.limiter.waited")
	attrSource     = attribute.Key("gatehouse.limiter.source")
	attrShadow     = attribute.Key("gatehouse.limiter.shadow")
)

type instruments struct {
	decisions metric.Int64Counter
	duration  metric.Float64Histogram
}

func newInstruments(mp metric.MeterProvider) instruments {
	m := telemetry.Meter(mp, scope)
	decisions, err := m.Int64Counter("gatehouse.limiter.decisions",
		metric.WithUnit("{decision}"),
		metric.WithDescription("Rate-limit decisions, by algorithm, policy, decision (allowed, denied, error; errors with their error.type) and source ("+sourceNames+"; none on an error found before any was asked)."))
	if err != nil {
		otel.Handle(err)
	}
	duration, err := m.Float64Histogram("gatehouse.limiter.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Time to make a decision (one script call, unless the deny cache or the failure policy's cooldown answers), by algorithm, operation and source (what decided; none on an error found before any was asked), with error.type when it failed or the failure policy stood in for Redis."),
		metric.WithExplicitBucketBoundaries(telemetry.DurationBuckets...))
	if err != nil {
		otel.Handle(err)
	}
	return instruments{decisions: decisions, duration: duration}
}

// sourceNames lists every Source by its String, for the decisions metric's description.
var sourceNames = func() string {
	var names []string
	for s := SourceRedis; ; s++ {
		name := s.String()
		if strings.HasPrefix(name, "Source(") {
			return strings.Join(names, ", ")
		}
		names = append(names, name)
	}
}()

// observe records one operation's span attributes and metrics, and ends the span. r.out holds
// the decision's results (none for Reset); the binding one is worked out only when something
// records it.
func (l *Limiter) observe(ctx context.Context, span trace.Span, start time.Time, r *request, err error) {
	recDecision := l.inst.decisions.Enabled(ctx)
	recDuration := l.inst.duration.Enabled(ctx)
	traced := span.IsRecording()
	if !traced && !recDecision && !recDuration {
		span.End() // does not record: ending it costs nothing
		return
	}
	var bind *Result
	if err == nil && len(r.out) > 0 {
		b := binding(r.out)
		bind = &b
	}
	// The decision is the limits' verdict: "denied" when a limit in shadow mode refused, with
	// gatehouse.limiter.shadow true when that refusal was not enforced (the request was admitted).
	decision, unenforced := "error", false
	if bind != nil {
		decision = "denied"
		if bind.Allowed && !bind.Shadow {
			decision = "allowed"
		}
		unenforced = bind.Allowed && bind.Shadow
	}
	// What decided: Redis, unless the deny cache or the failure policy did; nothing for an error
	// found before Redis was asked (an invalid argument, a caller gone during a cooldown).
	source, sourced := SourceRedis, r.asked
	failure := err // what went wrong, even when the failure policy decided in its place
	if bind != nil {
		source, sourced, failure = bind.Source, true, bind.Err
	}
	errType := errorType(failure)
	policy := ""
	switch {
	case bind != nil:
		policy = policyName(bind.Limit)
	case len(r.limits) == 1:
		policy = policyName(r.limits[0])
	}
	if traced {
		span.SetAttributes(
			telemetry.RedisSystem,
			telemetry.DBStoredProcedureName.String(l.alg.name),
			attrAlgorithm.String(l.alg.name),
			attrCost.Int64(r.n),
			attrLimits.Int(len(r.limits)),
		)
		if sourced {
			span.SetAttributes(attrSource.String(source.String()))
		}
		if policy != "" {
			span.SetAttributes(attrPolicy.String(policy))
		}
		if bind != nil {
			span.SetAttributes(
				attrDecision.String(decision),
				attrLimit.Int64(bind.Limit.Capacity()),
				attrRemaining.Int64(bind.Remaining),
			)
			if (!bind.Allowed || bind.Shadow) && bind.RetryAfter != InfDuration {
				span.SetAttributes(attrRetryAfter.Float64(bind.RetryAfter.Seconds()))
			}
			if unenforced {
				span.SetAttributes(attrShadow.Bool(true))
			}
		}
		if l.keyHash != nil && r.key != "" {
			span.SetAttributes(attrKeyHash.String(l.keyHash.Hash(r.key)))
		}
		telemetry.End(span, failure, errType)
	} else {
		span.End()
	}
	if recDecision && r.op != opReset {
		attrs := [5]attribute.KeyValue{attrAlgorithm.String(l.alg.name), attrPolicy.String(policy),
			attrDecision.String(decision)}
		n := 3
		if sourced {
			attrs[n] = attrSource.String(source.String())
			n++
		}
		switch {
		case err != nil:
			attrs[n] = telemetry.ErrorType.String(errorType(err))
			n++
		case unenforced:
			attrs[n] = attrShadow.Bool(true)
			n++
		}
		l.inst.decisions.Add(ctx, 1, metric.WithAttributes(attrs[:n]...))
	}
	if recDuration {
		attrs := [4]attribute.KeyValue{attrAlgorithm.String(l.alg.name), attrOperation.String(r.op.String())}
		n := 2
		if sourced {
			attrs[n] = attrSource.String(source.String())
			n++
		}
		if errType != "" {
			attrs[n] = telemetry.ErrorType.String(errType)
			n++
		}
		l.inst.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(attrs[:n]...))
	}
}

// policyName names a limit in spans, metrics and headers: its Name, or without one its String,
// such as "100/1m0s" or "2/10m0s burst 5". The number of distinct values is the number of limits a
// program configures, never one per client.
func policyName(l Limit) string {
	if l.Name != "" {
		return l.Name
	}
	return l.String()
}

// errorType classifies an error for the error.type attribute: the limiter's own verdicts
// (invalid_argument, corrupt_state, bad_reply), else redisfail's type, which the session store
// records for the same failure.
func errorType(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrInvalidLimit), errors.Is(err, ErrInvalidCost), errors.Is(err, ErrInvalidKey),
		errors.Is(err, errInvalidClock):
		return "invalid_argument"
	case errors.Is(err, ErrCorruptState):
		return "corrupt_state"
	case errors.Is(err, ErrBadReply):
		return "bad_reply"
	}
	return failureOf(err).ErrorType()
}
