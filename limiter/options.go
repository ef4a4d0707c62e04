package limiter

import (
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/internal/telemetry"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Option configures a Limiter. The options are functions of this package: WithKeyPrefix,
// WithFailurePolicy, WithTimeout, WithDenyCache and the others.
type Option interface{ apply(*config) }

// config is what the options set; New checks it and builds the Limiter from it.
type config struct {
	prefix     string
	clock      func() time.Time
	shadow     bool
	auto       bool
	coalesce   int8 // 0 the default (on unless WithAutoPipeline), 1 WithCoalescing, -1 WithoutCoalescing
	policy     FailurePolicy
	cooldown   time.Duration
	timeout    time.Duration
	denyCache  int  // WithDenyCache's size
	denyCached bool // WithDenyCache was given
	logger     *slog.Logger

	tp      trace.TracerProvider
	mp      metric.MeterProvider
	keyHash *telemetry.KeyHasher
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// DefaultKeyPrefix is the key prefix of a Limiter without WithKeyPrefix.
const DefaultKeyPrefix = "gh:rl:"

// WithKeyPrefix sets the prefix of every key the limiter writes (default DefaultKeyPrefix). It must
// not contain '{' or '}': the hash tag belongs to the identifier, so that keys spread over a cluster.
func WithKeyPrefix(prefix string) Option { return optionFunc(func(c *config) { c.prefix = prefix }) }

// WithClock makes the limiter decide at the instants now returns instead of the Redis server's
// clock. It exists for deterministic tests; in production every host must use the server's clock.
// Hosts with skewed clocks share the state but not the time: a fixed window's count holds until
// the end written by whichever host counted last, so a host whose clock is behind is held until
// the window of a host ahead ends, and, when it admits a request, moves the window's end back to
// its own, after which the host ahead finds the window over and starts a fresh count (more than
// the limit in one window). Keys also expire by the server's clock, at instants computed from the
// injected one: injected instants that fall behind the server's clock see state vanish early. An
// instant before 1970 or after 2235 is an error.
func WithClock(now func() time.Time) Option { return optionFunc(func(c *config) { c.clock = now }) }

// WithShadowMode puts every limit the limiter decides in shadow mode, as Limit.WithShadow does for
// one: decisions are made, counted and recorded, and no request is refused. Each limit counts a
// request when it would have admitted it, so its state holds what it would hold were it enforced,
// alone. The Results say what would have happened (Shadow, RetryAfter); clients are told nothing
// of such limits (see ShadowMode).
func WithShadowMode() Option { return optionFunc(func(c *config) { c.shadow = true }) }

// WithAutoPipeline sends decisions through the client's auto-pipeliner (go-redis'
// AsyncAutoPipeline, marked experimental by go-redis): decisions made concurrently by many
// goroutines are gathered into pipelines, so that many share each round trip. A lone decision
// costs about what it did. Each decision still waits no longer than its context (and WithTimeout)
// allows, even when the batch ahead of it is stuck on a stalled server. The auto-pipeliner is the
// client's, shared with its other users, and ends when the client is closed. The client's
// AutoPipelineOptions, if set, configure it.
//
// It replaces coalescing, the default (WithoutCoalescing), and cannot be combined with
// WithCoalescing.
func WithAutoPipeline() Option { return optionFunc(func(c *config) { c.auto = true }) }

// WithLogger sets where the limiter logs (default: slog.Default(), as it is at each record; nil
// means the default). It logs one thing: at Warn, "limiter: Redis unavailable", each Redis failure
// its failure policy stands in for (see WithFailurePolicy), with the algorithm, the policy
// (fail_open, fail_closed or local), the error and, when a cooldown starts, its length
// (cooldown): at most about one record per cooldown while Redis stays down, since decisions made
// during a cooldown do not ask Redis, and at most one a second in any case (failures without a
// cooldown: WithCooldown(0), a slot migrating, an error of no known kind); a record after others
// were held back says how many (suppressed). Records name no key and no identifier (the error names the
// Redis address). Under FailError nothing is logged: the error goes to the caller. A handler that
// drops records turns logging off: slog.New(slog.DiscardHandler).
func WithLogger(logger *slog.Logger) Option { return optionFunc(func(c *config) { c.logger = logger }) }
