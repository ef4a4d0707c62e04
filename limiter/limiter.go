package limiter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/coalesce"
	"github.com/gatehouse/gatehouse/internal/faillog"
	"github.com/gatehouse/gatehouse/internal/redisfail"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/redis/go-redis/v9"
)

var (
	// ErrInvalidLimit is returned, wrapped, for a limit that cannot be enforced: a rate, period or
	// burst that is zero, negative, too fine or too large. Nothing is sent to Redis.
	ErrInvalidLimit = errors.New("limiter: invalid limit")
	// ErrInvalidCost is returned, wrapped, for a cost n < 1. Nothing is sent to Redis.
	ErrInvalidCost = errors.New("limiter: invalid cost")
	// ErrInvalidKey is returned, wrapped, for an empty key. Nothing is sent to Redis.
	ErrInvalidKey = errors.New("limiter: invalid key")
	// ErrBadReply is returned, wrapped, when Redis answers a script call with a reply of the wrong
	// shape (for example a script of another version under the same name).
	ErrBadReply = errors.New("limiter: malformed reply from Redis")
	// ErrCorruptState is returned, wrapped, when a limit's key holds what the limiter never writes:
	// a key of another type, a value of another shape, or numbers no limit could have written. The
	// decision is not made and nothing is written, whatever the failure policy, since reading such
	// a key as empty would hand the client a fresh quota. Reset clears it.
	ErrCorruptState = errors.New("limiter: corrupt state in Redis")
)

// InfDuration is the RetryAfter of a request that can never be allowed: its cost is larger than
// the limit's capacity (Rate for the windows, Burst for the token bucket).
const InfDuration = time.Duration(math.MaxInt64)

// MaxPeriod is the longest Period a limit may have: ten years of 365 days. Every instant a script
// computes lies within two periods of now, and so stays below 2^53 microseconds (the year 2255),
// where the scripts' numbers, doubles, stop being exact, until the year 2235.
const MaxPeriod = 10 * 365 * 24 * time.Hour

// MaxRate is the largest Rate and Burst a limit may have, 2^52: a count and a cost that each fit
// under it add up exactly in the scripts' doubles. Each algorithm may ask less (MaxSlidingLogRate;
// the sliding window and the token bucket bound products, see their docs).
const MaxRate = 1 << 52

// maxInstant is the latest instant, in microseconds since the Unix epoch, that a decision may be
// made at: two periods later must still be below 2^53.
const maxInstant = 1<<53 - 2*int64(MaxPeriod/time.Microsecond)

// errInvalidClock is returned, wrapped, when the clock of WithClock gives an instant the scripts
// cannot compute with: before the epoch, or later than maxInstant (the year 2235).
var errInvalidClock = errors.New("limiter: WithClock gave an instant outside 1970 to 2235")

// Limit is a rate: Rate requests per Period. Limits are plain values passed with every call, so
// tiers, per-customer overrides and limits changed at run time need nothing special. The zero Limit
// is invalid.
//
// For the windows, Period is the window length: PerMinute(100) admits 100 requests per minute.
// For the token bucket, the bucket holds Burst tokens (Rate when Burst is 0) and gains Rate tokens
// per Period, exactly, in fractions of a token; each request takes its cost in tokens. Example:
// Per(2, 10*time.Minute).WithBurst(5) admits 5 requests at once, then one every 5 minutes; an idle
// bucket is full again 25 minutes after it was emptied.
//
// Bounds: Period from 1ms to MaxPeriod in whole milliseconds, Rate from 1 and Burst from 0 to
// MaxRate, and what each algorithm can compute exactly (SlidingWindow: Rate × Period in ms at most
// 2^50; SlidingLog: Rate at most MaxSlidingLogRate; TokenBucket: every rate up to 4,503,599,627 per
// second with Burst = Rate, and up to 4,503,599,627,000,000 per second when a multiple of a million;
// see TokenBucket). Limits past them are refused with ErrInvalidLimit, never answered inexactly.
//
// Changing a limit (a customer's tier, say) keeps what was used under the old one; docs/algorithms.md
// defines, per algorithm, how it carries over.
//
// Name is optional. It names the limit in the keys (in place of the period) and in RateLimit
// headers and metrics; limits that should count separately on one key need different names or
// periods. Without a Name, headers and metrics name the limit by String: "100/1m0s",
// "2/10m0s burst 5".
//
// Shadow puts the limit in shadow mode (dry run): it is decided, counted and recorded as usual,
// but cannot refuse a request (see WithShadow).
type Limit struct {
	Name   string
	Rate   int64
	Period time.Duration
	Burst  int64
	Shadow bool
}

