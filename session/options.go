package session

// The Store's configuration: its options, their defaults, and the checks NewStore makes. The
// middleware's options (MiddlewareOption) are beside the middleware, in http.go.

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/redisfail"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of a Store without options.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultLifetime    = 12 * time.Hour
	DefaultMaxSize     = 16 << 10
	DefaultKeyPrefix   = "gh:s:"
)

// MinMaxSize is the smallest size cap NewStore accepts: room for a session's metadata (about 150
// bytes, plus the user ID, label, IP address and user agent) and a few attributes.
const MinMaxSize = 1 << 10

// Option configures a Store (NewStore). The middleware has options of its own, MiddlewareOption.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// config is what the options set.
type config struct {
	prefix     string
	codec      Codec
	idle       time.Duration
	lifetime   time.Duration
	maxSize    int
	grace      time.Duration
	hmacKey    []byte
	maxPerUser int
	timeout    time.Duration
	clock      func() time.Time // nil: the Redis server's clock

	tp      trace.TracerProvider // nil: the global provider, as it is at each call
	mp      metric.MeterProvider // nil: the global provider
	keyHash *telemetry.KeyHasher // nil: no gatehouse.session.key_hash
}

func defaultConfig() config {
	return config{
		prefix: DefaultKeyPrefix, codec: jsonCodec{},
		idle: DefaultIdleTimeout, lifetime: DefaultLifetime, maxSize: DefaultMaxSize,
	}
}

// check returns an error naming the first setting NewStore refuses, for a store over client.
func (c *config) check(client redis.UniversalClient) error {
	switch {
	case strings.ContainsAny(c.prefix, "{}"):
		return fmt.Errorf("session: key prefix %q contains a brace", c.prefix)
	case c.idle < time.Millisecond, c.lifetime < time.Millisecond:
		return fmt.Errorf("session: idle timeout %v and lifetime %v must be at least 1ms", c.idle, c.lifetime)
	case c.maxSize < MinMaxSize:
		return fmt.Errorf("session: size cap %d bytes: at least %d are needed for a session's metadata", c.maxSize, MinMaxSize)
	case c.grace < 0, c.maxPerUser < 0, c.timeout < 0:
		return errors.New("session: negative grace window, sessions per user or timeout")
	case c.timeout > 0 && !redisfail.HonoursDeadlines(client):
		return errors.New("session: WithTimeout needs a client that applies context deadlines: set ContextTimeoutEnabled in its options")
	case c.codec == nil:
		return errors.New("session: nil codec")
	}
	return nil
}

// WithIdleTimeout sets how long a session lives without being read or saved (default 30 minutes).
// It is stored with each session (as RememberMe's is): a store started with another idle timeout
// or lifetime applies it to the sessions it creates or signs in, and existing ones keep theirs.
func WithIdleTimeout(d time.Duration) Option { return optionFunc(func(c *config) { c.idle = d }) }

// WithLifetime sets the absolute lifetime: a session ends this long after its creation (or after
// its sign-in), however active it is (default 12 hours).
func WithLifetime(d time.Duration) Option { return optionFunc(func(c *config) { c.lifetime = d }) }

// WithMaxSize caps the size of a stored session, in bytes (default 16 KiB, at least MinMaxSize).
// A session's size is the sum, over every field of its record, of the length of the field's name
// plus the length of its value: each attribute counts its name (plus 2) and its encoded value, and
// the metadata counts too (times, user ID, IP address, user agent, label). A save, sign-in or
// rotation that would make a session larger than the cap fails with ErrTooLarge and writes
// nothing; one that leaves it smaller than it was succeeds even over the cap (a cap lowered while
// larger sessions exist), so that they can still be trimmed.
func WithMaxSize(bytes int) Option { return optionFunc(func(c *config) { c.maxSize = bytes }) }

// WithCodec sets how attribute values are encoded (default JSON).
func WithCodec(codec Codec) Option { return optionFunc(func(c *config) { c.codec = codec }) }

// WithKeyPrefix sets the prefix of every key the store writes (default DefaultKeyPrefix). It must
// not contain '{' or '}'.
func WithKeyPrefix(p string) Option { return optionFunc(func(c *config) { c.prefix = p }) }

// WithRotationGrace keeps a rotated token readable for d, pointing to the new session, so that
// requests the client already had in flight when it signed in do not lose their session. A
// session loaded through the old token is read-only (Session.ReadOnly): Save, Rotate, Login and
// DestroyOthers refuse it with ErrReadOnly, so the old token can never change the session nor
// obtain a token that outlives the window. Destroy through it ends the session it was rotated to:
// a sign-out, the one write it may make. The default, 0, is the safest: an old token stops working
// at once. Grace window or not, each rotation leaves the old key as a small pointer kept for d or
// the store's timeout plus 5 minutes, whichever is longer (Destroy follows it).
func WithRotationGrace(d time.Duration) Option { return optionFunc(func(c *config) { c.grace = d }) }

// WithHMACKey stores sessions under HMAC-SHA256(key, "gatehouse-session\x00"+token) instead of
// SHA-256 of the same, and derives user slot tags the same way, so that neither Redis contents nor
// cookies can be linked to a token or a user without the key. Use at least 32 random bytes.
func WithHMACKey(key []byte) Option {
	return optionFunc(func(c *config) { c.hmacKey = append([]byte(nil), key...) })
}

// WithMaxSessionsPerUser caps how many sessions one user may have: a sign-in beyond the cap ends
// the user's oldest sessions by sign-in (the earliest authenticated-at; sessions signed in in the
// same millisecond by key order), never the one signing in. The cap holds however many sign-ins
// race: each checks, in the script that makes it live, that it saw every session of the user. A
// rotation of a signed-in session (Rotate, or Login of the same user) applies it too, counting the
// rotated session by its own sign-in: a sign-in may have landed while it was in between its two
// calls, and when it is the oldest, the cap ends it (the rotation fails with ErrNotFound). The
// default, 0, sets no cap.
func WithMaxSessionsPerUser(n int) Option { return optionFunc(func(c *config) { c.maxPerUser = n }) }

// WithTimeout bounds each operation (Load, Save, Login, ...) to d, whatever the caller's context
// allows, so that a stalled Redis costs a bounded wait: past it the operation fails with an error
// matching ErrUnavailable that wraps the timeout (context.DeadlineExceeded, or the connection's
// os.ErrDeadlineExceeded). NewStore refuses it unless the client applies context
// deadlines (ContextTimeoutEnabled in its options). The default, 0, leaves the caller's context
// and the client's own timeouts in charge.
func WithTimeout(d time.Duration) Option { return optionFunc(func(c *config) { c.timeout = d }) }

// WithTracerProvider sets where the store's spans go (default: the global TracerProvider, as it is
// at each call). With no SDK installed, or a noop provider, no span is started at all.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tp = tp })
}

// WithMeterProvider sets where the store's metrics go (default: the global MeterProvider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) { c.mp = mp })
}

// WithHashedKeyAttribute adds gatehouse.session.key_hash to spans, and key_hash to the
// middleware's log records: HMAC-SHA256 of the session's storage key with salt, 16 hex
// characters, so that one session's operations can be followed. Tokens never appear in spans,
// metrics or logs.
func WithHashedKeyAttribute(salt []byte) Option {
	return optionFunc(func(c *config) { c.keyHash = telemetry.NewKeyHasher(salt) })
}

// withClock makes the store use the instants now returns instead of the Redis server's clock, for
// deterministic tests (export_test.go). Keys still expire by the server's clock, at instants
// computed from the injected one.
func withClock(now func() time.Time) Option { return optionFunc(func(c *config) { c.clock = now }) }
