// Package ratelimitfield formats what the transports tell clients of their limits: the
// RateLimit-Policy and RateLimit fields of the IETF httpapi draft (draft-ietf-httpapi-ratelimit-headers),
// which limithttp sets as HTTP fields and limitgrpc as metadata, and the legacy X-RateLimit-*
// fields. Limits in shadow mode are left out of all of them: the point of shadow mode is that
// clients see what they would see without those limits.
package ratelimitfield

import (
	"math"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/limiter"
)

// Fields formats the fields of one limiter's decisions.
type Fields struct {
	alg    limiter.Algorithm
	shadow bool // the limiter's shadow mode: no limit is told
}

// For returns the Fields of lim's decisions.
func For(lim *limiter.Limiter) Fields {
	return Fields{alg: lim.Algorithm(), shadow: lim.ShadowMode()}
}

// Told reports whether clients are told of l: whether it is enforced, not in shadow mode.
func (f Fields) Told(l limiter.Limit) bool { return !f.shadow && !l.Shadow }

// Policy returns the value of the RateLimit-Policy field for limits: `"name";q=<quota>;w=<window
// seconds>` per limit told; "" when none is.
func (f Fields) Policy(limits []limiter.Limit) string {
	var b []byte
	for _, l := range limits {
		if !f.Told(l) {
			continue
		}
		if b == nil {
			b = make([]byte, 0, 40*len(limits))
		} else {
			b = append(b, ", "...)
		}
		q, w := f.QuotaWindow(l)
		b = appendString(b, Name(l))
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, q, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, w, 10)
	}
	return string(b)
}

// State returns the value of the RateLimit field for res: `"name";r=<remaining>;t=<seconds>` per
// limit told; "" when none is, and when KnowsState is false.
func (f Fields) State(res limiter.Result) string {
	if !KnowsState(res) {
		return ""
	}
	all := res.All
	if all == nil {
		all = []limiter.Result{res}
	}
	var buf [128]byte // room for two or three limits' states: the string is the one allocation
	b := buf[:0]
	for _, r := range all {
		if !f.Told(r.Limit) {
			continue
		}
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = appendString(b, Name(r.Limit))
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, max(r.Remaining, 0), 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, CeilSeconds(r.ResetAfter), 10)
	}
	return string(b)
}

// Legacy returns the values of X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset for
// res, decided at now, in v[:n]: for the binding limit among those told (the one that refused, or
// the one with the fewest requests remaining), its quota, what remains, and the instant the quota
// is whole again in Unix epoch seconds, rounded up. n is 1, the quota alone, when KnowsState is
// false, and 0 when no limit is told. The values share one string.
func (f Fields) Legacy(res limiter.Result, now time.Time) (v [3]string, n int) {
	bind, ok := f.binding(res)
	if !ok {
		return v, 0
	}
	q, _ := f.QuotaWindow(bind.Limit)
	if !KnowsState(res) {
		v[0] = strconv.FormatInt(q, 10)
		return v, 1
	}
	var buf [3 * 20]byte
	b := strconv.AppendInt(buf[:0], q, 10)
	n1 := len(b)
	b = strconv.AppendInt(b, max(bind.Remaining, 0), 10)
	n2 := len(b)
	// The end of ResetAfter, in epoch seconds rounded up.
	d := min(bind.ResetAfter, limiter.InfDuration-time.Second) + time.Duration(now.Nanosecond())
	b = strconv.AppendInt(b, now.Unix()+CeilSeconds(d), 10)
	all := string(b)
	return [3]string{all[:n1], all[n1:n2], all[n2:]}, 3
}

// binding returns the result the legacy fields describe: res when its limit is told, else the
// told limit with the fewest requests remaining (res was then admitted, its binding limit being
// one in shadow mode); false when no limit is told.
func (f Fields) binding(res limiter.Result) (limiter.Result, bool) {
	if f.Told(res.Limit) {
		return res, true
	}
	var bind limiter.Result
	found := false
	for _, r := range res.All {
		if f.Told(r.Limit) && (!found || r.Remaining < bind.Remaining) {
			bind, found = r, true
		}
	}
	return bind, found
}

// KnowsState reports whether res says something true and useful of the quota's state: not when
// the failure policy decided knowing nothing of it (FailOpen, FailClosed), nor for a refusal that
// can never pass, whose reset time would read as "retry then".
func KnowsState(res limiter.Result) bool {
	failed := res.Source == limiter.SourceFailOpen || res.Source == limiter.SourceFailClosed
	return !failed && (res.Allowed || res.RetryAfter != limiter.InfDuration)
}

// QuotaWindow returns a limit's quota and window, in requests and whole seconds (at least 1). For
// a token bucket, the quota is the bucket's capacity and the window the time it takes to refill
// it from empty, so that what remains never exceeds the quota.
func (f Fields) QuotaWindow(l limiter.Limit) (q, w int64) {
	if f.alg == limiter.TokenBucket {
		// Capacity tokens, refilled Rate per Period.
		refill := math.Ceil(float64(l.Capacity()) * l.Period.Seconds() / float64(l.Rate))
		return l.Capacity(), max(int64(refill), 1)
	}
	return l.Rate, max(CeilSeconds(l.Period), 1)
}

// Name names a limit in the fields: its Name, or without one its String, such as "100/1m0s".
func Name(l limiter.Limit) string {
	if l.Name != "" {
		return l.Name
	}
	return l.String()
}

// CeilSeconds returns d in whole seconds, rounded up.
func CeilSeconds(d time.Duration) int64 {
	s := int64(d / time.Second)
	if d%time.Second > 0 {
		s++
	}
	return s
}

// appendString appends s as a Structured Field String (RFC 8941): quoted, with '"' and '\'
// escaped, and bytes outside printable ASCII replaced by '_', which a String cannot hold.
func appendString(b []byte, s string) []byte {
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