// Per returns a limit of rate requests per period.
func Per(rate int64, period time.Duration) Limit { return Limit{Rate: rate, Period: period} }

// PerSecond returns a limit of rate requests per second.
func PerSecond(rate int64) Limit { return Per(rate, time.Second) }

// PerMinute returns a limit of rate requests per minute.
func PerMinute(rate int64) Limit { return Per(rate, time.Minute) }

// PerHour returns a limit of rate requests per hour.
func PerHour(rate int64) Limit { return Per(rate, time.Hour) }

// WithBurst returns a copy of l whose token bucket holds burst tokens. The windows ignore Burst.
func (l Limit) WithBurst(burst int64) Limit { l.Burst = burst; return l }

// WithName returns a copy of l named name.
func (l Limit) WithName(name string) Limit { l.Name = name; return l }

// WithShadow returns a copy of l in shadow mode, the way to roll out a new limit: it is decided
// and counted with the others, but a refusal of its own does not refuse the request. The Result
// says what would have happened (Shadow, with the RetryAfter the refusal would have had), and so
// do the span and the decisions metric (decision "denied" with gatehouse.limiter.shadow true). In
// AllowAll it does not take part in the all-or-nothing: the limits that enforce decide, and count
// the request when they all admit it; a shadow limit counts it too when it would itself have
// admitted it, so that its state holds what the limit would hold were it enforced. Shadow mode
// does not change the key: a limit moved from shadow to enforcing keeps its count. The transports
// (limithttp, limitgrpc) tell clients nothing of a limit in shadow mode.
func (l Limit) WithShadow() Limit { l.Shadow = true; return l }

// Capacity returns the most requests the limit admits at once: Burst when set, else Rate.
func (l Limit) Capacity() int64 {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Rate
}

// String returns the limit as "name:rate/period", with " burst n" when Burst is set, such as
// "api:100/1m0s", "100/1m0s" or "2/10m0s burst 5". Shadow mode does not show.
func (l Limit) String() string {
	s := strconv.FormatInt(l.Rate, 10) + "/" + l.Period.String()
	if l.Burst > 0 {
		s += " burst " + strconv.FormatInt(l.Burst, 10)
	}
	if l.Name != "" {
		s = l.Name + ":" + s
	}
	return s
}

// validate checks what every algorithm needs: a rate from 1 to MaxRate, a period of whole
// milliseconds from 1ms to MaxPeriod, and a burst from 0 to MaxRate.
func (l Limit) validate() error {
	switch {
	case l.Rate <= 0:
		return fmt.Errorf("%w %v: rate must be at least 1", ErrInvalidLimit, l)
	case l.Rate > MaxRate:
		return fmt.Errorf("%w %v: rate must be at most MaxRate (2^52)", ErrInvalidLimit, l)
	case l.Period < time.Millisecond:
		return fmt.Errorf("%w %v: period must be at least 1ms", ErrInvalidLimit, l)
	case l.Period%time.Millisecond != 0:
		return fmt.Errorf("%w %v: period must be whole milliseconds", ErrInvalidLimit, l)
	case l.Period > MaxPeriod:
		return fmt.Errorf("%w %v: period must be at most MaxPeriod (%v)", ErrInvalidLimit, l, MaxPeriod)
	case l.Burst < 0:
		return fmt.Errorf("%w %v: burst must not be negative", ErrInvalidLimit, l)
	case l.Burst > MaxRate:
		return fmt.Errorf("%w %v: burst must be at most MaxRate (2^52)", ErrInvalidLimit, l)
	}
	return nil
}

