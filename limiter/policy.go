package limiter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/redisfail"
	"github.com/gatehouse/gatehouse/internal/script"
)

// Source says what made a decision: Redis, or the limiter's failure policy standing in for a Redis
// that could not answer.
type Source uint8

const (
	// SourceRedis: the decision was made in Redis by the algorithm's script. The zero value.
	SourceRedis Source = iota
	// SourceFailOpen: Redis failed and the limiter admitted the request (FailOpen). The
	// limiter counted nothing for it; but a call that timed out had usually reached Redis, which
	// then ran it and counted the request.
	SourceFailOpen
	// SourceFailClosed: Redis failed and the limiter refused the request (FailClosed).
	SourceFailClosed
	// SourceDenyCache: Redis refused the same request moments ago, and said until when; the
	// limiter refused it again without asking (WithDenyCache).
	SourceDenyCache
	// SourceLocal: Redis failed and the limiter decided with its in-process fallback
	// (FailLocal).
	SourceLocal
)

// String returns "redis", "fail_open", "fail_closed", "deny_cache" or "local", as spans and
// metrics name the source.
func (s Source) String() string {
	switch s {
	case SourceRedis:
		return "redis"
	case SourceFailOpen:
		return "fail_open"
	case SourceFailClosed:
		return "fail_closed"
	case SourceDenyCache:
		return "deny_cache"
	case SourceLocal:
		return "local"
	}
	return fmt.Sprintf("Source(%d)", uint8(s))
}

// ErrUnavailable is the Err of a decision the failure policy made without asking Redis, because
// Redis failed moments before (see WithCooldown).
var ErrUnavailable = errors.New("limiter: Redis failed moments ago; not asked during the cooldown")

// defaultCooldown is how long, after Redis fails to answer, a limiter with a failure policy
// decides without asking it, without WithCooldown.
const defaultCooldown = time.Second

// FailurePolicy is what a decision does when Redis cannot make it: FailError (the default: return
// the error), FailOpen, FailClosed or FailLocal. Set it with WithFailurePolicy. The zero value is
// FailError.
//
// A policy stands in only when Redis is unavailable: a refused dial, a timeout (WithTimeout's, or
// the client's read timeout), a reset or closed connection, or a reply saying that the server
// cannot serve now (LOADING, BUSY, MASTERDOWN, CLUSTERDOWN, READONLY, TRYAGAIN, NOREPLICAS, MISCONF,
// OOM, or the maximum number of clients reached). The decision then has a nil error and a Result whose
// Source names the policy and whose Err holds the failure; the failure is recorded on the span,
// in the decisions metric and in the log (WithLogger), never silently. Pair a policy with
// WithTimeout, so that a slow Redis costs a bounded wait; after a failure, Redis is left alone for
// a cooldown (WithCooldown).
//
// Everything else is returned as the error, whatever the policy: invalid arguments, corrupt state
// (ErrCorruptState), a malformed reply (ErrBadReply), an error of the script itself, a client the
// program closed (redis.ErrClosed), and a failure after the caller's own context has ended. Such
// errors are counted in the decisions metric with decision "error" and their error.type. An error
// of no known kind, which comes from between the client and Redis (a go-redis hook's own, such as
// a circuit breaker's; a TLS handshake that failed), is taken as Redis unavailable: the policy
// stands in (error.type "_OTHER"), without a cooldown.
type FailurePolicy struct {
	source     Source        // SourceRedis: return the error
	retryAfter time.Duration // FailClosed's
	local      LocalFallback // FailLocal's
}

// FailError returns the default policy: a decision Redis could not make is an error, returned to
// the caller, and there is no cooldown (the caller may want to retry at once).
func FailError() FailurePolicy { return FailurePolicy{} }

// FailOpen returns the policy that admits a request when Redis is unavailable: Allowed true,
// Source SourceFailOpen, and Remaining and ResetAfter 0, since nothing is known of the limit's
// state.
func FailOpen() FailurePolicy { return FailurePolicy{source: SourceFailOpen} }

