package limithttp

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/limiter"
)

// ByRemoteIP gives one identifier per IPv4 address, in whatever form it came, and per IPv6 /64 (a
// host given a /64 cannot take a fresh quota with each address); an empty RemoteAddr is limited,
// not exempted.
func TestByRemoteIP(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	for addr, want := range map[string]string{
		"192.0.2.1:1234": "192.0.2.1", "192.0.2.1": "192.0.2.1", "[::ffff:192.0.2.1]:80": "192.0.2.1",
		"[2001:db8::1]:80": "2001:db8::/64", "[2001:db8::ffff:1]:443": "2001:db8::/64", "[2001:db8:0:1::1]:80": "2001:db8:0:1::/64",
		"[fe80::1%eth0]:80": "fe80::/64", "@": "@", "odd": "odd", "": "unknown",
	} {
		r.RemoteAddr = addr
		if got := ByRemoteIP(r); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

func TestFieldNamesCanonical(t *testing.T) {
	for _, h := range []string{hdrPolicy, hdrState, hdrRetryAfter, hdrLegacyLimit, hdrLegacyRemaining, hdrLegacyReset, hdrOrigin, hdrExpose} {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("%q is not canonical (%q)", h, c)
		}
	}
}

// The status of each kind of refusal.
func TestRefusalStatus(t *testing.T) {
	lim := limiter.PerMinute(5).WithName("m")
	for _, c := range []struct {
		name string
		res  limiter.Result
		want int
	}{
		{"later", limiter.Result{Limit: lim, RetryAfter: time.Second}, http.StatusTooManyRequests},
		{"deny cache", limiter.Result{Limit: lim, RetryAfter: time.Second, Source: limiter.SourceDenyCache}, http.StatusTooManyRequests},
		{"local, later", limiter.Result{Limit: lim, RetryAfter: time.Second, Source: limiter.SourceLocal}, http.StatusTooManyRequests},
		{"never", limiter.Result{Limit: lim, RetryAfter: limiter.InfDuration}, http.StatusRequestEntityTooLarge},
		{"local share", limiter.Result{Limit: lim, RetryAfter: limiter.InfDuration, Source: limiter.SourceLocal}, http.StatusServiceUnavailable},
		{"fail closed", limiter.Result{Limit: lim, RetryAfter: time.Second, Source: limiter.SourceFailClosed}, http.StatusServiceUnavailable},
	} {
		if got := refusalStatus(c.res); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

func TestQuoteNames(t *testing.T) {
	for _, c := range []struct {
		names []string
		want  string
	}{
		{[]string{"a"}, `limit "a"`},
		{[]string{"a", "b"}, `limits "a" and "b"`},
		{[]string{"a", "b", "c\""}, `limits "a", "b" and "c\""`},
	} {
		if got := quoteNames(c.names); got != c.want {
			t.Errorf("quoteNames(%q) = %s, want %s", c.names, got, c.want)
		}
	}
}

// setFields sets each field it is given, and only those; the fields share one array, yet a value
// added to one field (Header.Add) never shows in another.
func TestSetFields(t *testing.T) {
	for _, c := range []struct {
		name          string
		policy, state string
		legacy        []string
		want          http.Header
	}{
		{"none", "", "", nil, http.Header{}},
		{"policy", "p", "", nil, http.Header{hdrPolicy: {"p"}}},
		{"state", "", "s", nil, http.Header{hdrState: {"s"}}},
		{"quota alone", "p", "", []string{"5"}, http.Header{hdrPolicy: {"p"}, hdrLegacyLimit: {"5"}}},
		{"all", "p", "s", []string{"5", "4", "99"}, http.Header{hdrPolicy: {"p"}, hdrState: {"s"},
			hdrLegacyLimit: {"5"}, hdrLegacyRemaining: {"4"}, hdrLegacyReset: {"99"}}},
	} {
		h := http.Header{}
		setFields(h, c.policy, c.state, c.legacy)
		if !reflect.DeepEqual(h, c.want) {
			t.Errorf("%s: %v, want %v", c.name, h, c.want)
			continue
		}
		for name := range c.want {
			h.Add(name, "added")
			c.want[name] = append(c.want[name], "added")
			if !reflect.DeepEqual(h, c.want) {
				t.Errorf("%s: after adding to %s: %v, want %v", c.name, name, h, c.want)
			}
		}
	}
}
