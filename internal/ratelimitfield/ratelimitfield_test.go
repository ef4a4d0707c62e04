package ratelimitfield

import (
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/limiter"
)

func TestPolicy(t *testing.T) {
	for _, c := range []struct {
		alg    limiter.Algorithm
		shadow bool
		limits []limiter.Limit
		want   string
	}{
		{limiter.FixedWindow, false, []limiter.Limit{limiter.PerMinute(100).WithName("api")}, `"api";q=100;w=60`},
		{limiter.SlidingWindow, false, []limiter.Limit{limiter.PerSecond(10), limiter.PerHour(1000).WithName("hourly")}, `"10/1s";q=10;w=1, "hourly";q=1000;w=3600`},
		{limiter.FixedWindow, false, []limiter.Limit{limiter.Per(5, 250*time.Millisecond).WithName("fast")}, `"fast";q=5;w=1`},
		// A token bucket: the capacity, and the time to refill it from empty.
		{limiter.TokenBucket, false, []limiter.Limit{limiter.PerSecond(10).WithBurst(25).WithName("b")}, `"b";q=25;w=3`},
		{limiter.TokenBucket, false, []limiter.Limit{limiter.PerMinute(2).WithName("m")}, `"m";q=2;w=60`},
		// Names become Structured Field Strings.
		{limiter.FixedWindow, false, []limiter.Limit{limiter.PerSecond(1).WithName("say \"hi\" \\ é")}, `"say \"hi\" \\ __";q=1;w=1`},
		// Limits in shadow mode are left out; under shadow mode, all of them.
		{limiter.FixedWindow, false, []limiter.Limit{limiter.PerSecond(1).WithName("new").WithShadow(), limiter.PerHour(9).WithName("h")}, `"h";q=9;w=3600`},
		{limiter.FixedWindow, false, []limiter.Limit{limiter.PerSecond(1).WithName("new").WithShadow()}, ``},
		{limiter.FixedWindow, true, []limiter.Limit{limiter.PerMinute(100).WithName("api")}, ``},
	} {
		f := Fields{alg: c.alg, shadow: c.shadow}
		if got := f.Policy(c.limits); got != c.want {
			t.Errorf("%v %v (shadow mode %v): %s, want %s", c.alg, c.limits, c.shadow, got, c.want)
		}
	}
}

func TestState(t *testing.T) {
	a := limiter.Result{Limit: limiter.PerSecond(10).WithName("s"), Remaining: 3, ResetAfter: 700 * time.Millisecond}
	b := limiter.Result{Limit: limiter.PerHour(100).WithName("h"), Remaining: 0, RetryAfter: time.Minute, ResetAfter: 3599*time.Second + time.Microsecond}
	shadow := limiter.Result{Allowed: true, Shadow: true, Limit: limiter.PerHour(1).WithName("new").WithShadow(), RetryAfter: time.Hour, ResetAfter: time.Hour}
	var f Fields
	for _, c := range []struct {
		name string
		f    Fields
		res  limiter.Result
		want string
	}{
		{"one limit", f, a, `"s";r=3;t=1`},
		{"two limits", f, limiter.Result{All: []limiter.Result{a, b}}, `"s";r=3;t=1, "h";r=0;t=3600`},
		// A refusal in shadow mode is not told: the client sees the admission the other limit made.
		{"a shadow limit refused", f, limiter.Result{Allowed: true, Shadow: true, Limit: shadow.Limit, RetryAfter: time.Hour, All: []limiter.Result{a, shadow}}, `"s";r=3;t=1`},
		{"only a shadow limit", f, shadow, ``},
		{"shadow mode", Fields{shadow: true}, a, ``},
		{"fail open", f, limiter.Result{Allowed: true, Limit: a.Limit, Source: limiter.SourceFailOpen}, ``},
		{"fail closed", f, limiter.Result{Limit: a.Limit, RetryAfter: time.Second, Source: limiter.SourceFailClosed}, ``},
		// A refusal that can never pass: t would say the quota is whole now.
		{"never", f, limiter.Result{Limit: a.Limit, Remaining: 5, RetryAfter: limiter.InfDuration}, ``},
		{"several limits, one never passing", f, limiter.Result{Limit: a.Limit, RetryAfter: limiter.InfDuration,
			All: []limiter.Result{{Limit: a.Limit, Remaining: 5, RetryAfter: limiter.InfDuration}, {Limit: limiter.PerHour(9), Allowed: true, Remaining: 9}}}, ``},
	} {
		if got := c.f.State(c.res); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// The legacy fields describe the binding limit among those told: with a limit in shadow mode
// binding (it refused, or has the fewest left), the enforced one with the fewest left.
func TestLegacy(t *testing.T) {
	now := time.Unix(1000, 500e6)
	hour := limiter.Result{Allowed: true, Limit: limiter.PerHour(100).WithName("h"), Remaining: 40, ResetAfter: 90 * time.Second}
	minute := limiter.Result{Allowed: true, Limit: limiter.PerMinute(10).WithName("m"), Remaining: 7, ResetAfter: 20 * time.Second}
	shadow := limiter.Result{Allowed: true, Shadow: true, Limit: limiter.PerMinute(1).WithName("new").WithShadow(), RetryAfter: time.Minute, ResetAfter: time.Minute}
	var f Fields
	for _, c := range []struct {
		name string
		f    Fields
		res  limiter.Result
		want []string
	}{
		{"one limit", f, minute, []string{"10", "7", "1021"}},
		{"shadow binding", f, limiter.Result{Allowed: true, Shadow: true, Limit: shadow.Limit, RetryAfter: time.Minute, All: []limiter.Result{hour, shadow, minute}}, []string{"10", "7", "1021"}},
		{"fail open", f, limiter.Result{Allowed: true, Limit: minute.Limit, Source: limiter.SourceFailOpen}, []string{"10"}},
		{"only a shadow limit", f, shadow, nil},
		{"shadow mode", Fields{shadow: true}, minute, nil},
	} {
		v, n := c.f.Legacy(c.res, now)
		if got := v[:n]; len(got) != len(c.want) || n > 0 && (got[0] != c.want[0] || n > 1 && (got[1] != c.want[1] || got[2] != c.want[2])) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// Any limit name becomes a valid Structured Field String: printable ASCII, quoted, with only \" and
// \\ escaped.
func FuzzString(f *testing.F) {
	for _, s := range []string{"api", `say "hi"`, `back\slash`, "é", "\x00\x7f", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := string(appendString(nil, name))
		if len(got) < 2 || got[0] != '"' || got[len(got)-1] != '"' {
			t.Fatalf("%q: not quoted: %q", name, got)
		}
		body := got[1 : len(got)-1]
		for i := 0; i < len(body); i++ {
			c := body[i]
			switch {
			case c < 0x20 || c > 0x7e:
				t.Fatalf("%q: byte %#x in %q", name, c, got)
			case c == '\\':
				if i+1 == len(body) || (body[i+1] != '"' && body[i+1] != '\\') {
					t.Fatalf("%q: bad escape in %q", name, got)
				}
				i++
			case c == '"':
				t.Fatalf("%q: unescaped quote in %q", name, got)
			}
		}
	})
}