// FailClosed returns the policy that refuses a request when Redis is unavailable, with RetryAfter
// set to retryAfter: Allowed false, Source SourceFailClosed, Remaining and ResetAfter 0. A
// retryAfter that is not positive makes New return an error.
func FailClosed(retryAfter time.Duration) FailurePolicy {
	return FailurePolicy{source: SourceFailClosed, retryAfter: retryAfter}
}

// WithFailurePolicy sets what a decision does when Redis is unavailable (default FailError()).
func WithFailurePolicy(p FailurePolicy) Option { return optionFunc(func(c *config) { c.policy = p }) }

// WithCooldown sets how long, after Redis was found unavailable, a limiter with a failure policy
// other than FailError decides by its policy without asking Redis (default one second). With
// Redis down, each call would otherwise wait for go-redis' dial retries or for WithTimeout before
// the policy decides: 100ms per request with a 100ms timeout. When the cooldown has passed, one
// call asks Redis again; while it is out, the others still decide without it. Such decisions have
// Err ErrUnavailable. Any answer to that call but Redis being unavailable ends the cooldown: a
// decision, an error reply, and redis.ErrClosed once the program has closed its client (which then
// every call returns). Every kind of unavailability starts a cooldown except TRYAGAIN, which
// concerns one slot being migrated, not the server. d <= 0 asks Redis for every decision. Under
// FailError there is no cooldown: every decision asks.
func WithCooldown(d time.Duration) Option {
	return optionFunc(func(c *config) { c.cooldown = max(d, 0) })
}

// WithTimeout bounds each decision's script call to d, whatever the caller's context allows: a
// Redis that does not answer in time is a failure, which the failure policy then decides. d <= 0
// means no bound of the limiter's own (the default).
//
// go-redis ignores context deadlines unless the client's options set ContextTimeoutEnabled; New
// refuses WithTimeout for a client that would ignore it. Without WithTimeout, a slow Redis fails
// a decision after the client's ReadTimeout (3 seconds by default).
func WithTimeout(d time.Duration) Option { return optionFunc(func(c *config) { c.timeout = d }) }

// failurePolicy is a Limiter's FailurePolicy at work.
type failurePolicy struct {
	source     Source        // SourceRedis: return the error
	retryAfter time.Duration // of a fail-closed refusal
	cooldown   time.Duration // 0: ask Redis for every decision
	local      *localLimiter // SourceLocal's state
}

// build checks p and returns it at work, with cooldown unless p is FailError.
func (p FailurePolicy) build(cooldown time.Duration) (failurePolicy, error) {
	f := failurePolicy{source: p.source, retryAfter: p.retryAfter, cooldown: cooldown}
	switch p.source {
	case SourceRedis:
		f.cooldown = 0 // errors go to the caller, who may want to retry at once
	case SourceFailClosed:
		if p.retryAfter <= 0 {
			return f, fmt.Errorf("limiter: FailClosed needs a positive retry-after, got %v", p.retryAfter)
		}
	case SourceLocal:
		var err error
		if f.local, err = newLocalLimiter(p.local); err != nil {
			return f, err
		}
	}
	return f, nil
}

// absorbs reports whether the policy decides in place of Redis after err: Redis unavailable,
// while the caller still waits for an answer.
func (p failurePolicy) absorbs(ctx context.Context, err error) bool {
	if p.source == SourceRedis || err == nil || ctx.Err() != nil || ownVerdict(err) {
		return false
	}
	k := failureOf(err)
	return k.Failed() || k == redisfail.Other
}

