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
	// MaxKeys bounds how many identifiers (each with its limits, at most 64 of them) the
	// fallback keeps state for; the least recently used make room for new ones. Default 10000.
	MaxKeys int
	// Instances divides every limit's rate and capacity, so that N processes sharing a limit
	// together admit about what it allows while each decides alone. Default 1: each process
	// enforces the whole limit by itself.
	Instances int
}

// FailLocal returns the policy that decides in this process when Redis cannot: each identifier's
// limits are enforced as token buckets in memory (Rate per Period, holding Capacity, divided by
// Instances), whatever the algorithm, and the Result has Source SourceLocal and Err holding the
// failure. As in Redis, each limit of an identifier (each key: a name, or a period) has one state,
// whatever other limits a request names with it, so a global limit that requests name beside
// per-route ones holds across the routes. Such decisions are approximate (each process counts only
// what it sees, from the moment Redis failed) but keep abusive clients limited and ordinary ones
// served while Redis is away. A limit changed while its state exists keeps what was used, as in
// Redis (docs/algorithms.md, "Changing a limit"): the tokens owed, rounded up and capped at the new
// capacity. When Redis answers again it decides again, with what it counted before; the local state
// is not copied back. Reset forgets the counts of the limits it names. Each Limiter keeps its own
// state. A negative MaxKeys or Instances makes New return an error.
func FailLocal(f LocalFallback) FailurePolicy { return FailurePolicy{source: SourceLocal, local: f} }

// localLimiter is FailLocal's in-process state: per identifier, a GCRA "theoretical arrival
// time" per limit, in local nanoseconds.
type localLimiter struct {
	mu        sync.Mutex
	instances int64
	states    lru[entryKey, *localState] // by identifier
}

// localState is one identifier's state: one entry per limit key the identifier was decided under,
// as Redis keeps one key per limit, so that a limit is enforced once whatever other limits a
// request names with it.
type localState struct {
	limits []localLimit
}

// localLimit is the state of one limit key: the limit that last wrote it, and its tat.
type localLimit struct {
	key   entryKey // the limit's Redis key, hashed
	limit Limit
	tat   int64
}

// maxLocalLimits bounds the limit keys kept per identifier; past it, the one whose bucket is
// fullest goes.
const maxLocalLimits = 64

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

// decide makes the decision r asks for at now (local nanoseconds), whose limits have the Redis
// keys keys, all-or-nothing over the limits that enforce as the scripts do, and fills out with
// each limit's verdict. A limit in shadow mode (Limit.Shadow, or every limit with shadowMode)
// takes no part in the all-or-nothing, and counts the request when it admits it.
func (ll *localLimiter) decide(r *request, keys []string, shadowMode bool, now int64) {
	n, limits, out := r.n, r.limits, r.out
	id := hashKey(r.key)
	ll.mu.Lock()
	defer ll.mu.Unlock()
	st, ok := ll.states.get(id)
	if !ok {
		st = &localState{}
		ll.states.put(id, st)
	}
	// Each limit's state as the limit asked for reads it: none yet, its own, or, for a limit
	// changed since it was written, carried over to it, which an admission writes (a refusal
	// writes nothing, as in Redis).
	at := make([]int, len(limits)) // where each limit's state is in st.limits; -1 for none
	tats := make([]int64, len(limits))
	for i, lim := range limits {
		at[i] = st.find(hashKey(keys[i]))
		if j := at[i]; j >= 0 {
			tats[i] = ll.carryOver(st.limits[j].limit, lim, st.limits[j].tat, now)
		}
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
	take := all && !r.peek
	for i, lim := range limits {
		emission, capacity := ll.bucket(lim)
		tat := max(tats[i], now)
		if take && out[i].Allowed {
			tat = next[i]
		}
		if take {
			if j := at[i]; j >= 0 {
				st.limits[j].limit, st.limits[j].tat = lim, tat
			} else {
				st.limits = append(st.limits, localLimit{key: hashKey(keys[i]), limit: lim, tat: tat})
			}
		}
		out[i].Remaining = max(0, (satMul(emission, capacity)-(tat-now))/emission)
		out[i].ResetAfter = roundUpMicros(tat - now)
	}
	for len(st.limits) > maxLocalLimits {
		st.dropFullest()
	}
}

// forget drops what the fallback counted for the identifier id under the limits whose Redis keys
// are keys (Reset): its other limits, and other identifiers, keep theirs.
func (ll *localLimiter) forget(id string, keys []string) {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	st, ok := ll.states.get(hashKey(id))
	if !ok {
		return
	}
	for _, k := range keys {
		if j := st.find(hashKey(k)); j >= 0 {
			st.limits = slices.Delete(st.limits, j, j+1)
		}
	}
}

// find returns the index of the state of the limit key k in s.limits, or -1.
func (s *localState) find(k entryKey) int {
	for j := range s.limits {
		if s.limits[j].key == k {
			return j
		}
	}
	return -1
}

// dropFullest forgets the limit whose bucket is the fullest (its tat the earliest).
func (s *localState) dropFullest() {
	j := 0
	for i := range s.limits {
		if s.limits[i].tat < s.limits[j].tat {
			j = i
		}
	}
	s.limits = slices.Delete(s.limits, j, j+1)
}

// carryOver returns tat, written under the limit old, read under lim at now: the same when the
// local buckets are the same; else what was used under old is kept, as the scripts do: the tokens
// it owed, rounded up and capped at the new capacity, owed under lim from now on. Starting afresh
// instead would give a client whose requests alternate between two limits sharing a key (a tier
// changed, per-route limits of one name) a full bucket at every request.
func (ll *localLimiter) carryOver(old, lim Limit, tat, now int64) int64 {
	oldEmission, oldCapacity := ll.bucket(old)
	emission, capacity := ll.bucket(lim)
	if debt := tat - now; debt > 0 && (emission != oldEmission || capacity != oldCapacity) {
		owed := min(debt/oldEmission+min(debt%oldEmission, 1), capacity)
		return satAdd(now, satMul(owed, emission))
	}
	return tat
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
