package limiter

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

func TestEscapeIsOneToOneAndBraceFree(t *testing.T) {
	escape := func(s string) string {
		var b strings.Builder
		writeEscaped(&b, s)
		return b.String()
	}
	ids := []string{"", "a", "{", "}", "%", "%7B", "%257B", "{a}", "a}{", "%%{{}}"}
	seen := map[string]string{}
	for _, id := range ids {
		e := escape(id)
		for _, c := range e {
			if c == '{' || c == '}' {
				t.Errorf("escape(%q) = %q holds a brace", id, e)
			}
		}
		if prev, dup := seen[e]; dup {
			t.Errorf("escape(%q) = escape(%q) = %q", id, prev, e)
		}
		seen[e] = id
	}
}

// Every key of one identifier lands in the identifier's slot, whatever the identifier holds.
func TestKeysShareTheIdentifiersSlot(t *testing.T) {
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, SlidingLog, TokenBucket} {
		l := &Limiter{alg: algorithms[alg], prefix: DefaultKeyPrefix}
		for _, id := range []string{"}x", "{}", "a{b}c", "user:42", "\xff"} {
			r := request{key: id, limits: []Limit{PerSecond(1), PerMinute(1), PerHour(1).WithName("h{")}}
			keys, err := l.keys(&r, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys[1:] {
				if script.Slot(k) != script.Slot(keys[0]) {
					t.Errorf("%v: keys %q and %q of %q are in different slots", alg, keys[0], k, id)
				}
			}
			// The same keys in a buffer with room, and past one without.
			for _, buf := range [][]string{make([]string, 0, 1), make([]string, 2, 4)} {
				if got, err := l.keys(&r, buf); err != nil || !slices.Equal(got, keys) {
					t.Errorf("%v: keys of %q in a buffer of capacity %d = %q, %v; want %q", alg, id, cap(buf), got, err, keys)
				}
			}
		}
	}
}

func TestNewRefusesBadArguments(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:0"}) // never dialled
	defer rdb.Close()
	if _, err := New(nil, TokenBucket); err == nil {
		t.Error("New(nil client) returned no error")
	}
	for _, alg := range []Algorithm{0, TokenBucket + 1, 255} {
		if _, err := New(rdb, alg); err == nil {
			t.Errorf("New(%v) returned no error", alg)
		}
	}
	if _, err := New(rdb, TokenBucket, WithKeyPrefix("app{1}:")); err == nil {
		t.Error("New with a braced prefix returned no error")
	}
	if _, err := New(rdb, TokenBucket, WithKeyPrefix("app:")); err != nil {
		t.Error(err)
	}
}

func TestLimitValidation(t *testing.T) {
	tests := []struct {
		alg   Algorithm
		limit Limit
		ok    bool
	}{
		{TokenBucket, PerSecond(10), true},
		{TokenBucket, Per(1, time.Millisecond), true},
		{FixedWindow, Per(5, 250*time.Millisecond), true},
		{FixedWindow, Per(5, 2*time.Hour), true},
		{FixedWindow, PerSecond(0), false},
		{FixedWindow, Per(1, time.Microsecond), false},
		{FixedWindow, Per(1, time.Second+time.Microsecond), false},
		{TokenBucket, PerSecond(1).WithBurst(-2), false},
		{SlidingLog, PerSecond(MaxSlidingLogRate), true},
		{SlidingLog, PerSecond(MaxSlidingLogRate + 1), false},
		{SlidingWindow, Per(1<<40, 1<<20*time.Millisecond), false},
		{SlidingWindow, Per(1<<40, 1024*time.Millisecond), true}, // rate × period = 2^50
		{SlidingWindow, Per(1<<40+1, 1024*time.Millisecond), false},
		{FixedWindow, Per(1<<40, 1<<20*time.Millisecond), true}, // no product: counts only add
		{FixedWindow, PerSecond(MaxRate), true},
		{FixedWindow, PerSecond(MaxRate + 1), false},
		{FixedWindow, PerSecond(1).WithBurst(MaxRate + 1), false},
		{TokenBucket, Per(1, time.Hour).WithBurst(1 << 40), false},
	}
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, SlidingLog, TokenBucket} {
		tests = append(tests, []struct {
			alg   Algorithm
			limit Limit
			ok    bool
		}{
			{alg, Per(1, MaxPeriod), true},
			{alg, Per(1, MaxPeriod+time.Millisecond), false},
			{alg, Per(1, InfDuration.Truncate(time.Millisecond)), false}, // about 292 years
		}...)
	}
	for _, tt := range tests {
		l := &Limiter{alg: algorithms[tt.alg], prefix: DefaultKeyPrefix}
		_, err := l.keys(&request{key: "k", limits: []Limit{tt.limit}}, nil)
		if ok := err == nil; ok != tt.ok {
			t.Errorf("%v %v: err = %v, want ok = %v", tt.alg, tt.limit, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidLimit) {
			t.Errorf("%v %v: err = %v, want ErrInvalidLimit", tt.alg, tt.limit, err)
		}
	}
}

