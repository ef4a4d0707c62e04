package limiter

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestPolicyField(t *testing.T) {
	for _, c := range []struct {
		alg    *Algorithm
		limits []Limit
		want   string
	}{
		{FixedWindow, []Limit{PerMinute(100).WithName("api")}, `"api";q=100;w=60`},
		{SlidingWindow, []Limit{PerSecond(10), PerHour(1000).WithName("hourly")}, `"10/1s";q=10;w=1, "hourly";q=1000;w=3600`},
		{FixedWindow, []Limit{Per(5, 250*time.Millisecond).WithName("fast")}, `"fast";q=5;w=1`},
		// A token bucket: the capacity, and the time to refill it from empty.
		{TokenBucket, []Limit{PerSecond(10).WithBurst(25).WithName("b")}, `"b";q=25;w=3`},
		{TokenBucket, []Limit{PerMinute(2).WithName("m")}, `"m";q=2;w=60`},
		// Names become Structured Field Strings.
		{FixedWindow, []Limit{PerSecond(1).WithName("say \"hi\" \\ é")}, `"say \"hi\" \\ __";q=1;w=1`},
	} {
		if got := PolicyField(c.alg, c.limits); got != c.want {
			t.Errorf("%v %v: %s, want %s", c.alg, c.limits, got, c.want)
		}
	}
}

func TestStateField(t *testing.T) {
	a := Result{Limit: PerSecond(10).WithName("s"), Remaining: 3, ResetAfter: 700 * time.Millisecond}
	b := Result{Limit: PerHour(100).WithName("h"), Remaining: 0, RetryAfter: time.Minute, ResetAfter: 3599*time.Second + time.Microsecond}
	if got, want := StateField(a), `"s";r=3;t=1`; got != want {
		t.Errorf("%s, want %s", got, want)
	}
	if got, want := StateField(Result{All: []Result{a, b}}), `"s";r=3;t=1, "h";r=0;t=3600`; got != want {
		t.Errorf("%s, want %s", got, want)
	}
}

func TestByRemoteIP(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	for addr, want := range map[string]string{"192.0.2.1:1234": "192.0.2.1", "[2001:db8::1]:80": "2001:db8::1", "odd": "odd"} {
		r.RemoteAddr = addr
		if got := ByRemoteIP(r); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

func TestFieldNamesCanonical(t *testing.T) {
	for _, h := range []string{hdrPolicy, hdrState, hdrRetryAfter} {
		if c := http.CanonicalHeaderKey(h); c != h {
			t.Errorf("%q is not canonical (%q)", h, c)
		}
	}
}

// The status of each kind of refusal, and the RateLimit field of one that can never pass.
func TestRefusalStatus(t *testing.T) {
	lim := PerMinute(5).WithName("m")
	for _, c := range []struct {
		name string
		res  Result
		want int
	}{
		{"later", Result{Limit: lim, RetryAfter: time.Second}, http.StatusTooManyRequests},
		{"deny cache", Result{Limit: lim, RetryAfter: time.Second, Source: SourceDenyCache}, http.StatusTooManyRequests},
		{"local, later", Result{Limit: lim, RetryAfter: time.Second, Source: SourceLocal}, http.StatusTooManyRequests},
		{"never", Result{Limit: lim, RetryAfter: InfDuration}, http.StatusRequestEntityTooLarge},
		{"local share", Result{Limit: lim, RetryAfter: InfDuration, Source: SourceLocal}, http.StatusServiceUnavailable},
		{"fail closed", Result{Limit: lim, RetryAfter: time.Second, Source: SourceFailClosed}, http.StatusServiceUnavailable},
	} {
		if got := refusalStatus(c.res); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
	never := Result{Limit: lim, Remaining: 5, RetryAfter: InfDuration}
	if got := StateField(never); got != "" {
		t.Errorf("StateField of a refusal that can never pass: %q, want none", got)
	}
	if got := StateField(Result{All: []Result{{Limit: lim, Remaining: 5, RetryAfter: InfDuration}, {Limit: PerHour(9), Allowed: true, Remaining: 9}}, Limit: lim, RetryAfter: InfDuration}); got != "" {
		t.Errorf("StateField of several limits, one never passing: %q, want none", got)
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
