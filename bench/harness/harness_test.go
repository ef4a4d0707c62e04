package harness

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	h.Record(-time.Second) // a clock step backwards counts as 0
	if h.Count() != 1001 {
		t.Fatalf("Count = %d, want 1001", h.Count())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d < -0.02 || d > 0.02 {
			t.Errorf("Quantile(%v) = %v, want %v within 2%%", c.q, got, c.want)
		}
	}
	if got := NewHistogram().Quantile(0.5); got != 0 {
		t.Errorf("empty Quantile = %v, want 0", got)
	}
}

func TestHistogramBucketsCoverEveryValue(t *testing.T) {
	// Each value falls in a bucket whose middle is within 1/2^subBits of it, and buckets increase.
	prev := -1
	for v := uint64(0); v < 1<<20; v += 1 + v/97 {
		i := bucketOf(v)
		if i < prev {
			t.Fatalf("bucketOf(%d) = %d after %d", v, i, prev)
		}
		prev = i
		mid := bucketMid(i)
		if v >= sub && (mid < float64(v)*(1-1.0/sub) || mid > float64(v)*(1+1.0/sub)) {
			t.Fatalf("bucketOf(%d) = %d, whose middle %.0f is too far", v, i, mid)
		}
	}
	if got := bucketOf(1 << 50); got != nBuckets-1 {
		t.Errorf("bucketOf(2^50) = %d, want the last bucket %d", got, nBuckets-1)
	}
}

func TestMerge(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	a.Record(time.Millisecond)
	b.Record(3 * time.Millisecond)
	b.Record(3 * time.Millisecond)
	a.Merge(b)
	if a.Count() != 3 || a.Quantile(0.5) < 2900*time.Microsecond {
		t.Errorf("merged: count %d, p50 %v; want 3, about 3ms", a.Count(), a.Quantile(0.5))
	}
}

func TestPickers(t *testing.T) {
	step := picker(Lockstep, 3, 42)
	for i, want := range []int{1, 2, 0, 1} {
		if got := step(); got != want {
			t.Errorf("lockstep pick %d = %d, want %d", i, got, want)
		}
	}
	counts := make([]int, 10)
	r := picker(Random, 10, 7)
	for range 10000 {
		counts[r()]++
	}
	for k, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("random picker chose %d %d times in 10000, want about 1000", k, n)
		}
	}
	if a, b := picker(Random, 1000, 1)(), picker(Random, 1000, 2)(); a == b {
		t.Errorf("two workers' first picks are both %d", a)
	}
}

func TestSummarizeTakesMedians(t *testing.T) {
	rounds := []Round{
		{Figures: Figures{OpsPerSec: 10, P50us: 5}, Errors: 1, FirstError: "first"},
		{Figures: Figures{OpsPerSec: 30, P50us: 1}},
		{Figures: Figures{OpsPerSec: 20, P50us: 9}, Errors: 2},
	}
	r := summarize("x", 4, rounds)
	if r.OpsPerSec != 20 || r.P50us != 5 || r.OpsMin != 10 || r.OpsMax != 30 || r.Errors != 3 || r.FirstError != "first" {
		t.Errorf("summarize = %+v", r)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of an even count = %v, want 2.5", got)
	}
}

func TestParseInfo(t *testing.T) {
	f := parseInfo("# CPU\r\nused_cpu_sys:1.50\r\nused_cpu_user:2.25\r\n\r\n# Stats\r\ntotal_net_input_bytes:10\r\n")
	if f["used_cpu_sys"] != "1.50" || f["used_cpu_user"] != "2.25" || f["total_net_input_bytes"] != "10" {
		t.Errorf("parseInfo = %v", f)
	}
}

func TestHogsStartAndStop(t *testing.T) {
	stop, err := startHogs(2)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("stopping the hogs did not return")
	}
	stop, err = startHogs(0)
	if err != nil {
		t.Fatal(err)
	}
	stop()
}
