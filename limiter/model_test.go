package limiter_test

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"reflect"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
)

// A model is a reference implementation of one algorithm in Go: the state of one identifier's
// limits, and the decision the algorithm must make at an instant (in microseconds). The models
// find retry times by searching forward for the first instant the request fits, not by the
// scripts' closed forms, so that model and script are two formulations that must agree.
type model interface {
	// check returns limit i's decision for cost n at now, without changing anything.
	check(i int, lim limiter.Limit, now, n int64) (ok bool, retry int64)
	// take counts cost n against limit i at now.
	take(i int, lim limiter.Limit, now, n int64)
	// report returns limit i's remaining and reset-after (microseconds) at now.
	report(i int, lim limiter.Limit, now int64) (remaining, reset int64)
}

// decideModel is the model's AllowAll: all or nothing over the limits that enforce, counted by
// each limit that admits, then each limit reported as it stands. A refusal in shadow mode is an
// admission that says Shadow.
func decideModel(m model, now, n int64, peek bool, limits []limiter.Limit) []limiter.Result {
	out := make([]limiter.Result, len(limits))
	all := true
	for i, lim := range limits {
		ok, retry := m.check(i, lim, now, n)
		out[i] = limiter.Result{Allowed: ok, Limit: lim, RetryAfter: usDuration(retry)}
		all = all && (ok || lim.Shadow)
	}
	for i, lim := range limits {
		if all && !peek && out[i].Allowed {
			m.take(i, lim, now, n)
		}
		rem, reset := m.report(i, lim, now)
		out[i].Remaining, out[i].ResetAfter = rem, usDuration(reset)
		if lim.Shadow && !out[i].Allowed {
			out[i].Allowed, out[i].Shadow = true, true
		}
	}
	return out
}

func usDuration(us int64) time.Duration {
	if us < 0 {
		return limiter.InfDuration
	}
	return time.Duration(us) * time.Microsecond
}

// firstMS returns the first whole millisecond t > now/1000 for which fits(t) holds, as a
// retry-after in microseconds from now. fits must stay true once true (a window's count only falls
// while nothing is admitted): the search doubles, then bisects.
func firstMS(now int64, fits func(ms int64) bool) int64 {
	return firstMicro(now/1000, fits)*1000 - now
}

// fixedModel: a count that holds until the end of the window it was last counted in (a window
// of the period it was counted under: after a change of period, the old window's count holds until
// that window ends, or until a request admitted under the new period moves it to the new window).
type fixedModel struct{ end, count []int64 }

// used returns limit i's count at millisecond ms.
func (m *fixedModel) used(i int, ms int64) int64 {
	if m.end[i] > ms {
		return m.count[i]
	}
	return 0
}

func (m *fixedModel) check(i int, lim limiter.Limit, now, n int64) (bool, int64) {
	if n > lim.Rate {
		return false, -1
	}
	if m.used(i, now/1000)+n <= lim.Rate {
		return true, 0
	}
	return false, firstMS(now, func(t int64) bool { return m.used(i, t)+n <= lim.Rate })
}

func (m *fixedModel) take(i int, lim limiter.Limit, now, n int64) {
	p, ms := lim.Period.Milliseconds(), now/1000
	m.count[i], m.end[i] = m.used(i, ms)+n, (ms/p+1)*p
}

func (m *fixedModel) report(i int, lim limiter.Limit, now int64) (int64, int64) {
	c := m.used(i, now/1000)
	if c == 0 {
		return lim.Rate, 0
	}
	return max(0, lim.Rate-c), m.end[i]*1000 - now
}

// slidingModel: the weighted two-window counter, weights as exact fractions, over the windows of the
// period the counts were made under. A request admitted under another period starts the new
// period's window with the old estimate, rounded up, as its count.
type slidingModel struct{ start, period, cur, prev []int64 }

// estimate returns limit i's weighted count at millisecond ms as the fraction num / den.
func (m *slidingModel) estimate(i int, ms int64) (num, den int64) {
	p := m.period[i]
	if p == 0 {
		return 0, 1
	}
	switch e := ms - m.start[i]; {
	case e < p:
		return m.prev[i]*(p-e) + m.cur[i]*p, p
	case e < 2*p:
		return m.cur[i] * (2*p - e), p
	}
	return 0, p
}

func (m *slidingModel) fits(i int, lim limiter.Limit, ms, n int64) bool {
	num, den := m.estimate(i, ms)
	need := new(big.Int).Add(big.NewInt(num), new(big.Int).Mul(big.NewInt(n), big.NewInt(den)))
	return need.Cmp(new(big.Int).Mul(big.NewInt(lim.Rate), big.NewInt(den))) <= 0
}

