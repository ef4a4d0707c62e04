package limiter

import (
	"encoding/json"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"
)

// KeyFunc returns the identifier a request is limited under, such as a user ID, an API key or a
// client address. An empty identifier exempts the request from the middleware's limits.
type KeyFunc func(r *http.Request) string

// ByRemoteIP limits each client address (RemoteAddr without its port). Behind a proxy RemoteAddr
// is the proxy's: use ByClientIP, which reads the header your proxies set, and only from them.
func ByRemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// HTTPOption configures Middleware.
type HTTPOption func(*httpConfig)

type httpConfig struct {
	cost      func(*http.Request) int64
	limitsFor func(*http.Request) []Limit
	denied    func(http.ResponseWriter, *http.Request, Result)
	failed    func(http.ResponseWriter, *http.Request, error)
	legacy    bool
	expose    bool
}

// WithLegacyFields adds the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset fields
// that GitHub-style APIs send and many clients still read, beside the IETF ones. They describe
// one limit, the binding one (see AllowAll): the limit that refused, or the one with the fewest
// requests remaining. X-RateLimit-Limit is its quota (q of RateLimit-Policy), X-RateLimit-Remaining
// what remains (r of RateLimit), and X-RateLimit-Reset the instant the quota is whole again (t of
// RateLimit), in Unix epoch seconds rounded up, as GitHub and ulule/limiter send it: clients of
// those APIs compute their wait as Reset minus their own clock. Where RateLimit is left
// out (a decision the failure policy made without Redis, a request that can never pass), only
// X-RateLimit-Limit is set.
func WithLegacyFields() HTTPOption {
	return func(c *httpConfig) { c.legacy = true }
}

// WithExposedFields lists the rate-limit fields in Access-Control-Expose-Headers on responses to
// requests with an Origin, so that JavaScript on another origin can read them: RateLimit,
// RateLimit-Policy and Retry-After (and the legacy fields with WithLegacyFields), which browsers
// otherwise hide from cross-origin scripts even when the app's CORS layer allows the origin.
// The names are added after those already set on the response, which are kept. The CORS layer
// must wrap the middleware (cors(Middleware(...)(app))), not the reverse: the middleware answers
// refusals itself, so a CORS layer inside it would never see them, and browsers would block them.
func WithExposedFields() HTTPOption {
	return func(c *httpConfig) { c.expose = true }
}

// WithCost sets what a request costs (default 1). A cost below 1 is an error, handled by the
// error handler.
func WithCost(cost func(*http.Request) int64) HTTPOption {
	return func(c *httpConfig) { c.cost = cost }
}

// WithLimitsFor chooses the limits per request, for tiers or per-route limits; it replaces the
// limits given to Middleware. Returning none exempts the request.
func WithLimitsFor(limits func(*http.Request) []Limit) HTTPOption {
	return func(c *httpConfig) { c.limitsFor = limits }
}

// WithDeniedHandler sets what answers a refused request. The RateLimit fields and Retry-After are
// already set on w. The default answers with a status that tells clients whether and when to
// retry:
//
//   - 429 Too Many Requests, with Retry-After, for a refusal that passes later;
//   - 413 Content Too Large, without Retry-After, for a request that can never be admitted
//     (res.RetryAfter == InfDuration: its cost is above a limit's capacity). RFC 9110 makes
//     Retry-After the sign of a temporary 413, so clients take its absence as final:
//     go-retryablehttp's DefaultRetryPolicy retries every 429 but no 413;
//   - 503 Service Unavailable when the refusal stands in for Redis: the fail-closed policy's
//     (with its Retry-After), or the local fallback's for a cost above its share of the capacity
//     (WithFailLocal with Instances > 1; no Retry-After, since Redis may admit it when it is back).
func WithDeniedHandler(h func(w http.ResponseWriter, r *http.Request, res Result)) HTTPOption {
	return func(c *httpConfig) { c.denied = h }
}

