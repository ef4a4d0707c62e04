// Package limithttp limits net/http requests with a gatehouse limiter: Middleware decides each
// request before the handler runs, and tells clients of their limits in the RateLimit-Policy and
// RateLimit fields of the IETF httpapi draft.
//
// A refusal that passes later is 429 with Retry-After; a request that can never pass (its cost is
// above the capacity) is 413 without it, which clients take as final; a refusal that stands in for
// Redis is 503. Options add the legacy X-RateLimit fields (WithLegacyFields), expose the fields to
// scripts on other origins (WithExposedFields), and answer with RFC 9457 problem details
// (WithDeniedHandler(ProblemDetails)). ByClientIP finds the client behind trusted proxies
// (X-Forwarded-For or Forwarded), grouping IPv6 clients by /64.
//
// Limits in shadow mode (limiter.Limit.WithShadow, limiter.WithShadowMode) are decided and
// recorded, but clients are told nothing of them: they are left out of every field, and a
// request only they refuse is passed on as if they did not exist.
package limithttp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/faillog"
	"github.com/gatehouse/gatehouse/internal/ratelimitfield"
	"github.com/gatehouse/gatehouse/limiter"
)

// KeyFunc returns the identifier a request is limited under, such as a user ID, an API key or a
// client address. An empty identifier exempts the request from the middleware's limits.
type KeyFunc func(r *http.Request) string

// ByRemoteIP limits each client address: RemoteAddr without its port, IPv4 as "192.0.2.1" (also
// when it came IPv4-mapped), IPv6 as the /64 that holds it ("2001:db8:1:2::/64"), since a single
// host is commonly given a whole /64 and could otherwise take a fresh quota with every address.
// A RemoteAddr that is not an IP address (a Unix socket) is its own identifier, and an empty one
// (which an adapter may give; net/http never does) is "unknown", so that such requests share one
// quota rather than escape the limits. Behind a proxy RemoteAddr is the proxy's: use ByClientIP,
// which reads the header your proxies set, and only from them; ByRemoteIP is ByClientIP with no
// trusted proxy.
func ByRemoteIP(r *http.Request) string { return remoteOnly.Key(r.RemoteAddr, nil) }

// remoteOnly is the resolver of ByRemoteIP: no proxy trusted, IPv6 by /64.
var remoteOnly, _ = clientip.New(nil, "", 0)

// Option configures Middleware.
type Option interface{ apply(*config) }

type config struct {
	cost      func(*http.Request) int64
	limitsFor func(*http.Request) []limiter.Limit
	denied    func(http.ResponseWriter, *http.Request, limiter.Result)
	failed    func(http.ResponseWriter, *http.Request, error)
	logger    *slog.Logger
	legacy    bool
	expose    bool
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLegacyFields adds the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset fields
// that GitHub-style APIs send and many clients still read, beside the IETF ones. They describe
// one limit, the binding one (see limiter.Limiter.AllowAll): the limit that refused, or the one
// with the fewest requests remaining. X-RateLimit-Limit is its quota (q of RateLimit-Policy),
// X-RateLimit-Remaining what remains (r of RateLimit), and X-RateLimit-Reset the instant the quota
// is whole again (t of RateLimit), in Unix epoch seconds rounded up, as GitHub and ulule/limiter
// send it: clients of those APIs compute their wait as Reset minus their own clock. Where
// RateLimit is left out (a decision the failure policy made without Redis, a request that can
// never pass), only X-RateLimit-Limit is set.
func WithLegacyFields() Option {
	return optionFunc(func(c *config) { c.legacy = true })
}

// WithExposedFields lists the rate-limit fields in Access-Control-Expose-Headers on responses to
// requests with an Origin, so that JavaScript on another origin can read them: RateLimit,
// RateLimit-Policy and Retry-After (and the legacy fields with WithLegacyFields), which browsers
// otherwise hide from cross-origin scripts even when the app's CORS layer allows the origin.
// The names are added after those already set on the response, which are kept. The CORS layer
// must wrap the middleware (cors(Middleware(...)(app))), not the reverse: the middleware answers
// refusals itself, so a CORS layer inside it would never see them, and browsers would block them.
func WithExposedFields() Option {
	return optionFunc(func(c *config) { c.expose = true })
}

// WithCost sets what a request costs (default 1). A cost below 1 is an error, handled by the
// error handler.
func WithCost(cost func(*http.Request) int64) Option {
	return optionFunc(func(c *config) { c.cost = cost })
}

// WithLimitsFor chooses the limits per request, for tiers or per-route limits; it replaces the
// limits given to Middleware. Returning none exempts the request.
func WithLimitsFor(limits func(*http.Request) []limiter.Limit) Option {
	return optionFunc(func(c *config) { c.limitsFor = limits })
}

// WithDeniedHandler sets what answers a refused request. The RateLimit fields and Retry-After are
// already set on w. The default answers with a status that tells clients whether and when to
// retry:
//
//   - 429 Too Many Requests, with Retry-After, for a refusal that passes later;
//   - 413 Content Too Large, without Retry-After, for a request that can never be admitted
//     (res.RetryAfter == limiter.InfDuration: its cost is above a limit's capacity). RFC 9110
//     makes Retry-After the sign of a temporary 413, so clients take its absence as final:
//     go-retryablehttp's DefaultRetryPolicy retries every 429 but no 413;
//   - 503 Service Unavailable when the refusal stands in for Redis: limiter.FailClosed's (with
//     its Retry-After), or limiter.FailLocal's for a cost above its share of the capacity
//     (Instances > 1; no Retry-After, since Redis may admit it when it is back).
func WithDeniedHandler(h func(w http.ResponseWriter, r *http.Request, res limiter.Result)) Option {
	return optionFunc(func(c *config) { c.denied = h })
}

// WithErrorHandler sets what answers a request the limiter could not decide: Redis failed under
// limiter.FailError (the default failure policy), or the limits or cost were invalid. The error is
// logged first (see WithLogger). The default answers 503 Service Unavailable and says nothing of
// the cause.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) Option {
	return optionFunc(func(c *config) { c.failed = h })
}