// Result is the outcome of a decision.
type Result struct {
	// Allowed reports whether the request was admitted (and, except for Peek, counted). A limit in
	// shadow mode never makes it false.
	Allowed bool
	// Shadow reports a refusal in shadow mode: a limit in shadow mode (Limit.WithShadow, or every
	// limit under WithShadowMode) refused the request, which was admitted anyway unless a limit
	// that enforces refused it too. Limit and RetryAfter then describe that refusal. In AllowAll,
	// each result of All says it of its own limit.
	Shadow bool
	// Limit is the limit this result describes.
	Limit Limit
	// Remaining is how many more requests of cost 1 the limit admits now: after this request when
	// it was admitted, before it otherwise. For Peek, before any cost.
	Remaining int64
	// RetryAfter is 0 when Allowed and not Shadow; otherwise the earliest time after which the same
	// request can be admitted (by the limit that refused it, for Shadow), rounded up, so a client
	// that waits this long is not refused again for the same reason. InfDuration when the cost
	// exceeds the limit's capacity.
	RetryAfter time.Duration
	// ResetAfter is how long until the limit is fully replenished, with nothing counted against it.
	ResetAfter time.Duration
	// All holds one Result per limit, in the order given, for AllowAll; nil otherwise.
	All []Result
	// Source says what decided: SourceRedis; the failure policy when Redis could not (FailOpen,
	// FailClosed: knowing nothing of the limit's state, so Remaining and ResetAfter are 0;
	// FailLocal: from the process's own count); or the deny cache (WithDenyCache), repeating
	// what Redis said moments ago.
	Source Source
	// Err is the Redis failure the failure policy stood in for; nil otherwise.
	Err error
}

// Limiter makes rate-limit decisions in Redis with one algorithm. Every decision is made atomically
// by one script, timed by the Redis server's clock, so any number of processes sharing the Redis
// enforce one limit exactly; concurrent decisions share script calls (WithoutCoalescing). A Limiter
// is safe for concurrent use; make one per algorithm and share it.
//
// Allow is what most callers want.
type Limiter struct {
	client redis.UniversalClient
	via    script.Via        // where EVALSHA goes: the client, or its auto-pipeliner
	batch  *coalesce.Batcher // nil with WithoutCoalescing or WithAutoPipeline
	alg    *algorithm
	args   argCache // the ARGV values of recent limits
	prefix string
	clock  func() time.Time

	shadow  bool // WithShadowMode
	fail    failurePolicy
	timeout time.Duration
	breaker breaker
	denied  *denyCache       // nil without WithDenyCache
	logger  *slog.Logger     // nil: slog.Default(), as it is at each record
	reports faillog.Throttle // of the failures the policy stands in for

	keyHash *telemetry.KeyHasher
	tracer  *telemetry.Tracer
	inst    instruments
}

// New returns a Limiter that decides with alg (FixedWindow, SlidingWindow, SlidingLog or TokenBucket)
// in the Redis behind client: a single server, Sentinel failover client, Cluster or Ring. It
// returns an error for a nil client, a value that is no Algorithm, and options that cannot work
// together or hold invalid values (a key prefix with a brace, FailClosed without a positive
// retry-after, FailLocal or WithDenyCache with sizes below 1, WithTimeout for a client that ignores
// context deadlines, WithAutoPipeline for a client that cannot auto-pipeline).
func New(client redis.UniversalClient, alg Algorithm, opts ...Option) (*Limiter, error) {
	if client == nil {
		return nil, errors.New("limiter: New with a nil client")
	}
	impl, ok := alg.impl()
	if !ok {
		return nil, fmt.Errorf("limiter: New with %v, which is no algorithm", alg)
	}
	c := config{prefix: DefaultKeyPrefix, cooldown: defaultCooldown}
	for _, o := range opts {
		o.apply(&c)
	}
	if strings.ContainsAny(c.prefix, "{}") {
		return nil, fmt.Errorf("limiter: key prefix %q contains a brace; the hash tag is the identifier's", c.prefix)
	}
	if c.auto && c.coalesce > 0 {
		return nil, errors.New("limiter: WithAutoPipeline and WithCoalescing: choose one (WithAutoPipeline alone turns coalescing off)")
	}
	l := &Limiter{client: client, via: client, alg: impl, prefix: c.prefix, clock: c.clock, shadow: c.shadow,
		timeout: c.timeout, logger: c.logger, keyHash: c.keyHash}
	if c.coalesce > 0 || (c.coalesce == 0 && !c.auto) {
		var opt coalesce.Options
		if alg == SlidingLog {
			opt.MaxCost = MaxSlidingLogRate // a call adds no more members than one decision may
		}
		l.batch = coalesce.New(client, impl.script, impl.batch, opt)
	}
	var err error
	if l.fail, err = c.policy.build(c.cooldown); err != nil {
		return nil, err
	}
	if c.denyCached {
		if l.denied, err = newDenyCache(c.denyCache); err != nil {
			return nil, err
		}
	}
	if c.auto {
		// The asynchronous face: a decision can stop waiting for its batch when its context
		// ends (the blocking face would wait for the batch, whatever the deadline).
		ap, ok := client.(interface {
			AsyncAutoPipeline() (*redis.AutoPipeliner, error)
		})
		if !ok {
			return nil, fmt.Errorf("limiter: WithAutoPipeline: a %T cannot auto-pipeline", client)
		}
		p, err := ap.AsyncAutoPipeline()
		if err != nil {
			return nil, fmt.Errorf("limiter: WithAutoPipeline: %w", err)
		}
		l.via = p
	}
	if l.timeout > 0 && !redisfail.HonoursDeadlines(client) {
		return nil, errors.New("limiter: WithTimeout needs a client that applies context deadlines: set ContextTimeoutEnabled in its options")
	}
	l.tracer = telemetry.NewTracer(c.tp, scope)
	l.inst = newInstruments(c.mp)
	return l, nil
}

