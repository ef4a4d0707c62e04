package limiter

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// LocalFallback configures FailLocal.
type LocalFallback struct {
	// MaxKeys bounds how many identifiers (each with its limits) the fallback keeps state for;
	// the least recently used make room for new ones. Default 10000.
	MaxKeys int
	// Instances divides every limit's rate and capacity, so that N processes sharing a limit
	// together admit about what it allows while each decides alone. Default 1: each process
	// enforces the whole limit by itself.
	Instances int
}

// FailLocal returns the policy that decides in this process when Redis cannot: each identifier's
// limits are enforced as token buckets in memory (Rate per Period, holding Capacity, divided by
// Instances), whatever the algorithm, and the Result has Source SourceLocal and Err holding the
// failure. Such decisions are approximate (each process counts only what it sees, from the moment
// Redis failed) but keep abusive clients limited and ordinary ones served while Redis is away. A
// limit changed while its state exists keeps what was used, as in Redis (docs/algorithms.md,
// "Changing a limit"): the tokens owed, rounded up and capped at the new capacity. When
// Redis answers again it decides again, with what it counted before; the local state is not copied
// back. Each Limiter keeps its own state. A negative MaxKeys or Instances makes New return an error.
func FailLocal(f LocalFallback) FailurePolicy { return FailurePolicy{source: SourceLocal, local: f} }

// localLimiter is FailLocal's in-process state: a GCRA "theoretical arrival time" per limit,
// per identifier, in local nanoseconds.
type localLimiter struct {
	mu        sync.Mutex
	instances int64
	states    lru[entryKey, *localState]
}

type localState struct {
	limits []Limit
	tat    []int64
}

func newLocalLimiter(f LocalFallback) (*localLimiter, error) {
	if f.MaxKeys == 0 {
		f.MaxKeys = 10000
	}
	if f.Instances == 0 {
		f.Instances = 1
	}
	if f.MaxKeys < 0 || f.Instances < 0 {
		return nil, fmt.Errorf("limiter: FailLocal(%+v): want positive MaxKeys and Instances", f)
	}
	return &localLimiter{instances: int64(f.Instances), states: newLRU[entryKey, *localState](f.MaxKeys)}, nil
}

// bucket returns a limit's local token bucket: nanoseconds per token and the capacity in tokens.
func (ll *localLimiter) bucket(lim Limit) (emission, capacity int64) {
	rate := max(lim.Rate/ll.instances, 1)
	capacity = max(lim.Capacity()/ll.instances, 1)
	emission = int64(math.Ceil(float64(lim.Period) / float64(rate)))
	return max(emission, 1), capacity
}

// decide makes the decision r asks for at now (local nanoseconds), all-or-nothing over the limits that enforce
// as the scripts do, and fills out with each limit's verdict. A limit in shadow mode (Limit.Shadow,
// or every limit with shadowMode) takes no part in the all-or-nothing, and counts the request when
// it admits it.
func (ll *localLimiter) decide(r *request, keys []string, shadowMode bool, now int64) {
	n, limits, out := r.n, r.limits, r.out
	k := cacheKey(keys)
	ll.mu.Lock()
	defer ll.mu.Unlock()
	st, ok := ll.states.get(k)
	if !ok || len(st.limits) != len(limits) {
		st = &localState{limits: slices.Clone(limits), tat: make([]int64, len(limits))}
		ll.states.put(k, st)
	}
	// Each limit's state as the limits asked for read it: st's own, or, for limits changed since
	// it was written, carried over to them, which an admission writes (a refusal writes nothing,
	// as in Redis).
	tats, changed := st.tat, !slices.Equal(st.limits, limits)
	if changed {
		tats = ll.carryOver(st, limits, now)
	}
	all := true
	next := make([]int64, len(limits))
	for i, lim := range limits {
		emission, capacity := ll.bucket(lim)
		tolerance := satMul(emission, capacity)
		tat := max(tats[i], now)
		next[i] = satAdd(tat, satMul(emission, n))
		r := Result{Limit: lim, Source: SourceLocal}
		switch {
		case n > capacity:
			r.RetryAfter = InfDuration
		case next[i]-now > tolerance:
			r.RetryAfter = roundUpMicros(next[i] - tolerance - now)
		default:
			r.Allowed = true
		}
		all = all && (r.Allowed || shadowMode || lim.Shadow)
		out[i] = r
	}
	if changed && all && !r.peek {
		st.limits, st.tat = slices.Clone(limits), tats
	}
	for i := range limits {
		emission, capacity := ll.bucket(limits[i])
		tat := max(tats[i], now)
		if all && !r.peek && out[i].Allowed {
			tat = next[i]
			tats[i] = tat
		}
		out[i].Remaining = max(0, (satMul(emission, capacity)-(tat-now))/emission)
		out[i].ResetAfter = roundUpMicros(tat - now)
	}
}

// carryOver returns the state of st (written under st.limits) read under limits, changed since (a
// tier changed, or limits of one identifier that share keys alternate), at now: limit i has limit
// i's key, and keeps what was used under the old limit, as the scripts do: the tokens it owed,
// rounded up and capped at the new capacity, owed under the new limit from now on. Starting afresh
// instead would give a client whose requests alternate between two such limits a full bucket at
// every request.
func (ll *localLimiter) carryOver(st *localState, limits []Limit, now int64) []int64 {
	tats := slices.Clone(st.tat)
	for i, lim := range limits {
		oldEmission, oldCapacity := ll.bucket(st.limits[i])
		emission, capacity := ll.bucket(lim)
		if debt := tats[i] - now; debt > 0 && (emission != oldEmission || capacity != oldCapacity) {
			owed := min(debt/oldEmission+min(debt%oldEmission, 1), capacity)
			tats[i] = satAdd(now, satMul(owed, emission))
		}
	}
	return tats
}

// roundUpMicros returns ns nanoseconds as a Duration rounded up to a microsecond, as the scripts'.
func roundUpMicros(ns int64) time.Duration {
	d := time.Duration(ns)
	if r := d % time.Microsecond; r > 0 {
		d += time.Microsecond - r
	}
	return d
}

// satMul and satAdd are a*b and a+b for non-negative operands, capped at MaxInt64/2 so that sums
// of them cannot overflow.
func satMul(a, b int64) int64 {
	const limit = math.MaxInt64 / 2
	if a != 0 && b > limit/a {
		return limit
	}
	return min(a*b, limit)
}

func satAdd(a, b int64) int64 {
	const limit = math.MaxInt64 / 2
	return min(a+b, limit)
}