// WithLogger sets where the middleware logs (default: slog.Default(), as it is at each record; nil
// means the default). It logs each request the limiter could not decide, before the error handler
// answers it: at Error, "limithttp: rate limit not decided", with the method, the route pattern
// when a mux set one, and the error (at Debug when the client went away first). Failures of Redis, which under limiter.FailError fail
// every request while Redis is down, are logged at most once a second, the next record saying how
// many were not (suppressed). No record holds the identifier, the URL (paths and queries can carry
// identifiers) or a header. A handler that drops records turns logging off:
// slog.New(slog.DiscardHandler). The failures the limiter's own failure policy stands in for are
// logged by the limiter (limiter.WithLogger).
func WithLogger(logger *slog.Logger) Option {
	return optionFunc(func(c *config) { c.logger = logger })
}

// Middleware limits requests with lim: each request is decided under key(r) against limits (all
// of them at once, in one script call, when there are several), and passed on only if admitted.
//
// Every decided response carries the RateLimit-Policy and RateLimit fields of the IETF httpapi
// draft (draft-ietf-httpapi-ratelimit-headers): one item per limit, named by the limit's Name
// (or Limit.String() without one), with q and w its quota and window in seconds, r the requests
// remaining and t the seconds until the quota is whole again (for a sliding window, up to two
// windows). A refusal that passes later adds Retry-After, in whole seconds rounded up, and is
// answered 429. A request that can never be admitted (a cost above a limit's capacity) is answered
// 413 with neither Retry-After nor RateLimit, whose t would say the quota is whole now: only
// RateLimit-Policy, whose q is below the cost (see WithDeniedHandler). A decision the failure
// policy made without Redis carries no RateLimit field, since nothing is known of the quota; one
// from the deny cache carries what Redis last said.
//
// Limits in shadow mode are in no field: a request refused only by them is passed on with the
// fields of the other limits, and under limiter.WithShadowMode responses carry no rate-limit
// field at all. Their refusals show on the limiter's spans and metrics.
//
// For a token bucket, q is the bucket's capacity (Burst, or Rate) and w the time it takes to refill
// it from empty, so that r never exceeds q.
func Middleware(lim *limiter.Limiter, key KeyFunc, limits []limiter.Limit, opts ...Option) func(http.Handler) http.Handler {
	c := config{denied: deny, failed: unavailable}
	for _, o := range opts {
		o.apply(&c)
	}
	fields := ratelimitfield.For(lim)
	limits = append([]limiter.Limit(nil), limits...)
	policy := fields.Policy(limits) // computed once for the fixed limits
	var exposed string
	if c.expose {
		exposed = exposedFields
		if c.legacy {
			exposed += ", " + exposedLegacy
		}
	}
	log := &faillog.Log{Logger: c.logger, Msg: "limithttp: rate limit not decided", Interval: time.Second}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ls := limits
			if c.limitsFor != nil {
				ls = c.limitsFor(r)
			}
			id := key(r)
			if id == "" || len(ls) == 0 {
				next.ServeHTTP(w, r)
				return
			}
			pf := policy
			if c.limitsFor != nil {
				pf = fields.Policy(ls)
			}
			n := int64(1)
			if c.cost != nil {
				n = c.cost(r)
			}
			var res limiter.Result
			var err error
			if len(ls) == 1 {
				res, err = lim.AllowN(r.Context(), id, ls[0], n)
			} else {
				res, err = lim.AllowAll(r.Context(), id, n, ls...)
			}
			if err != nil {
				log.Failure(r.Context(), err, clientGone(r, err), requestAttrs(r)...)
				c.failed(w, r, err)
				return
			}
			h := w.Header()
			var legacy [3]string
			nl := 0
			if c.legacy {
				legacy, nl = fields.Legacy(res, time.Now())
			}
			setFields(h, pf, fields.State(res), legacy[:nl])
			if exposed != "" && r.Header[hdrOrigin] != nil {
				// A new array: the CORS layer's value may be shared between responses.
				v := h[hdrExpose]
				h[hdrExpose] = append(v[:len(v):len(v)], exposed)
			}
			if !res.Allowed {
				if res.RetryAfter != limiter.InfDuration {
					h[hdrRetryAfter] = []string{strconv.FormatInt(ratelimitfield.CeilSeconds(res.RetryAfter), 10)}
				}
				c.denied(w, r, res)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// The fields' names in canonical form (http.CanonicalHeaderKey), so that setting them costs no
// conversion.
const (
	hdrPolicy     = "Ratelimit-Policy"
	hdrState      = "Ratelimit"
	hdrRetryAfter = "Retry-After"

	hdrLegacyLimit     = "X-Ratelimit-Limit"
	hdrLegacyRemaining = "X-Ratelimit-Remaining"
	hdrLegacyReset     = "X-Ratelimit-Reset"

	hdrOrigin = "Origin"
	hdrExpose = "Access-Control-Expose-Headers"
)

// The names WithExposedFields lists, as the fields' definitions spell them (field names are
// case-insensitive).
const (
	exposedFields = "RateLimit, RateLimit-Policy, Retry-After"
	exposedLegacy = "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)

// setFields sets the RateLimit-Policy and RateLimit fields to policy and state (each unless
// empty), and the X-RateLimit fields to legacy: the values Fields.Legacy returned (the quota alone,
// or the quota, what remains and the reset), as WithLegacyFields describes. The values share one
// array, one allocation for them all; each field has its own part, capacity-limited, so that
// appending to one field's values never writes into another's.
func setFields(h http.Header, policy, state string, legacy []string) {
	vals := [5]string{policy, state}
	copy(vals[2:], legacy)
	n := 0
	for _, v := range vals[:2+len(legacy)] {
		if v != "" {
			vals[n] = v
			n++
		}
	}
	if n == 0 {
		return
	}
	v := make([]string, n)
	copy(v, vals[:n])
	next := func() []string {
		part := v[0:1:1]
		v = v[1:]
		return part
	}
	if policy != "" {
		h[hdrPolicy] = next()
	}
	if state != "" {
		h[hdrState] = next()
	}
	if len(legacy) > 0 {
		h[hdrLegacyLimit] = next()
	}
	if len(legacy) == 3 {
		h[hdrLegacyRemaining], h[hdrLegacyReset] = next(), next()
	}
}

func deny(w http.ResponseWriter, _ *http.Request, res limiter.Result) {
	code := refusalStatus(res)
	http.Error(w, http.StatusText(code), code)
}

// refusalStatus returns the status of a refusal, as WithDeniedHandler describes.
func refusalStatus(res limiter.Result) int {
	switch {
	case res.Source == limiter.SourceFailClosed, res.RetryAfter == limiter.InfDuration && res.Source == limiter.SourceLocal:
		return http.StatusServiceUnavailable
	case res.RetryAfter == limiter.InfDuration:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusTooManyRequests
}

func unavailable(w http.ResponseWriter, _ *http.Request, _ error) {
	http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
}

// requestAttrs are what a log record says of r: its method, and its route pattern when a mux set
// one.
func requestAttrs(r *http.Request) []slog.Attr {
	attrs := []slog.Attr{slog.String("method", r.Method)}
	if r.Pattern != "" {
		attrs = append(attrs, slog.String("pattern", r.Pattern))
	}
	return attrs
}

// clientGone reports whether err is the request's own context ending: the client went away.
func clientGone(r *http.Request, err error) bool {
	return r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
