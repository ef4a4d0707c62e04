package limithttp

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gatehouse/gatehouse/internal/ratelimitfield"
	"github.com/gatehouse/gatehouse/limiter"
)

// ProblemTypeQuotaExceeded is the problem type of ProblemDetails' 429 and 413 bodies, the one
// draft-ietf-httpapi-ratelimit-headers defines (and asks IANA to register) for requests that
// exceed a quota policy.
const ProblemTypeQuotaExceeded = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// ProblemDetails answers a refused request with the status the default handler gives (see
// WithDeniedHandler) and an RFC 9457 application/problem+json body in place of plain text. Use it
// as WithDeniedHandler(limithttp.ProblemDetails).
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
func ProblemDetails(w http.ResponseWriter, _ *http.Request, res limiter.Result) {
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
		p.Detail = "Refused by " + quoteNames(p.Violated) + "; retry in " + strconv.FormatInt(ratelimitfield.CeilSeconds(res.RetryAfter), 10) + " seconds."
	}
	if res.RetryAfter != limiter.InfDuration {
		p.RetryAfter = ratelimitfield.CeilSeconds(res.RetryAfter)
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

// refusedBy returns the names of the limits that refused res (limits in shadow mode never do);
// with never, only those that can never admit it.
func refusedBy(res limiter.Result, never bool) []string {
	if res.All == nil {
		return []string{ratelimitfield.Name(res.Limit)}
	}
	var names []string
	for _, r := range res.All {
		if !r.Allowed && (!never || r.RetryAfter == limiter.InfDuration) {
			names = append(names, ratelimitfield.Name(r.Limit))
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
