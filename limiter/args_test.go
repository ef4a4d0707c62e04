package limiter

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// The cache gives every limit the values its algorithm's args give it, whatever limits came
// before in its slot: limits that differ in Rate, Period or Burst alone (twins in one slot, too),
// and far more limits than slots, from many goroutines at once.
func TestArgCache(t *testing.T) {
	var limits []Limit
	for _, l := range []Limit{PerSecond(300), Per(300, 2*time.Second), PerSecond(301), PerSecond(300).WithBurst(600)} {
		limits = append(limits, l, l.WithName("n"), l.WithShadow()) // Name and Shadow change nothing
	}
	// Twins: limits that differ from one another in one of Rate, Period and Burst, and share a slot.
	base := PerSecond(300)
	for _, vary := range []func(l Limit, i int64) Limit{
		func(l Limit, i int64) Limit { l.Rate += i; return l },
		func(l Limit, i int64) Limit { l.Period += time.Duration(i) * time.Millisecond; return l },
		func(l Limit, i int64) Limit { l.Burst += i; return l },
	} {
		for i := int64(1); ; i++ {
			if twin := vary(base, i); argSlot(twin) == argSlot(base) {
				limits = append(limits, base, twin, base, twin)
				break
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 4 * argCacheSlots {
		limits = append(limits, Per(1+rng.Int64N(1<<40), time.Duration(1+rng.Int64N(1<<20))*time.Millisecond).WithBurst(rng.Int64N(1<<40)))
	}
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, SlidingLog, TokenBucket} {
		impl, _ := alg.impl()
		var c argCache
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 3 * len(limits) {
					l := limits[(i*(g+1))%len(limits)]
					got := c.append([]any{"before"}, impl, l)
					want := impl.args([]any{"before"}, l)
					if !slices.Equal(got, want) {
						t.Errorf("%v %v: %v, want %v", alg, l, got, want)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}