// A reply of the wrong length is an error, never a panic. (A reply that is no array of integers
// is refused before decode: TestBadReply.)
func TestDecodeMalformedReplies(t *testing.T) {
	limits := []Limit{PerSecond(1)}
	for _, v := range [][]int64{nil, {}, {1}, {1, 1, 1, 1}, {1, 1, 1, 0, 0, 0}} {
		if err := decode(v, limits, make([]Result, 1)); !errors.Is(err, ErrBadReply) {
			t.Errorf("decode(%#v) err = %v, want ErrBadReply", v, err)
		}
	}
	rs := make([]Result, 1)
	err := decode([]int64{0, 0, 0, -1, 2500}, limits, rs)
	if err != nil || rs[0].RetryAfter != InfDuration || rs[0].ResetAfter != 2500*time.Microsecond {
		t.Errorf("decode of a never-allowed reply = %+v, %v", rs, err)
	}
}

// The algorithms are the values 1 to 4, each with its own name and key tag; the zero value and
// others are none.
func TestAlgorithm(t *testing.T) {
	tags := map[string]bool{}
	for i, want := range []string{"Algorithm(0)", "fixed_window", "sliding_window", "sliding_log", "token_bucket", "Algorithm(5)"} {
		a := Algorithm(i)
		if got := a.String(); got != want {
			t.Errorf("Algorithm(%d).String() = %q, want %q", i, got, want)
		}
		impl, ok := a.impl()
		if ok != (i >= 1 && i <= 4) || ok && (impl.id != a || impl.name != want || tags[impl.tag]) {
			t.Errorf("Algorithm(%d): %+v, %v", i, impl, ok)
		}
		if ok {
			tags[impl.tag] = true
		}
	}
	if FixedWindow != 1 || SlidingWindow != 2 || SlidingLog != 3 || TokenBucket != 4 {
		t.Error("the algorithms' values changed")
	}
}

func TestCombine(t *testing.T) {
	a := Result{Allowed: true, Remaining: 5, Limit: PerSecond(10)}
	b := Result{Allowed: true, Remaining: 2, Limit: PerHour(100)}
	if r := combine([]Result{a, b}); !r.Allowed || r.Limit != b.Limit || len(r.All) != 2 {
		t.Errorf("combine(allowed, allowed) = %+v, want allowed, binding the one with 2 left", r)
	}
	c := Result{Allowed: false, RetryAfter: time.Second, Limit: PerMinute(1)}
	d := Result{Allowed: false, RetryAfter: time.Hour, Limit: PerHour(1)}
	if r := combine([]Result{a, c, b, d}); r.Allowed || r.Limit != d.Limit {
		t.Errorf("combine with two denials = %+v, want denied, binding the longest wait", r)
	}
	// Refusals in shadow mode: admitted, the longest shadow wait binds; an enforced refusal wins.
	s1 := Result{Allowed: true, Shadow: true, RetryAfter: time.Minute, Limit: PerMinute(2).WithShadow()}
	s2 := Result{Allowed: true, Shadow: true, RetryAfter: 2 * time.Hour, Limit: PerDay(2).WithShadow()}
	if r := combine([]Result{a, s1, b, s2}); !r.Allowed || !r.Shadow || r.Limit != s2.Limit || r.RetryAfter != 2*time.Hour {
		t.Errorf("combine with shadow refusals = %+v, want admitted, shadow, binding the longest shadow wait", r)
	}
	if r := combine([]Result{s2, c, a}); r.Allowed || !r.Shadow || r.Limit != c.Limit || r.RetryAfter != time.Second {
		t.Errorf("combine with an enforced refusal and a shadow one = %+v, want denied by the enforced limit, Shadow set", r)
	}
}

// PerDay is a test helper: a limit of rate requests per day.
func PerDay(rate int64) Limit { return Per(rate, 24*time.Hour) }