func (m *slidingModel) check(i int, lim limiter.Limit, now, n int64) (bool, int64) {
	if n > lim.Rate {
		return false, -1
	}
	if m.fits(i, lim, now/1000, n) {
		return true, 0
	}
	return false, firstMS(now, func(t int64) bool { return m.fits(i, lim, t, n) })
}

func (m *slidingModel) take(i int, lim limiter.Limit, now, n int64) {
	p, ms := lim.Period.Milliseconds(), now/1000
	win := ms / p * p
	switch {
	case m.period[i] == p && m.start[i] == win:
		m.cur[i] += n
	case m.period[i] == p && m.start[i] == win-p:
		m.prev[i], m.cur[i] = m.cur[i], n
	default:
		num, den := m.estimate(i, ms)
		m.prev[i], m.cur[i] = 0, (num+den-1)/den+n
	}
	m.start[i], m.period[i] = win, p
}

func (m *slidingModel) report(i int, lim limiter.Limit, now int64) (int64, int64) {
	num, den := m.estimate(i, now/1000)
	rem := max(0, lim.Rate-(num+den-1)/den)
	if num == 0 {
		return rem, 0
	}
	// Nothing counts once the last window holding a count has passed out of the estimate.
	p, end := m.period[i], m.start[i]+2*m.period[i]
	if now/1000-m.start[i] < p && m.cur[i] == 0 {
		end -= p
	}
	return rem, end*1000 - now
}

// logModel: the time of every admitted request, in order. An admitted request drops the times the
// limit it was admitted under no longer needs.
type logModel struct{ times [][]int64 }

// live returns how many of limit i's requests count at now, and the newest of them.
func (m *logModel) live(i int, lim limiter.Limit, now int64) (count, newest int64) {
	ts := m.times[i]
	first := sort.Search(len(ts), func(k int) bool { return now-ts[k] < lim.Period.Microseconds() })
	if first == len(ts) {
		return 0, 0
	}
	return int64(len(ts) - first), ts[len(ts)-1]
}

func (m *logModel) check(i int, lim limiter.Limit, now, n int64) (bool, int64) {
	if n > lim.Rate {
		return false, -1
	}
	if c, _ := m.live(i, lim, now); c+n <= lim.Rate {
		return true, 0
	}
	// The request fits at the first instant some request ages out and enough have.
	ts := m.times[i]
	for _, t := range ts {
		if at := t + lim.Period.Microseconds(); at > now {
			if c, _ := m.live(i, lim, at); c+n <= lim.Rate {
				return false, at - now
			}
		}
	}
	panic("model: no admissible instant found")
}

func (m *logModel) take(i int, lim limiter.Limit, now, n int64) {
	c, _ := m.live(i, lim, now)
	ts := m.times[i][int64(len(m.times[i]))-c:]
	for range n {
		ts = append(ts, now)
	}
	m.times[i] = ts
}

func (m *logModel) report(i int, lim limiter.Limit, now int64) (int64, int64) {
	c, newest := m.live(i, lim, now)
	if c == 0 {
		return lim.Rate, 0
	}
	return max(0, lim.Rate-c), newest + lim.Period.Microseconds() - now
}

// bucketModel: the tokens a bucket owes, as an exact fraction, at the instant of the last admitted
// request, with the limit it was admitted under. Read under a limit of another rate, what was owed
// is rounded up to whole tokens; under any limit it is capped at the capacity; it is refilled at the
// reading limit's rate from that instant, and is gone once the writing limit would have refilled it.
type bucketModel struct {
	owed []*big.Rat
	at   []int64
	by   []limiter.Limit
}

// perMicro is a limit's refill rate in tokens per microsecond.
func perMicro(lim limiter.Limit) *big.Rat { return big.NewRat(lim.Rate, lim.Period.Microseconds()) }