// Algorithm returns the limiter's algorithm.
func (l *Limiter) Algorithm() Algorithm { return l.alg.id }

// ShadowMode reports whether the limiter decides every limit in shadow mode (WithShadowMode). A
// transport that tells clients of their limits leaves out those in shadow mode (this, or
// Limit.Shadow): the clients see what they would see without them.
func (l *Limiter) ShadowMode() bool { return l.shadow }

// Allow is shorthand for AllowN(ctx, key, limit, 1).
func (l *Limiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return l.AllowN(ctx, key, limit, 1)
}

// AllowN reports whether n requests for key may happen now under limit, and counts them if so.
// A denied request changes nothing: it is not counted, so a client that keeps retrying while
// denied is admitted as soon as the limit allows. Being denied is a Result, not an error; errors
// are for invalid arguments and for Redis failing.
func (l *Limiter) AllowN(ctx context.Context, key string, limit Limit, n int64) (Result, error) {
	var out [1]Result
	var keys [1]string
	r := request{op: opAllow, key: key, n: n, limits: []Limit{limit}, out: out[:]}
	if err := l.decide(ctx, &r, keys[:0]); err != nil {
		return Result{}, err
	}
	return out[0], nil
}

// AllowAll checks n requests for key against every limit at once, for example PerSecond(10) and
// PerHour(1000), and counts them against all of them only if every limit admits them, in one
// atomic script call. The Result is the binding one: when denied, the denying limit that asks for
// the longest wait; when admitted although limits in shadow mode refused, the shadow refusal with
// the longest wait (Shadow true); otherwise the limit with the fewest requests remaining.
// Result.All has the result of each limit, in order. Limits on one key must differ in Name or
// Period.
func (l *Limiter) AllowAll(ctx context.Context, key string, n int64, limits ...Limit) (Result, error) {
	if len(limits) == 0 {
		return Result{}, fmt.Errorf("%w: AllowAll without limits", ErrInvalidLimit)
	}
	var keys [4]string
	r := request{op: opAllow, key: key, n: n, limits: limits, out: make([]Result, len(limits))}
	if err := l.decide(ctx, &r, keys[:0]); err != nil {
		return Result{}, err
	}
	return combine(r.out), nil
}

// Peek reports what Allow would decide now, without counting anything. Remaining is what is left
// before the request.
func (l *Limiter) Peek(ctx context.Context, key string, limit Limit) (Result, error) {
	var out [1]Result
	var keys [1]string
	r := request{op: opPeek, key: key, n: 1, peek: true, limits: []Limit{limit}, out: out[:]}
	if err := l.decide(ctx, &r, keys[:0]); err != nil {
		return Result{}, err
	}
	return out[0], nil
}