// WithHTTPErrorHandler sets what answers a request the limiter could not decide: Redis failed
// under the default failure policy, or the limits or cost were invalid. The default answers
// 503 Service Unavailable and says nothing of the cause.
func WithHTTPErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) HTTPOption {
	return func(c *httpConfig) { c.failed = h }
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
// For a token bucket, q is the bucket's capacity (Burst, or Rate) and w the time it takes to refill
// it from empty, so that r never exceeds q.
func Middleware(lim *Limiter, key KeyFunc, limits []Limit, opts ...HTTPOption) func(http.Handler) http.Handler {
	c := httpConfig{denied: deny, failed: unavailable}
	for _, o := range opts {
		o(&c)
	}
	limits = append([]Limit(nil), limits...)
	policy := PolicyField(lim.alg, limits) // computed once for the fixed limits
	var exposed string
	if c.expose {
		exposed = exposedFields
		if c.legacy {
			exposed += ", " + exposedLegacy
		}
	}
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
				pf = PolicyField(lim.alg, ls)
			}
			n := int64(1)
			if c.cost != nil {
				n = c.cost(r)
			}
			var res Result
			var err error
			if len(ls) == 1 {
				res, err = lim.AllowN(r.Context(), id, ls[0], n)
			} else {
				res, err = lim.AllowAll(r.Context(), id, n, ls...)
			}
			if err != nil {
				c.failed(w, r, err)
				return
			}
			h := w.Header()
			h[hdrPolicy] = []string{pf}
			if state := StateField(res); state != "" {
				h[hdrState] = []string{state}
			}
			if c.legacy {
				setLegacyFields(h, lim.alg, res, time.Now())
			}
			if exposed != "" && r.Header[hdrOrigin] != nil {
				// A new array: the CORS layer's value may be shared between responses.
				v := h[hdrExpose]
				h[hdrExpose] = append(v[:len(v):len(v)], exposed)
			}
			// Shadow mode (issue #10 item 9) belongs here: a refusal it only records goes on to next,
			// with the fields above.
			if !res.Allowed {
				if res.RetryAfter != InfDuration {
					h[hdrRetryAfter] = []string{strconv.FormatInt(ceilSeconds(res.RetryAfter), 10)}
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

// setLegacyFields sets the X-RateLimit fields for res, decided at now, as WithLegacyFields
// describes.
func setLegacyFields(h http.Header, alg *Algorithm, res Result, now time.Time) {
	q, _ := quotaWindow(alg, res.Limit)
	if !knowsState(res) {
		h[hdrLegacyLimit] = []string{strconv.FormatInt(q, 10)}
		return
	}
	// The three values in one string and the three fields' values in one array: two allocations.
	var buf [3 * 20]byte
	b := strconv.AppendInt(buf[:0], q, 10)
	n1 := len(b)
	b = strconv.AppendInt(b, max(res.Remaining, 0), 10)
	n2 := len(b)
	// The end of ResetAfter, in epoch seconds rounded up.
	d := min(res.ResetAfter, InfDuration-time.Second) + time.Duration(now.Nanosecond())
	b = strconv.AppendInt(b, now.Unix()+ceilSeconds(d), 10)
	all := string(b)
	v := []string{all[:n1], all[n1:n2], all[n2:]}
	h[hdrLegacyLimit], h[hdrLegacyRemaining], h[hdrLegacyReset] = v[0:1:1], v[1:2:2], v[2:3:3]
}

func deny(w http.ResponseWriter, _ *http.Request, res Result) {
	code := refusalStatus(res)
	http.Error(w, http.StatusText(code), code)
}

// ProblemTypeQuotaExceeded is the problem type of ProblemDetails' 429 and 413 bodies, the one
// draft-ietf-httpapi-ratelimit-headers defines (and asks IANA to register) for requests that
// exceed a quota policy.
const ProblemTypeQuotaExceeded = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// ProblemDetails answers a refused request with the status the default handler gives (see
// WithDeniedHandler) and an RFC 9457 application/problem+json body in place of plain text. Use it
// as WithDeniedHandler(limiter.ProblemDetails).
//
// For 429 and 413 the type is ProblemTypeQuotaExceeded, with the draft's "violated-policies"
// member: the names of the limits that refused, as RateLimit-Policy names them (for a 413, those
// whose capacity the cost exceeds). A 429 adds "retry_after", the seconds Retry-After says, for
// cross-origin scripts that cannot read the field. A 503 (Redis unavailable) is of type
// "about:blank", with "retry_after" when the failure policy gives one. The body names no
// identifier:
//
//	{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":"Rate limit exceeded",
//	 "status":429,"detail":"Refused by limit \"burst\"; retry in 2 seconds.",
//	 "violated-policies":["burst"],"retry_after":2}
func ProblemDetails(w http.ResponseWriter, _ *http.Request, res Result) {
	code := refusalStatus(res)
	p := problem{Status: code}
	switch code {
	case http.StatusServiceUnavailable:
		p.Type, p.Title = "about:blank", http.StatusText(code)
		p.Detail = "The rate limiter cannot decide now."
	case http.StatusRequestEntityTooLarge:
		p.Type, p.Title = ProblemTypeQuotaExceeded, "Rate limit exceeded"
		p.Violated = refusedBy(res, true)
		p.Detail = "The request costs more than " + quoteNames(p.Violated) + " can ever admit; it will never pass."
	default:
		p.Type, p.Title = ProblemTypeQuotaExceeded, "Rate limit exceeded"
		p.Violated = refusedBy(res, false)
		p.Detail = "Refused by " + quoteNames(p.Violated) + "; retry in " + strconv.FormatInt(ceilSeconds(res.RetryAfter), 10) + " seconds."
	}
	if res.RetryAfter != InfDuration {
		p.RetryAfter = ceilSeconds(res.RetryAfter)
	}
	body, _ := json.Marshal(p) // strings, numbers and lists of strings: it cannot fail
	h := w.Header()
	h["Content-Type"] = []string{"application/problem+json"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

// problem is an RFC 9457 problem details object, as ProblemDetails writes it.
type problem struct {
	Type       string   `json:"type"`
	Title      string   `json:"title"`
	Status     int      `json:"status"`
	Detail     string   `json:"detail"`
	Violated   []string `json:"violated-policies,omitempty"`
	RetryAfter int64    `json:"retry_after,omitempty"`
}

// refusedBy returns the names of the limits that refused res; with never, only those that can
// never admit it.
func refusedBy(res Result, never bool) []string {
	if res.All == nil {
		return []string{policyName(res.Limit)}
	}
	var names []string
	for _, r := range res.All {
		if !r.Allowed && (!never || r.RetryAfter == InfDuration) {
			names = append(names, policyName(r.Limit))
		}
	}
	return names
}

// quoteNames returns `limit "a"` or `limits "a" and "b"`.
func quoteNames(names []string) string {
	s := "limit "
	if len(names) > 1 {
		s = "limits "
	}
	for i, n := range names {
		switch {
		case i == 0:
		case i == len(names)-1:
			s += " and "
		default:
			s += ", "
		}
		s += strconv.Quote(n)
	}
	return s
}

// refusalStatus returns the status of a refusal, as WithDeniedHandler describes.
func refusalStatus(res Result) int {
	switch {
	case res.Source == SourceFailClosed, res.RetryAfter == InfDuration && res.Source == SourceLocal:
		return http.StatusServiceUnavailable
	case res.RetryAfter == InfDuration:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusTooManyRequests
}

func unavailable(w http.ResponseWriter, _ *http.Request, _ error) {
	http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
}

// PolicyField returns the value of the RateLimit-Policy field for limits decided with alg:
// `"name";q=<quota>;w=<window seconds>` per limit, as Middleware sets it. It is exported for other
// transports, such as the gRPC interceptors of package limitgrpc.
func PolicyField(alg *Algorithm, limits []Limit) string {
	b := make([]byte, 0, 40*len(limits))
	for i, l := range limits {
		if i > 0 {
			b = append(b, ", "...)
		}
		q, w := quotaWindow(alg, l)
		b = appendSFString(b, policyName(l))
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, q, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, w, 10)
	}
	return string(b)
}

// StateField returns the value of the RateLimit field for res: `"name";r=<remaining>;t=<seconds>`
// per limit decided, as Middleware sets it; "" for a decision the failure policy made knowing
// nothing of the quota (WithFailOpen, WithFailClosed), and for a refusal that can never be
// admitted (RetryAfter == InfDuration), whose t would say that the quota is whole now, or soon.
func StateField(res Result) string {
	if !knowsState(res) {
		return ""
	}
	all := res.All
	if all == nil {
		all = []Result{res}
	}
	b := make([]byte, 0, 40*len(all))
	for i, r := range all {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendSFString(b, policyName(r.Limit))
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, max(r.Remaining, 0), 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(r.ResetAfter), 10)
	}
	return string(b)
}

// knowsState reports whether res says something true and useful of the quota's state: not when
// the failure policy decided without Redis, nor for a refusal that can never pass, whose reset
// time would read as "retry then".
func knowsState(res Result) bool {
	return !res.Source.failed() && (res.Allowed || res.RetryAfter != InfDuration)
}

// quotaWindow returns a limit's quota and window, in requests and whole seconds (at least 1).
func quotaWindow(alg *Algorithm, l Limit) (q, w int64) {
	if alg == TokenBucket {
		// Capacity tokens, refilled Rate per Period.
		refill := math.Ceil(float64(l.Capacity()) * l.Period.Seconds() / float64(l.Rate))
		return l.Capacity(), max(int64(refill), 1)
	}
	return l.Rate, max(ceilSeconds(l.Period), 1)
}

// ceilSeconds returns d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// appendSFString appends s as a Structured Field String (RFC 8941): quoted, with '"' and '\'
// escaped, and bytes outside printable ASCII replaced by '_', which a String cannot hold.
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c > 0x7e:
			b = append(b, '_')
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