// debt returns the tokens limit i's bucket lacks at now, read under lim.
func (m *bucketModel) debt(i int, lim limiter.Limit, now int64) *big.Rat {
	zero := new(big.Rat)
	if m.owed[i] == nil {
		return zero
	}
	elapsed := new(big.Rat).SetInt64(now - m.at[i])
	refilled := func(by limiter.Limit) *big.Rat { return new(big.Rat).Mul(elapsed, perMicro(by)) }
	if m.owed[i].Cmp(refilled(m.by[i])) <= 0 {
		return zero // the limit that wrote it has refilled it
	}
	owed := new(big.Rat).Set(m.owed[i])
	if perMicro(m.by[i]).Cmp(perMicro(lim)) != 0 {
		whole := new(big.Int).Add(owed.Num(), new(big.Int).Sub(owed.Denom(), big.NewInt(1)))
		owed.SetInt(whole.Quo(whole, owed.Denom()))
	}
	if capacity := new(big.Rat).SetInt64(lim.Capacity()); owed.Cmp(capacity) > 0 {
		owed = capacity
	}
	owed.Sub(owed, refilled(lim))
	if owed.Sign() < 0 {
		return zero
	}
	return owed
}

func (m *bucketModel) fits(i int, lim limiter.Limit, now, n int64) bool {
	need := new(big.Rat).Add(m.debt(i, lim, now), new(big.Rat).SetInt64(n))
	return need.Cmp(new(big.Rat).SetInt64(lim.Capacity())) <= 0
}

// firstMicro returns the first instant after now at which ok holds (ok must stay true after it).
func firstMicro(now int64, ok func(int64) bool) int64 {
	lo, hi := now, now+1
	for !ok(hi) {
		lo, hi = hi, now+2*(hi-now)
	}
	for lo+1 < hi {
		if mid := lo + (hi-lo)/2; ok(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

func (m *bucketModel) check(i int, lim limiter.Limit, now, n int64) (bool, int64) {
	if n > lim.Capacity() {
		return false, -1
	}
	if m.fits(i, lim, now, n) {
		return true, 0
	}
	return false, firstMicro(now, func(t int64) bool { return m.fits(i, lim, t, n) }) - now
}

func (m *bucketModel) take(i int, lim limiter.Limit, now, n int64) {
	m.owed[i] = new(big.Rat).Add(m.debt(i, lim, now), new(big.Rat).SetInt64(n))
	m.at[i], m.by[i] = now, lim
}

func (m *bucketModel) report(i int, lim limiter.Limit, now int64) (int64, int64) {
	debt := m.debt(i, lim, now)
	left := new(big.Rat).Sub(new(big.Rat).SetInt64(lim.Capacity()), debt)
	rem := new(big.Int).Quo(left.Num(), left.Denom()).Int64()
	if debt.Sign() == 0 {
		return rem, 0
	}
	return rem, firstMicro(now, func(t int64) bool { return m.debt(i, lim, t).Sign() == 0 }) - now
}

var algorithms = []struct {
	alg   limiter.Algorithm
	model func(limits int) model
}{
	{limiter.FixedWindow, func(n int) model { return &fixedModel{make([]int64, n), make([]int64, n)} }},
	{limiter.SlidingWindow, func(n int) model {
		return &slidingModel{make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)}
	}},
	{limiter.SlidingLog, func(n int) model { return &logModel{make([][]int64, n)} }},
	{limiter.TokenBucket, func(n int) model {
		return &bucketModel{make([]*big.Rat, n), make([]int64, n), make([]limiter.Limit, n)}
	}},
}

// The model and Redis are driven with the same random requests at the same injected instants, and
// must agree on every field of every result.
func TestLimiterMatchesModel(t *testing.T) { runModels(t, fixedLimits, 8) }

// runModels runs seeds model runs of the mode for each algorithm, on each backend, with each way
// of sending decisions (sendModes).
func runModels(t *testing.T, mode modelLimits, seeds uint64) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			for _, send := range sendModes {
				t.Run(a.alg.String()+send.suffix, func(t *testing.T) {
					prefix := redistest.Prefix(t)
					for seed := range seeds {
						runModel(t, b, prefix, a.alg, a.model, seed, mode, send.opts)
					}
					redistest.AssertKeysExpire(t, b, prefix)
				})
			}
		}
	})
}

// The same, while the limits change under the state: rates and bursts up and down, periods longer
// and shorter (the limits are named, so a new period keeps the key), with rates up to 90 million per
// period, so that a token bucket gains tokens many times per microsecond; and limits moved in and
// out of shadow mode.
func TestLimiterMatchesModelAcrossLimitChanges(t *testing.T) { runModels(t, changingLimits, 8) }

// At each algorithm's bounds: the largest rates, bursts and costs it accepts (for the log, costs of
// up to MaxSlidingLogRate in one call), periods up to MaxPeriod.
func TestLimiterMatchesModelAtBounds(t *testing.T) { runModels(t, boundLimits, 4) }

// How a model run chooses its limits.
type modelLimits int