// Reset forgets everything counted for key under the given limits: in Redis, and in this
// Limiter's deny cache (WithDenyCache) and local fallback (FailLocal).
func (l *Limiter) Reset(ctx context.Context, key string, limits ...Limit) (err error) {
	ctx, span := l.tracer.Start(ctx, opReset.spanName())
	r := request{op: opReset, key: key, limits: limits}
	defer func(start time.Time) { l.observe(ctx, span, start, &r, err) }(time.Now())
	keys, err := l.keys(&r, nil)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	err = l.client.Del(ctx, keys...).Err()
	if l.denied != nil {
		// After the DEL (failed or not: it may have run), so that no refusal Redis made before
		// the DEL is cached after it: forget keeps out those of requests already under way,
		// which would otherwise outlive the reset (TestDenyCacheResetRacingARefusal).
		l.denied.forget(key)
	}
	if l.fail.local != nil {
		// FailLocal's counts too, so that a later outage does not refuse what Redis was told to
		// forget (TestLocalFallbackForgetsOnReset).
		l.fail.local.forget(key, keys)
	}
	if err != nil {
		return fmt.Errorf("limiter: reset: %w", err)
	}
	return nil
}

// Wait is shorthand for WaitN(ctx, key, limit, 1).
func (l *Limiter) Wait(ctx context.Context, key string, limit Limit) (Result, error) {
	return l.WaitN(ctx, key, limit, 1)
}

// WaitN blocks until n requests for key are admitted under limit, and returns that admission. It
// returns an error when ctx ends first, at once (without waiting) when ctx's deadline comes before
// the request could be admitted, and at once when n exceeds the limit's capacity. Other callers may
// take the capacity it waited for; it then waits again.
func (l *Limiter) WaitN(ctx context.Context, key string, limit Limit, n int64) (res Result, err error) {
	ctx, span := l.tracer.Start(ctx, "gatehouse.limiter.wait")
	var timer *time.Timer
	defer func(start time.Time) {
		if timer != nil {
			timer.Stop()
		}
		if span.IsRecording() {
			span.SetAttributes(attrWaited.Float64(time.Since(start).Seconds()))
			if err == nil {
				span.SetAttributes(attrDecision.String("allowed"))
			}
			telemetry.End(span, err, errorType(err))
		} else {
			span.End()
		}
	}(time.Now())
	for {
		r, err := l.AllowN(ctx, key, limit, n)
		if err != nil || r.Allowed {
			return r, err
		}
		if r.RetryAfter == InfDuration {
			return r, fmt.Errorf("limiter: wait: cost %d exceeds the capacity of %v", n, limit)
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) < r.RetryAfter {
			return r, fmt.Errorf("limiter: wait of %v would pass the context deadline: %w", r.RetryAfter, context.DeadlineExceeded)
		}
		if timer == nil {
			timer = time.NewTimer(r.RetryAfter)
		} else {
			timer.Reset(r.RetryAfter)
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("limiter: wait: %w", ctx.Err())
		case <-timer.C:
		}
	}
}

// operation is what a request does: allow, peek or reset.
type operation uint8

const (
	opAllow operation = iota
	opPeek
	opReset
)

// String returns the operation as the operation attribute names it.
func (o operation) String() string {
	switch o {
	case opPeek:
		return "peek"
	case opReset:
		return "reset"
	}
	return "allow"
}

// spanName returns the name of the operation's span.
func (o operation) spanName() string {
	switch o {
	case opPeek:
		return "gatehouse.limiter.peek"
	case opReset:
		return "gatehouse.limiter.reset"
	}
	return "gatehouse.limiter.allow"
}

// request is one decision (or Reset) on its way through the limiter: what the caller asked, the
// instant worked out for it, and where each limit's Result goes. Its Redis keys (keys) travel
// beside it, as a slice of their own: the script call lets their strings escape, and escape
// analysis, which does not tell a struct's fields apart, would then move all of r (and r.out and
// r.limits, which AllowN and Peek keep on their stack) to the heap.
type request struct {
	op     operation
	key    string   // the caller's identifier
	n      int64    // the cost
	peek   bool     // decide without counting
	limits []Limit  // as the caller gave them
	now    int64    // the instant in microseconds since the epoch; 0 for the server's clock (prepare)
	out    []Result // one Result per limit, filled by the decision
	asked  bool     // Redis was asked (run was called), whatever it answered
}

// entryKey names a request's entry in the deny cache and the local fallback: a hash of its Redis
// keys, 128 bits, so that two requests' entries never meet by chance. Not the keys themselves:
// they hold the identifier, which is the client's (an API key from a header, say) and can be as
// long as a request is, so that entries kept by their keys would let clients fill the process
// with MaxKeys times whatever they send (TestInProcessStateKeepsNoIdentifier).
type entryKey [2]uint64