// ownVerdict reports whether err is the limiter's own verdict, not a failure to reach Redis:
// invalid arguments, corrupt state, a malformed reply, keys of different slots.
func ownVerdict(err error) bool {
	for _, e := range [...]error{ErrBadReply, ErrCorruptState, ErrInvalidLimit, ErrInvalidCost, ErrInvalidKey,
		errInvalidClock, script.ErrCrossSlot} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// reportInterval is the least time between two records of failures the policy stood in for:
// without a cooldown (WithCooldown(0), a slot migrating, an error of no known kind such as a
// circuit breaker's) every decision would log one.
const reportInterval = time.Second

// report logs err, which the failure policy stood in for; cooldown is how long Redis will now be
// left alone, 0 for not at all. At most one record a reportInterval; the next carries how many
// were held back (suppressed).
func (l *Limiter) report(ctx context.Context, err error, cooldown time.Duration) {
	logged, suppressed := l.reports.Admit(time.Now(), reportInterval)
	if !logged {
		return
	}
	logger := l.logger
	if logger == nil {
		logger = slog.Default()
	}
	attrs := [5]slog.Attr{slog.String("algorithm", l.alg.name), slog.String("policy", l.fail.source.String()), slog.Any("error", err)}
	n := 3
	if cooldown > 0 {
		attrs[n] = slog.Duration("cooldown", cooldown)
		n++
	}
	if suppressed > 0 {
		attrs[n] = slog.Int64("suppressed", suppressed)
		n++
	}
	logger.LogAttrs(ctx, slog.LevelWarn, "limiter: Redis unavailable", attrs[:n]...)
}

// failureOf returns the kind of failure of Redis that err is (redisfail.Classify), Other for the
// limiter's own verdicts (invalid arguments, corrupt state, a malformed reply, keys of different
// slots) and Unreachable for ErrUnavailable (Redis not asked during a cooldown). The policy stands
// in when the kind is a failure (Failed), or Other and not the limiter's own verdict (absorbs);
// the cooldown starts when it is the server's (ServerWide).
//
// Failures: no reply at all (a refused dial, a timeout, a reset or closed connection, bytes that
// are not a reply), and the replies of a server that cannot serve now. Not: every other reply (a
// script error, a key of another type, a refused command), a reply of the wrong shape, corrupt
// state, invalid arguments, a client closed by the program, a cancellation. An error of no known
// kind (a hook's own, a TLS failure) is no failure, but the policy stands in for it all the same.
//
// A connection this process closed under the call (net.ErrClosed: the program closing its client
// while the call waited for its reply) is a failure but not the server's: the call got no reply,
// but that says nothing of the server, so it starts no cooldown, and the next call finds the
// client closed.
func failureOf(err error) redisfail.Kind {
	if ownVerdict(err) {
		return redisfail.Other
	}
	if errors.Is(err, ErrUnavailable) {
		return redisfail.Unreachable
	}
	return redisfail.Classify(err)
}

// breaker is the cooldown's state: while skipUntil (Unix nanoseconds) is ahead, decisions skip
// Redis. Zero when Redis answered last.
type breaker struct{ skipUntil atomic.Int64 }

// skip reports whether a decision at now should not ask Redis. Once the cooldown has passed, one
// caller wins the right to ask (and pushes the cooldown on for the others while it does).
func (b *breaker) skip(now int64, cooldown time.Duration) bool {
	until := b.skipUntil.Load()
	if until == 0 {
		return false
	}
	if now < until {
		return true
	}
	return !b.skipUntil.CompareAndSwap(until, now+int64(cooldown))
}

// failed notes that Redis was found unavailable at now: a cooldown starts.
func (b *breaker) failed(now int64, cooldown time.Duration) {
	b.skipUntil.Store(now + int64(cooldown))
}

// answered notes that Redis answered: the cooldown, if any, is over.
func (b *breaker) answered() {
	if b.skipUntil.Load() != 0 {
		b.skipUntil.Store(0)
	}
}

// decide fills r.out with the policy's decision for each limit, standing in for Redis after cause
// (the verdicts: limits in shadow mode are the caller's to apply). Only the local fallback knows
// anything of the limits' state: the others report Remaining and ResetAfter as 0.
func (p failurePolicy) decide(r *request, keys []string, shadowMode bool, now int64, cause error) {
	if p.local != nil {
		p.local.decide(r, keys, shadowMode, now)
		for i := range r.out {
			r.out[i].Err = cause
		}
		return
	}
	for i, lim := range r.limits {
		res := Result{Allowed: p.source == SourceFailOpen, Limit: lim, Source: p.source, Err: cause}
		if !res.Allowed {
			res.RetryAfter = p.retryAfter
		}
		r.out[i] = res
	}
}