const (
	fixedLimits    modelLimits = iota // two small limits, kept for the run
	changingLimits                    // random limits, changed as the run goes
	boundLimits                       // limits at the algorithm's bounds, kept for the run
)

// limitsAtBounds are, per algorithm, limits at the bounds it accepts.
var limitsAtBounds = map[limiter.Algorithm][]limiter.Limit{
	limiter.FixedWindow: {limiter.PerSecond(limiter.MaxRate), limiter.Per(limiter.MaxRate, limiter.MaxPeriod),
		limiter.Per(1, limiter.MaxPeriod), limiter.Per(3, time.Millisecond)},
	limiter.SlidingWindow: {limiter.Per(1<<40, 1024*time.Millisecond), limiter.Per(3570, limiter.MaxPeriod),
		limiter.Per(1, limiter.MaxPeriod), limiter.Per(3, time.Millisecond)},
	limiter.SlidingLog: {limiter.PerHour(limiter.MaxSlidingLogRate), limiter.Per(limiter.MaxSlidingLogRate, limiter.MaxPeriod),
		limiter.PerSecond(limiter.MaxSlidingLogRate), limiter.Per(1, limiter.MaxPeriod)},
	limiter.TokenBucket: {limiter.Per(16500, time.Millisecond).WithBurst(1 << 51), limiter.PerSecond(4_503_599_627),
		limiter.PerSecond(4_503_599_627_000_000), limiter.Per(1, limiter.MaxPeriod), limiter.Per(1, time.Hour).WithBurst(87600)},
}

var modelPeriods = []time.Duration{time.Millisecond, 7 * time.Millisecond, 50 * time.Millisecond, time.Second, 3 * time.Second}

// randomLimit returns a limit named name for alg: mostly small rates, sometimes (not for the log,
// whose memory grows with the rate) 1,000 to 90 million per period; for the bucket, half the time
// a burst other than the rate.
func randomLimit(rng *rand.Rand, alg limiter.Algorithm, name string) limiter.Limit {
	rate := 1 + rng.Int64N(40)
	if alg != limiter.SlidingLog && rng.IntN(4) == 0 {
		rate = 1 + rng.Int64N(9)
		for range 3 + rng.IntN(5) {
			rate *= 10
		}
	}
	l := limiter.Per(rate, modelPeriods[rng.IntN(len(modelPeriods))]).WithName(name)
	if alg == limiter.TokenBucket && rng.IntN(2) == 0 {
		l = l.WithBurst(1 + rng.Int64N(2*rate))
	}
	if rng.IntN(4) == 0 {
		l = l.WithShadow()
	}
	return l
}

// modelStart returns the first instant of a run: ahead of the server's clock (so that the expiries
// the scripts set lie in the future), aligned to 21s, a multiple of every period the runs use, plus
// an offset drawn from the seed, so that a seed always meets the windows at the same phase and a
// failure reproduces. GATEHOUSE_MODEL_OFFSET_US overrides the offset, to search for one.
func modelStart(seed uint64) int64 {
	const align = 21_000_000
	base := (time.Now().UnixMicro()/align + 2) * align
	off := int64(rand.New(rand.NewPCG(seed, 0x0ff5e7)).Uint64() % align)
	if v := os.Getenv("GATEHOUSE_MODEL_OFFSET_US"); v != "" {
		off, _ = strconv.ParseInt(v, 10, 64)
	}
	return base + off
}