// hashKey returns the entryKey of one string: a Redis key, or an identifier.
func hashKey(s string) entryKey {
	var k entryKey
	for i := range k {
		k[i] = maphash.String(entrySeeds[i], s)
	}
	return k
}

// entrySeeds key the hashes of entryKey, fresh in each process.
var entrySeeds = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}

// cacheKey returns the entryKey of a request whose Redis keys are keys.
func cacheKey(keys []string) entryKey {
	if len(keys) == 1 {
		return hashKey(keys[0])
	}
	var k entryKey
	for i := range k {
		var h maphash.Hash
		h.SetSeed(entrySeeds[i])
		for _, key := range keys {
			// Each key's length first, so that no two lists of keys write the same bytes.
			var n [8]byte
			binary.LittleEndian.PutUint64(n[:], uint64(len(key)))
			h.Write(n[:])
			h.WriteString(key)
		}
		k[i] = h.Sum64()
	}
	return k
}

// decide makes one decision, inside a span, and records its metrics. It fills r.out, one Result
// per limit. The Redis keys are made in buf when it has room (see request).
func (l *Limiter) decide(ctx context.Context, r *request, buf []string) error {
	ctx, span := l.tracer.Start(ctx, r.op.spanName())
	start := time.Now()
	keys, err := l.prepare(r, buf)
	if err == nil {
		err = l.consult(ctx, r, keys)
	}
	l.observe(ctx, span, start, r, err)
	return err
}

// consult decides from the deny cache, else in one script call, else (when Redis fails, or failed
// moments ago) by the failure policy. keys are r's Redis keys.
func (l *Limiter) consult(ctx context.Context, r *request, keys []string) error {
	var sent int64
	var epoch uint64
	if l.denied != nil {
		epoch, sent = l.denied.epoch(), l.localNow()
		if l.denied.lookup(r, keys, sent) {
			return nil
		}
	}
	var err error
	asked := true
	if l.fail.cooldown > 0 && l.breaker.skip(time.Now().UnixNano(), l.fail.cooldown) {
		asked = false
		err = ErrUnavailable
	} else {
		err = l.runBounded(ctx, r, keys)
	}
	switch {
	case l.fail.absorbs(ctx, err):
		if asked {
			var cooldown time.Duration
			if failureOf(err).ServerWide() && l.fail.cooldown > 0 {
				cooldown = l.fail.cooldown
				l.breaker.failed(time.Now().UnixNano(), cooldown)
			}
			l.report(ctx, err, cooldown)
		}
		l.fail.decide(r, keys, l.shadow, l.localNow(), err)
		l.applyShadow(r)
		return nil
	case err != nil:
		if asked && l.fail.cooldown > 0 && ctx.Err() == nil {
			// Neither Redis unavailable nor the caller giving up: Redis answered (a script error,
			// corrupt state), or the program closed the client. Either way a cooldown stands for
			// nothing: the next calls ask, and get the error themselves.
			l.breaker.answered()
		}
		return err
	}
	l.applyShadow(r)
	if l.fail.cooldown > 0 {
		l.breaker.answered()
	}
	if l.denied != nil {
		l.denied.remember(r, keys, sent, epoch)
	}
	return nil
}

// prepare validates a decision's arguments, sets its instant, and returns the Redis key of each
// limit, made in buf when it has room.
func (l *Limiter) prepare(r *request, buf []string) ([]string, error) {
	if r.n < 1 {
		return nil, fmt.Errorf("%w: %d (want at least 1)", ErrInvalidCost, r.n)
	}
	keys, err := l.keys(r, buf)
	if err != nil {
		return nil, err
	}
	r.now, err = l.now()
	return keys, err
}

