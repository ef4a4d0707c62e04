package limiter

import (
	"testing"
	"time"
)

func localDecide(t *testing.T, ll *localLimiter, key string, n int64, peek bool, now time.Duration, limits ...Limit) []Result {
	t.Helper()
	r := request{key: key, n: n, peek: peek, limits: limits, out: make([]Result, len(limits))}
	keys := make([]string, len(limits)) // as redisKey names them: by name, or by period
	for i, l := range limits {
		keys[i] = key + ":" + l.Name + ":" + l.Period.String()
	}
	ll.decide(&r, keys, false, int64(now))
	return r.out
}

func TestLocalFallbackBucket(t *testing.T) {
	ll, err := newLocalLimiter(LocalFallback{})
	if err != nil {
		t.Fatal(err)
	}
	lim := PerMinute(3)
	for i := range 3 {
		r := localDecide(t, ll, "k", 1, false, 0, lim)[0]
		if !r.Allowed || r.Remaining != int64(2-i) || r.Source != SourceLocal {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	r := localDecide(t, ll, "k", 1, false, 0, lim)[0]
	if r.Allowed || r.RetryAfter != 20*time.Second || r.Remaining != 0 || r.ResetAfter != time.Minute {
		t.Fatalf("fourth request: %+v, want refused for 20s", r)
	}
	if r := localDecide(t, ll, "k", 1, true, 20*time.Second, lim)[0]; !r.Allowed || r.Remaining != 1 {
		t.Fatalf("peek after 20s: %+v, want admitted with 1 left before it", r)
	}
	if r := localDecide(t, ll, "k", 1, false, 20*time.Second, lim)[0]; !r.Allowed || r.Remaining != 0 {
		t.Fatalf("after 20s: %+v, want admitted (the peek took nothing)", r)
	}
	if r := localDecide(t, ll, "k", 4, false, time.Hour, lim)[0]; r.Allowed || r.RetryAfter != InfDuration {
		t.Fatalf("cost over capacity: %+v", r)
	}
	// Other identifiers are counted apart.
	if r := localDecide(t, ll, "other", 3, false, 0, lim)[0]; !r.Allowed {
		t.Fatalf("another identifier: %+v", r)
	}
}

func TestLocalFallbackAllOrNothing(t *testing.T) {
	ll, _ := newLocalLimiter(LocalFallback{})
	burst, hourly := PerSecond(10).WithName("burst"), PerHour(1).WithName("hourly")
	if rs := localDecide(t, ll, "k", 1, false, 0, burst, hourly); !rs[0].Allowed || !rs[1].Allowed {
		t.Fatalf("first: %+v", rs)
	}
	rs := localDecide(t, ll, "k", 1, false, 0, burst, hourly)
	if !rs[0].Allowed || rs[1].Allowed || rs[0].Remaining != 9 {
		t.Fatalf("second: %+v; want hourly to refuse and burst not charged (9 left before)", rs)
	}
}

func TestLocalFallbackInstancesAndBound(t *testing.T) {
	ll, _ := newLocalLimiter(LocalFallback{MaxKeys: 2, Instances: 2})
	lim := PerMinute(4)
	for i := range 2 {
		if r := localDecide(t, ll, "a", 1, false, 0, lim)[0]; !r.Allowed {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	if r := localDecide(t, ll, "a", 1, false, 0, lim)[0]; r.Allowed || r.RetryAfter != 30*time.Second {
		t.Fatalf("third request with half the limit: %+v, want refused for 30s", r)
	}
	// Two more identifiers push "a" out: it starts afresh.
	localDecide(t, ll, "b", 1, false, 0, lim)
	localDecide(t, ll, "c", 1, false, 0, lim)
	if r := localDecide(t, ll, "a", 1, false, 0, lim)[0]; !r.Allowed {
		t.Fatalf("a after eviction: %+v", r)
	}
	if _, err := newLocalLimiter(LocalFallback{MaxKeys: -1}); err == nil {
		t.Error("MaxKeys -1 accepted")
	}
}

// A limit in shadow mode takes no part in the all-or-nothing, and counts what it admits.
func TestLocalFallbackShadow(t *testing.T) {
	ll, _ := newLocalLimiter(LocalFallback{})
	enforced, shadow := PerHour(5).WithName("api"), PerHour(1).WithName("new").WithShadow()
	localDecide(t, ll, "k", 1, false, 0, enforced, shadow)
	rs := localDecide(t, ll, "k", 1, false, 0, enforced, shadow)
	if !rs[0].Allowed || rs[1].Allowed || rs[0].Remaining != 3 || rs[1].Remaining != 0 {
		t.Fatalf("second: %+v; want api counting it (3 left), the shadow limit refusing", rs)
	}
	r := request{key: "m", n: 1, limits: []Limit{PerHour(1)}, out: make([]Result, 1)}
	ll.decide(&r, []string{"m"}, true, 0)
	ll.decide(&r, []string{"m"}, true, 0)
	if r.out[0].Allowed || r.out[0].Remaining != 0 {
		t.Fatalf("shadow mode, second: %+v; want the verdict refused (the caller admits)", r.out[0])
	}
}