// runModel drives one model run. When the limiter coalesces (opts without WithoutCoalescing),
// other goroutines decide through the same limiter all along, so that the run's decisions share script calls with theirs.
func runModel(t *testing.T, b *redistest.Backend, prefix string, alg limiter.Algorithm, newModel func(int) model, seed uint64, mode modelLimits, opts []limiter.Option) {
	changes := mode == changingLimits
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 0x9a7e))
	now := modelStart(seed)
	var clock atomic.Int64 // now, for the limiter's clock, which the noise reads too
	clock.Store(now)
	lim, err := limiter.New(b.Client, alg, append(opts, limiter.WithKeyPrefix(prefix), limiter.WithClock(func() time.Time { return time.UnixMicro(clock.Load()) }))...)
	if err != nil {
		t.Fatal(err)
	}
	if _, coalesced := limiter.CoalesceStats(lim); coalesced {
		// The run's identifier: keys of this run's own (its clock may be centuries from another
		// run's), in the slot of the run's keys, so that they share calls on a Cluster too.
		defer noise(t, lim, fmt.Sprintf("user-%d", seed))()
	}
	limits := []limiter.Limit{
		limiter.Per(1+rng.Int64N(12), modelPeriods[rng.IntN(len(modelPeriods))]).WithName("a"),
		limiter.Per(1+rng.Int64N(40), modelPeriods[rng.IntN(len(modelPeriods))]).WithName("b"),
	}
	if alg == limiter.TokenBucket {
		limits[0] = limits[0].WithBurst(1 + rng.Int64N(15))
	}
	steps := 300
	switch mode {
	case changingLimits:
		limits = []limiter.Limit{randomLimit(rng, alg, "a"), randomLimit(rng, alg, "b")}
	case boundLimits:
		set := limitsAtBounds[alg]
		k := rng.IntN(len(set))
		limits = []limiter.Limit{set[k].WithName("a"), set[(k+1+rng.IntN(len(set)-1))%len(set)].WithName("b")}
		steps = 60
	}
	last := 1<<53 - 2*limiter.MaxPeriod.Microseconds() // the last instant a decision may be made at
	m := newModel(len(limits))
	key := fmt.Sprintf("user-%d", seed)
	for step := range steps {
		before := now
		if changes && rng.IntN(8) == 0 {
			k := rng.IntN(len(limits))
			limits[k] = randomLimit(rng, alg, limits[k].Name)
		}
		// Advance by nothing, a little, or a lot relative to the shorter period.
		switch rng.IntN(4) {
		case 0:
		case 1:
			now += rng.Int64N(1000)
		case 2:
			now += rng.Int64N(limits[0].Period.Microseconds() + 1)
		case 3:
			now += rng.Int64N(3 * limits[1].Period.Microseconds())
		}
		if now > last {
			now = before
		}
		clock.Store(now)
		op := rng.IntN(4)
		ls := limits
		switch op {
		case 0:
			ls = limits[:1]
		case 1:
			ls = limits[1:]
		}
		n := 1 + rng.Int64N(3)
		if rng.IntN(20) == 0 {
			n = 50 // more than any capacity here: never allowed
		}
		if mode != fixedLimits {
			smallest := min(ls[0].Capacity(), ls[len(ls)-1].Capacity())
			n = 1 + rng.Int64N(max(1, smallest/3))
			switch {
			case rng.IntN(20) == 0:
				n = smallest + 1 // never allowed
			case mode == boundLimits && rng.IntN(3) == 0:
				n = smallest // the whole capacity at once
			}
		}
		var got []limiter.Result
		var want []limiter.Result
		switch op {
		case 0: // AllowN on the first limit
			r, err := lim.AllowN(ctx, key, limits[0], n)
			if err != nil {
				t.Fatal(err)
			}
			got, want = []limiter.Result{r}, decideModel(subModel{m, 0}, now, n, false, limits[:1])
		case 1: // Peek on the second limit
			r, err := lim.Peek(ctx, key, limits[1])
			if err != nil {
				t.Fatal(err)
			}
			n = 1
			got, want = []limiter.Result{r}, decideModel(subModel{m, 1}, now, 1, true, limits[1:])
		default: // AllowAll on both
			r, err := lim.AllowAll(ctx, key, n, limits...)
			if err != nil {
				t.Fatal(err)
			}
			got, want = r.All, decideModel(m, now, n, false, limits)
			allowed, shadow := want[0].Allowed && want[1].Allowed, want[0].Shadow || want[1].Shadow
			if r.Allowed != allowed || r.Shadow != shadow {
				t.Fatalf("seed %d step %d: AllowAll allowed = %v, shadow = %v; model %v, %v", seed, step, r.Allowed, r.Shadow, allowed, shadow)
			}
		}
		for i := range want {
			g := got[i]
			g.All = nil
			if !reflect.DeepEqual(g, want[i]) {
				t.Fatalf("seed %d step %d op %d cost %d, limit %v:\n redis %+v\n model %+v", seed, step, op, n, want[i].Limit, g, want[i])
			}
		}
	}
}

// subModel presents limit i of a model as a model of that limit alone.
type subModel struct {
	m model
	i int
}

func (s subModel) check(_ int, lim limiter.Limit, now, n int64) (bool, int64) {
	return s.m.check(s.i, lim, now, n)
}
func (s subModel) take(_ int, lim limiter.Limit, now, n int64) { s.m.take(s.i, lim, now, n) }
func (s subModel) report(_ int, lim limiter.Limit, now int64) (int64, int64) {
	return s.m.report(s.i, lim, now)
}