// runBounded is run within the limiter's timeout, if it has one.
func (l *Limiter) runBounded(ctx context.Context, r *request, keys []string) error {
	if l.timeout <= 0 {
		return l.run(ctx, r, keys)
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	return l.run(ctx, r, keys)
}

// run runs the algorithm's script for r (prepared), whose Redis keys are keys, and decodes one
// Result per limit into r.out.
func (l *Limiter) run(ctx context.Context, r *request, keys []string) error {
	r.asked = true
	var reply [1 + 4*2]int64 // room for the reply of one or two limits
	var ints []int64
	var err error
	if l.batch != nil {
		var argv [3 + 3*2]any // room for the ARGV of one or two limits: Do copies it
		ints, err = l.batch.Do(ctx, keys, l.argv(argv[:0], r), reply[:0])
	} else {
		// The whole EVALSHA in one slice: RunInts fills in the command, the digest and the keys.
		n := 3 + len(keys)
		ints, err = l.alg.script.RunInts(ctx, l.via, l.client, keys, l.argv(make([]any, n, n+l.argc(r)), r))
	}
	if err != nil {
		if lim, ok := corrupt(err, r.limits); ok {
			return fmt.Errorf("limiter: %s: %w under %v: %w", l.alg.name, ErrCorruptState, lim, err)
		}
		if errors.Is(err, script.ErrBadReply) {
			return fmt.Errorf("limiter: %s: %w: %w", l.alg.name, ErrBadReply, err)
		}
		return fmt.Errorf("limiter: %s: %w", l.alg.name, err)
	}
	return decode(ints, r.limits, r.out)
}

// argc returns how many ARGV values the script call for r takes.
func (l *Limiter) argc(r *request) int { return 3 + l.alg.nargs*len(r.limits) }

// argv appends the script's ARGV for r to args: the cost, the flags, the instant, then each
// limit's values (the algorithm's args, boxed once per limit: see argCache).
func (l *Limiter) argv(args []any, r *request) []any {
	args = append(args, r.n, l.flags(r.peek, r.limits), r.now)
	for _, lim := range r.limits {
		args = l.args.append(args, l.alg, lim)
	}
	return args
}

// corrupt reports whether err is Redis saying that a limit's key holds corrupt state: the scripts'
// "CORRUPTSTATE <i>" (limit i), or WRONGTYPE, a key of another type (a limit not known). It
// returns the limit, for the message.
func corrupt(err error, limits []Limit) (any, bool) {
	var reply redis.Error
	if !errors.As(err, &reply) {
		return nil, false
	}
	msg := reply.Error()
	if rest, ok := strings.CutPrefix(msg, "CORRUPTSTATE "); ok {
		if i, err := strconv.Atoi(rest); err == nil && i >= 1 && i <= len(limits) {
			return limits[i-1], true
		}
		return "a limit", true
	}
	return "a limit (a key of another type)", strings.HasPrefix(msg, "WRONGTYPE ")
}

// keys validates r's identifier and limits, and returns the Redis key of each limit, made in buf
// when it has room.
func (l *Limiter) keys(r *request, buf []string) ([]string, error) {
	if r.key == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	keys := buf[:0]
	if cap(keys) < len(r.limits) {
		keys = make([]string, 0, len(r.limits))
	}
	keys = keys[:len(r.limits)]
	for i, lim := range r.limits {
		if err := lim.validate(); err != nil {
			return nil, err
		}
		if err := l.alg.check(lim); err != nil {
			return nil, err
		}
		keys[i] = l.redisKey(r.key, lim)
		for j := range i {
			if keys[j] == keys[i] {
				return nil, fmt.Errorf("%w: limits %v and %v share a key; give them different names", ErrInvalidLimit, r.limits[j], lim)
			}
		}
	}
	return keys, nil
}

// redisKey returns "<prefix>{<key>}:<algorithm>:<limit>", with key escaped so that the hash tag
// is exactly the caller's identifier, whatever bytes it holds, and the limit named by its Name or,
// without one, its period in milliseconds.
func (l *Limiter) redisKey(key string, lim Limit) string {
	var b strings.Builder
	b.Grow(len(l.prefix) + len(key) + len(lim.Name) + 32)
	b.WriteString(l.prefix)
	b.WriteByte('{')
	writeEscaped(&b, key)
	b.WriteString("}:")
	b.WriteString(l.alg.tag)
	b.WriteByte(':')
	if lim.Name != "" {
		b.WriteByte('n')
		writeEscaped(&b, lim.Name)
	} else {
		var num [20]byte
		b.Write(strconv.AppendInt(num[:0], lim.Period.Milliseconds(), 10))
	}
	return b.String()
}

// writeEscaped writes s made safe inside a hash tag: '%', '{' and '}' become %25, %7B and %7D.
// The mapping is one to one, so different identifiers never share a key.
func writeEscaped(b *strings.Builder, s string) {
	if !strings.ContainsAny(s, "%{}") {
		b.WriteString(s)
		return
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '%':
			b.WriteString("%25")
		case '{':
			b.WriteString("%7B")
		case '}':
			b.WriteString("%7D")
		default:
			b.WriteByte(s[i])
		}
	}
}

// now returns the instant of a decision in microseconds since the epoch: the injected clock's, or
// 0 for the server's TIME, which the script then reads.
func (l *Limiter) now() (int64, error) {
	if l.clock == nil {
		return 0, nil
	}
	t := l.clock()
	if t.Before(time.UnixMicro(1)) || t.After(time.UnixMicro(maxInstant)) {
		return 0, fmt.Errorf("%w: %v", errInvalidClock, t)
	}
	return t.UnixMicro(), nil
}

// The scripts' ARGV[2] without shadow mode, boxed once.
var flagConsume, flagPeek any = "0", "1"

// flags returns the scripts' ARGV[2]: "1" to peek, "0" to consume, then, when any limit is in
// shadow mode, one character per limit: 's' for shadow mode, '-' to enforce.
func (l *Limiter) flags(peek bool, limits []Limit) any {
	shadow := l.shadow
	for _, lim := range limits {
		shadow = shadow || lim.Shadow
	}
	switch {
	case !shadow && peek:
		return flagPeek
	case !shadow:
		return flagConsume
	}
	b := make([]byte, 1+len(limits))
	b[0] = '0'
	if peek {
		b[0] = '1'
	}
	for i, lim := range limits {
		b[1+i] = '-'
		if l.shadowed(lim) {
			b[1+i] = 's'
		}
	}
	return string(b)
}

// shadowed reports whether lim is decided in shadow mode.
func (l *Limiter) shadowed(lim Limit) bool { return l.shadow || lim.Shadow }

// applyShadow turns the refusals of limits in shadow mode into admissions that say Shadow, keeping
// their RetryAfter.
func (l *Limiter) applyShadow(r *request) {
	for i, lim := range r.limits {
		if !r.out[i].Allowed && l.shadowed(lim) {
			r.out[i].Allowed, r.out[i].Shadow = true, true
		}
	}
}

// decode turns the script's reply {allowed, then allowed_i, remaining_i, retry_us_i, reset_us_i per
// limit} into one Result per limit, in out.
func decode(ints []int64, limits []Limit, out []Result) error {
	if len(ints) != 1+4*len(limits) {
		return fmt.Errorf("%w: got %d integers, want %d", ErrBadReply, len(ints), 1+4*len(limits))
	}
	for i, lim := range limits {
		v := ints[1+4*i : 5+4*i]
		out[i] = Result{
			Allowed:    v[0] == 1,
			Limit:      lim,
			Remaining:  v[1],
			RetryAfter: micros(v[2]),
			ResetAfter: micros(v[3]),
		}
	}
	return nil
}

// micros converts the scripts' microseconds to a Duration; -1 means never.
func micros(us int64) time.Duration {
	switch {
	case us < 0:
		return InfDuration
	case us > int64(InfDuration/time.Microsecond):
		return InfDuration
	}
	return time.Duration(us) * time.Microsecond
}

// combine returns the binding result of AllowAll with every result in All.
func combine(rs []Result) Result {
	out := binding(rs)
	out.All = rs
	return out
}

// binding returns the result that decides for several limits, with Allowed true only if every limit
// allowed and Shadow true if any limit refused in shadow mode: when denied, the denying limit with
// the longest RetryAfter; when allowed despite refusals in shadow mode, the one of them with the
// longest RetryAfter; otherwise the limit with the fewest Remaining. It does not keep rs.
func binding(rs []Result) Result {
	allowed, shadow := true, false
	for _, r := range rs {
		allowed = allowed && r.Allowed
		shadow = shadow || r.Shadow
	}
	binds := func(r, than Result) bool {
		switch {
		case !allowed:
			if r.Allowed != than.Allowed {
				return !r.Allowed
			}
			return !r.Allowed && r.RetryAfter > than.RetryAfter
		case shadow:
			if r.Shadow != than.Shadow {
				return r.Shadow
			}
			return r.Shadow && r.RetryAfter > than.RetryAfter
		}
		return r.Remaining < than.Remaining
	}
	out := rs[0]
	for _, r := range rs[1:] {
		if binds(r, out) {
			out = r
		}
	}
	out.Allowed, out.Shadow = allowed, shadow
	return out
}
