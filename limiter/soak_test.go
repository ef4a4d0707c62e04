package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/leaktest"
	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redisfail"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// The soak test's knobs.
const (
	soakDefault        = 20 * time.Second // of traffic, without GATEHOUSE_SOAK
	soakHotKeys        = 16               // identifiers hammered: their limits bind, and the model checks them
	soakWideKeys       = 512              // identifiers seen now and then: they fill the deny cache and the local fallback
	soakLimiterWorkers = 32
	soakSessionWorkers = 8
	soakDenyEntries    = 16 // WithDenyCache's bound
	soakLocalKeys      = 16 // the small local fallback's MaxKeys
	soakTimeout        = 250 * time.Millisecond
	soakCooldown       = 500 * time.Millisecond
	soakRecoverWait    = 20 * time.Second // the longest wait for traffic to succeed again after a fault
	soakTail           = 4 * time.Second  // no fault starts later than this before the traffic ends
	soakHeapBound      = 8 << 20          // bytes the live heap may grow by over the soak (see TestSoak)
	soakMaxOps         = 100_000_000      // per worker: a bound on each loop besides its deadline
)

// soakLimits are the limit sets every algorithm decides: one limit, one with a burst (the token
// bucket's), and two at once through AllowAll. Their names keep each on a key of its own.
var soakLimits = [][]limiter.Limit{
	{limiter.Per(4, time.Second).WithName("a")},
	{limiter.Per(10, 2*time.Second).WithBurst(5).WithName("b")},
	{limiter.Per(3, 500*time.Millisecond).WithName("s"), limiter.Per(12, 3*time.Second).WithName("l")},
}

// soakVariant is one configuration of a limiter, and what the checks expect of it.
type soakVariant struct {
	name string
	opts []limiter.Option
	// policy: a failure policy stands in for Redis when it fails; no Redis failure is returned.
	policy bool
	// localExact: the local fallback has room for every identifier the soak uses, so its own
	// admissions are checked against its token buckets.
	localExact bool
}

// soakVariants are the limiters the soak runs, each for every algorithm, all sharing the
// algorithm's keys. This is the one place the soak names limiter options.
func soakVariants() []soakVariant {
	policy := func(o ...limiter.Option) []limiter.Option {
		return append(o, limiter.WithTimeout(soakTimeout), limiter.WithCooldown(soakCooldown), limiter.WithLogger(slog.New(slog.DiscardHandler)))
	}
	return []soakVariant{
		{name: "plain"},
		{name: "auto+open+deny", policy: true,
			opts: policy(limiter.WithAutoPipeline(), limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithDenyCache(soakDenyEntries))},
		{name: "local+deny", policy: true, localExact: true,
			opts: policy(limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})), limiter.WithDenyCache(soakDenyEntries))},
		{name: "auto+local16", policy: true,
			opts: policy(limiter.WithAutoPipeline(), limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{MaxKeys: soakLocalKeys})))},
	}
}

// soakStore is the session store of the soak: the one place it names session options.
func soakStore(t *testing.T, c redis.UniversalClient, prefix string) *session.Store {
	st, err := session.NewStore(c, session.WithKeyPrefix(prefix), session.WithTimeout(400*time.Millisecond),
		session.WithIdleTimeout(2*time.Minute), session.WithLifetime(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// soakClient is how the soak's clients are set: no retries (a call either reached Redis once or
// failed), and timeouts of a second, so that a stalled server fails calls in bounded time.
func soakClient(o *redis.Options) {
	o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = time.Second, time.Second, 2*time.Second
}

// TestSoak runs mixed traffic against a private server that is paused (SIGSTOP, CLIENT PAUSE),
// restarted (SIGKILL, its data lost) and has its script cache flushed at random moments, seeded:
// limiter decisions from 32 goroutines, over every algorithm, three limit sets (one limit, one
// with a burst, two at once), plain and auto-pipelined, returning errors, failing open with a
// deny cache, and falling back to local decisions (one fallback with room for everyone, one of 16
// identifiers); and session traffic from 8 goroutines (create, load, save, rotate, login, list,
// destroy). It runs 20 seconds, or GATEHOUSE_SOAK (a duration: GATEHOUSE_SOAK=10m, with a go test
// -timeout to match); GATEHOUSE_SOAK_SEED repeats a schedule. Then it checks:
//
//   - every limit held: the decisions Redis was said to admit, by the instants they were made
//     within, never exceed any limit (per aligned window for the windows, over any span shorter
//     than the period for the sliding log, tokens over any span for the token bucket), each
//     restart allowing one fresh quota; the local fallback's admissions never exceed its buckets;
//   - no error but Redis' failures reached a caller, and none through a failure policy;
//   - a save landed whole or not at all, and no session was lost but by a restart or a write
//     that failed;
//   - traffic resumed after every fault (the figures: how long after it ended);
//   - no key without an expiry, after every fault and at the end;
//   - the deny caches and the small local fallback stayed within their bounds (and reached them);
//   - the live heap grew by less than soakHeapBound: the model's records are dropped first, the
//     bounded caches stay full, so growth proportional to traffic fails it (about 100 bytes a
//     decision over the short run, a few bytes over ten minutes);
//   - every goroutine started since the test began has ended once the clients are closed.
func TestSoak(t *testing.T) {
	dur, seed := soakSettings(t)
	srv, _ := redistest.Private(t)
	leaks := leaktest.Take()
	ctx := context.Background()

	admin := redistest.ClientFor(t, srv.Addr, func(o *redis.Options) { o.MaxRetries = 3 })
	lc := redistest.ClientFor(t, srv.Addr, soakClient)
	sc := redistest.ClientFor(t, srv.Addr, soakClient)
	prefix := redistest.Prefix(t)
	w := &soakWorld{t: t, srv: srv, admin: admin, prefix: prefix, store: soakStore(t, sc, prefix+"s:"), variants: soakVariants()}
	for a, alg := range limitertest.Algorithms {
		w.lims = append(w.lims, nil)
		for _, v := range w.variants {
			l, err := limiter.New(lc, alg, append(slices.Clone(v.opts), limiter.WithKeyPrefix(prefix+"rl:"))...)
			if err != nil {
				t.Fatal(err)
			}
			w.lims[a] = append(w.lims[a], l)
		}
	}

	// A short warm-up, without faults, so that pools, scripts and caches are in use before the
	// heap is measured; its results are not kept.
	w.run(ctx, 2*time.Second, seed^0x5eed, false)
	heapBefore, inuseBefore := liveHeap()
	gBefore := runtime.NumGoroutine()
	connsBefore := lc.PoolStats().TotalConns + sc.PoolStats().TotalConns

	start := time.Now()
	res := w.run(ctx, dur, seed, true)
	t.Logf("soak: %v of traffic (seed %d) took %v", dur, seed, time.Since(start).Round(time.Millisecond))

	// Every limit held.
	modelChecked, violations := checkSoakModel(res.admissions, res.restarts, w.variants)
	for i, v := range violations {
		if i == 10 {
			t.Errorf("... and %d more over-admissions", len(violations)-10)
			break
		}
		t.Errorf("over-admission: %s", v)
	}
	if modelChecked.admissions == 0 || modelChecked.spans == 0 {
		t.Errorf("the model checked %d admissions over %d spans: the soak admitted nothing it could check", modelChecked.admissions, modelChecked.spans)
	}
	for _, e := range res.unexpected {
		t.Error(e)
	}
	if res.unexpectedCount > len(res.unexpected) {
		t.Errorf("... and %d more unexpected outcomes", res.unexpectedCount-len(res.unexpected))
	}

	// No key without an expiry.
	scanned, missing, err := redistest.KeysWithoutExpiry(ctx, admin, prefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	missing = append(missing, res.missingExpiry...)
	for _, k := range missing {
		t.Errorf("key %q has no expiry", k)
	}
	if scanned == 0 {
		t.Error("SCAN found no key of the soak's: the expiry check saw nothing")
	}

	// The bounded caches.
	for _, e := range res.bounds.errs {
		t.Error(e)
	}
	if res.bounds.denyMax != soakDenyEntries || res.bounds.localMax != soakLocalKeys {
		t.Errorf("largest deny cache %d entries (bound %d), largest small local fallback %d identifiers (bound %d): "+
			"each should have reached its bound, to show the bound held under pressure", res.bounds.denyMax, soakDenyEntries, res.bounds.localMax, soakLocalKeys)
	}

	res.report(t, modelChecked, scanned)
	res.admissions = nil // the model's records, before the heap is measured again

	var localHeld int // identifier and limit-set states the local fallbacks with room for all hold
	for a := range w.lims {
		for v, l := range w.lims[a] {
			if w.variants[v].localExact {
				n, _, _ := limiter.LocalFallbackSize(l)
				localHeld += n
			}
		}
	}
	heapAfter, inuseAfter := liveHeap()
	t.Logf("soak: live heap %.1f MiB before the soak, %.1f MiB after it (in use %.1f, %.1f MiB), the clients' pools holding %d and %d connections, "+
		"the local fallbacks with room for all %d states of the %d they may hold; goroutines %d before, %d at the end of the traffic",
		mib(heapBefore), mib(heapAfter), mib(inuseBefore), mib(inuseAfter), connsBefore, lc.PoolStats().TotalConns+sc.PoolStats().TotalConns,
		localHeld, len(w.lims)*(soakHotKeys+soakWideKeys)*len(soakLimits), gBefore, res.goroutinesAtEnd)
	if heapAfter > heapBefore+soakHeapBound {
		t.Errorf("live heap grew from %.1f MiB to %.1f MiB over the soak, more than the %.0f MiB allowed", mib(heapBefore), mib(heapAfter), mib(soakHeapBound))
	}
	runtime.KeepAlive(w)

	lc.Close()
	sc.Close()
	admin.Close()
	// The goroutines that watch the server's process (started anew by each restart) live as long
	// as it does.
	waited := leaks.Check(t, 10*time.Second, redistest.ServerGoroutines...)
	heapClosed, _ := liveHeap()
	t.Logf("soak: clients closed: every goroutine started by the soak ended within %v; live heap %.1f MiB", waited.Round(time.Millisecond), mib(heapClosed))
}

// soakSettings returns the duration (GATEHOUSE_SOAK, else soakDefault) and the seed
// (GATEHOUSE_SOAK_SEED, else the clock's), and logs both.
func soakSettings(t *testing.T) (time.Duration, uint64) {
	dur := soakDefault
	if v := os.Getenv("GATEHOUSE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("GATEHOUSE_SOAK=%q: want a positive duration such as 10m", v)
		}
		dur = d
		if deadline, ok := t.Deadline(); ok && time.Until(deadline) < dur+2*time.Minute {
			t.Fatalf("GATEHOUSE_SOAK=%v does not fit in the test binary's -timeout: pass -timeout %v or more", dur, (dur + 5*time.Minute).Round(time.Minute))
		}
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("GATEHOUSE_SOAK_SEED"); v != "" {
		if _, err := fmt.Sscan(v, &seed); err != nil {
			t.Fatalf("GATEHOUSE_SOAK_SEED=%q: want an unsigned integer", v)
		}
	}
	t.Logf("soak: %v of traffic, seed %d (GATEHOUSE_SOAK_SEED=%d repeats the choices of faults and traffic)", dur, seed, seed)
	return dur, seed
}

// liveHeap returns, after two collections, the bytes of live objects and of heap spans in use.
func liveHeap() (alloc, inuse uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.HeapInuse
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// soakWorld is what the soak's goroutines share.
type soakWorld struct {
	t        *testing.T
	srv      *redistest.Server
	admin    *redis.Client
	prefix   string
	store    *session.Store
	variants []soakVariant
	lims     [][]*limiter.Limiter // by algorithm, then variant

	restarts atomic.Int64                        // how many times the server was killed
	recov    [nTrackers]atomic.Pointer[recovery] // armed at the end of each fault
}

// Traffic that shows Redis is back after a fault.
const (
	trackPlain   = iota // a decision by Redis of a limiter without a failure policy
	trackPolicy         // a decision by Redis of a limiter with one (after its cooldown)
	trackSession        // a session operation that succeeded
	nTrackers
)

var trackerNames = [nTrackers]string{"limiter", "limiter with a policy", "session"}

// recovery records the first success of traffic that started after a fault ended.
type recovery struct {
	since int64        // when the fault ended, µs
	at    atomic.Int64 // when the first call that started after since succeeded, µs; 0 until then
}

func (w *soakWorld) succeeded(tr int, start, end int64) {
	if r := w.recov[tr].Load(); r != nil && start >= r.since && r.at.Load() == 0 {
		r.at.CompareAndSwap(0, end)
	}
}

// soakResult is what a run found.
type soakResult struct {
	mu              sync.Mutex
	admissions      []soakAdmission
	restarts        []soakRestart
	faults          []soakFault
	lim             []limiterTally // by variant
	sess            map[string]int64
	unexpected      []string
	unexpectedCount int
	missingExpiry   []string
	bounds          boundsSeen
	goroutinesAtEnd int
	ops             int64
	sessionOps      int64
	elapsed         time.Duration
}

func (r *soakResult) unexpectedf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unexpectedCount++
	if len(r.unexpected) < 20 {
		r.unexpected = append(r.unexpected, fmt.Sprintf(format, args...))
	}
}

// soakAdmission is a decision that admitted a request of a hot identifier.
type soakAdmission struct {
	start, end int64 // µs since the epoch: the decision was made within [start, end]
	cost       int64
	alg, set   uint8
	key        uint8
	variant    uint8
	local      bool // by the local fallback, not by Redis
}

// soakRestart is a kill of the server and its start again, µs since the epoch.
type soakRestart struct{ kill, started int64 }

type soakFault struct {
	kind      string
	lasted    time.Duration
	recovered [nTrackers]time.Duration // after the fault ended; -1: not seen within soakRecoverWait
}

// limiterTally counts one variant's decisions.
type limiterTally struct {
	decisions map[string]int64 // "redis allowed", "fail_open allowed", "local denied", ...
	errors    map[string]int64 // by failure kind
}

func (lt *limiterTally) add(o *limiterTally) {
	if lt.decisions == nil {
		lt.decisions, lt.errors = map[string]int64{}, map[string]int64{}
	}
	for k, v := range o.decisions {
		lt.decisions[k] += v
	}
	for k, v := range o.errors {
		lt.errors[k] += v
	}
}

// boundsSeen is what the sampler saw of the bounded caches.
type boundsSeen struct {
	denyMax, localMax int
	errs              []string
}

// run runs the traffic for dur (and the faults, with faults set), and returns what it saw.
func (w *soakWorld) run(ctx context.Context, dur time.Duration, seed uint64, faults bool) *soakResult {
	res := &soakResult{lim: make([]limiterTally, len(w.variants)), sess: map[string]int64{}}
	start := time.Now()
	until := start.Add(dur)
	faultsDone := make(chan struct{})
	var wg sync.WaitGroup
	for i := range soakLimiterWorkers {
		wg.Go(func() { w.limiterWorker(ctx, rand.New(rand.NewPCG(seed, uint64(i))), until, res) })
	}
	for i := range soakSessionWorkers {
		wg.Go(func() {
			c := &soakChain{w: w, res: res, rng: rand.New(rand.NewPCG(seed, uint64(1000+i))), user: fmt.Sprintf("user-%d", i)}
			c.run(ctx, until, faultsDone)
		})
	}
	stopSampler := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() { w.sample(stopSampler, &res.bounds) })
	if faults {
		w.faults(ctx, rand.New(rand.NewPCG(seed, 1<<32)), until, res)
	}
	res.goroutinesAtEnd = runtime.NumGoroutine()
	close(faultsDone)
	wg.Wait()
	close(stopSampler)
	sampler.Wait()
	res.elapsed = time.Since(start)
	return res
}

// limiterWorker makes decisions until until, each with a random algorithm, variant, limit set,
// identifier and cost, and records what it was told.
func (w *soakWorld) limiterWorker(ctx context.Context, rng *rand.Rand, until time.Time, res *soakResult) {
	tallies := make([]limiterTally, len(w.variants))
	for i := range tallies {
		tallies[i] = limiterTally{decisions: map[string]int64{}, errors: map[string]int64{}}
	}
	var adms []soakAdmission
	var ops int64
	out := [2]string{"denied", "allowed"}
	for ; ops < soakMaxOps && time.Now().Before(until); ops++ {
		a, v, set := rng.IntN(len(w.lims)), rng.IntN(len(w.variants)), rng.IntN(len(soakLimits))
		hot := rng.IntN(10) < 7
		key := rng.IntN(soakHotKeys)
		id := fmt.Sprintf("hot-%d", key)
		if !hot {
			id = fmt.Sprintf("wide-%d", rng.IntN(soakWideKeys))
		}
		cost := int64(1)
		if rng.IntN(10) == 0 {
			cost = 2
		}
		lim, variant, limits := w.lims[a][v], w.variants[v], soakLimits[set]
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a backstop; the clients' timeouts come first
		t0 := time.Now().UnixMicro()
		var r limiter.Result
		var err error
		if len(limits) == 1 {
			r, err = lim.AllowN(cctx, id, limits[0], cost)
		} else {
			r, err = lim.AllowAll(cctx, id, cost, limits...)
		}
		t1 := time.Now().UnixMicro()
		cancel()
		if err != nil {
			kind := redisfail.Classify(err)
			tallies[v].errors[failureKind(err)]++
			if variant.policy || !kind.Failed() {
				res.unexpectedf("%s %s: error %v (a %s failure) reached the caller", limitertest.Algorithms[a], variant.name, err, kind)
			}
			continue
		}
		b2i := 0
		if r.Allowed {
			b2i = 1
		}
		what := r.Source.String() + " " + out[b2i]
		if r.Err != nil {
			what += " (" + failureKind(r.Err) + ")"
		}
		tallies[v].decisions[what]++
		switch {
		case r.Source == limiter.SourceRedis && r.Err != nil, r.Source != limiter.SourceRedis && r.Source != limiter.SourceDenyCache && r.Err == nil:
			res.unexpectedf("%s %s: source %v with Err %v", limitertest.Algorithms[a], variant.name, r.Source, r.Err)
		case r.Source == limiter.SourceDenyCache && r.Allowed:
			res.unexpectedf("%s %s: the deny cache admitted a request", limitertest.Algorithms[a], variant.name)
		}
		if r.Source == limiter.SourceRedis {
			tr := trackPlain
			if variant.policy {
				tr = trackPolicy
			}
			w.succeeded(tr, t0, t1)
		}
		if !r.Allowed || !hot {
			continue
		}
		switch {
		case r.Source == limiter.SourceRedis:
			adms = append(adms, soakAdmission{start: t0, end: t1, cost: cost, alg: uint8(a), set: uint8(set), key: uint8(key), variant: uint8(v)})
		case r.Source == limiter.SourceLocal && variant.localExact:
			adms = append(adms, soakAdmission{start: t0, end: t1, cost: cost, alg: uint8(a), set: uint8(set), key: uint8(key), variant: uint8(v), local: true})
		}
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	res.admissions = append(res.admissions, adms...)
	res.ops += ops
	for i := range tallies {
		res.lim[i].add(&tallies[i])
	}
}

// sample reads the sizes of the deny caches and local fallbacks every 20ms until stop.
func (w *soakWorld) sample(stop <-chan struct{}, seen *boundsSeen) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	check := func(what string, l *limiter.Limiter, size func(*limiter.Limiter) (int, int, int)) int {
		mapped, listed, bound := size(l)
		if (mapped != listed || mapped > bound) && len(seen.errs) < 10 {
			seen.errs = append(seen.errs, fmt.Sprintf("%s of %s: %d entries mapped, %d listed, bound %d", what, l.Algorithm(), mapped, listed, bound))
		}
		return mapped
	}
	for {
		for a := range w.lims {
			for v, l := range w.lims[a] {
				if n := check("deny cache", l, limiter.DenyCacheSize); n > 0 {
					seen.denyMax = max(seen.denyMax, n)
				}
				n := check("local fallback", l, limiter.LocalFallbackSize)
				if _, _, bound := limiter.LocalFallbackSize(l); w.variants[v].localExact && n >= bound && bound > 0 && len(seen.errs) < 10 {
					seen.errs = append(seen.errs, fmt.Sprintf("the local fallback of %s %s filled up (%d identifiers): its admissions cannot be checked exactly", l.Algorithm(), w.variants[v].name, n))
				} else if !w.variants[v].localExact {
					seen.localMax = max(seen.localMax, n)
				}
			}
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// faults breaks the server at random moments until until: it pauses it (SIGSTOP, or CLIENT
// PAUSE), restarts it or flushes its scripts, then waits for traffic to succeed again and checks
// that every key has an expiry. The first four faults are one of each kind.
func (w *soakWorld) faults(ctx context.Context, rng *rand.Rand, until time.Time, res *soakResult) {
	t := w.t
	kinds := []string{"pause", "client-pause", "restart", "script-flush"}
	order := rng.Perm(len(kinds))
	ms := func(lo, hi int64) time.Duration { return time.Duration(lo+rng.Int64N(hi-lo)) * time.Millisecond }
	for i := 0; i < 100_000; i++ {
		// A fault starts only while there is time for it (1.5s at most), and for the traffic to
		// show it is over, before the traffic stops. Pauses and restarts outlast soakTimeout, so
		// that calls fail and the failure policies decide.
		gap := ms(200, 1200)
		if time.Until(until) < gap+soakTail {
			return
		}
		time.Sleep(gap)
		kind := kinds[rng.IntN(len(kinds))]
		if i < len(kinds) {
			kind = kinds[order[i]]
		}
		began := time.Now()
		var err error
		switch kind {
		case "pause": // longer than soakTimeout, so that calls fail and policies decide
			if err = w.srv.Pause(); err == nil {
				time.Sleep(ms(600, 1500))
				err = w.srv.Resume()
			}
		case "client-pause":
			d := ms(600, 1500)
			if err = w.admin.Do(ctx, "CLIENT", "PAUSE", d.Milliseconds(), "ALL").Err(); err == nil {
				time.Sleep(d)
				err = w.admin.Do(ctx, "CLIENT", "UNPAUSE").Err()
			}
		case "restart":
			w.restarts.Add(1)
			kill := time.Now().UnixMicro()
			w.srv.Stop()
			time.Sleep(ms(200, 800))
			err = w.srv.Start()
			res.restarts = append(res.restarts, soakRestart{kill: kill, started: time.Now().UnixMicro()})
		case "script-flush":
			err = w.admin.ScriptFlush(ctx).Err()
		}
		if err != nil {
			t.Errorf("fault %d (%s): %v", i, kind, err)
			return
		}
		ended := time.Now()
		f := soakFault{kind: kind, lasted: ended.Sub(began)}
		armed := make([]*recovery, nTrackers)
		for tr := range nTrackers {
			armed[tr] = &recovery{since: ended.UnixMicro()}
			w.recov[tr].Store(armed[tr])
		}
		for tr := range nTrackers {
			f.recovered[tr] = -1
		}
		// Every fault ends at least 2.5s before the traffic stops: time enough to see it resume.
		deadline := ended.Add(soakRecoverWait)
		if until.Before(deadline) {
			deadline = until
		}
		for ; ; time.Sleep(10 * time.Millisecond) {
			done := true
			for tr, r := range armed {
				if at := r.at.Load(); at != 0 {
					f.recovered[tr] = time.Duration(at-r.since) * time.Microsecond
				} else {
					done = false
				}
			}
			if done || time.Now().After(deadline) {
				break
			}
		}
		for tr, d := range f.recovered {
			if d < 0 {
				t.Errorf("fault %d (%s): no %s succeeded within %v after it ended", i, kind, trackerNames[tr], deadline.Sub(ended).Round(time.Millisecond))
			}
		}
		res.faults = append(res.faults, f)
		_, missing, err := redistest.KeysWithoutExpiry(ctx, w.admin, w.prefix+"*")
		if err != nil {
			t.Errorf("after fault %d (%s): scanning the keys: %v", i, kind, err)
		}
		res.missingExpiry = append(res.missingExpiry, missing...)
	}
}

// soakChain is one client's session, used by one goroutine: it checks what each operation
// returns against what it knows was written.
type soakChain struct {
	w    *soakWorld
	res  *soakResult
	rng  *rand.Rand
	user string

	tok      session.Token
	have     bool             // a session is believed stored under tok
	s        *session.Session // as last loaded or written; nil: load it first
	value    int64            // the value of its attributes a, b and c, as last confirmed
	maybe    []int64          // values of saves that failed since it began: any may have landed
	tainted  bool             // a write failed since it began: it may have moved or ended unseen
	epoch    int64            // the server's restarts before it began
	signedIn bool
	seq      int64
	tally    map[string]int64
}

// run steps the chain until until, then, once the faults are over, checks its session once more.
func (c *soakChain) run(ctx context.Context, until time.Time, faultsDone <-chan struct{}) {
	c.tally = map[string]int64{}
	var ops int64
	for ; ops < soakMaxOps && time.Now().Before(until); ops++ {
		c.step(ctx)
	}
	<-faultsDone
	// The server is up and unpaused: the session must load, unless a restart or a failed write
	// explains it (a few tries, for connections broken by the last fault).
	for try := 0; try < 5 && c.have; try++ {
		c.s = nil
		if c.load(ctx, "final load") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.res.mu.Lock()
	defer c.res.mu.Unlock()
	c.res.sessionOps += ops
	for k, v := range c.tally {
		c.res.sess[k] += v
	}
}

func (c *soakChain) step(ctx context.Context) {
	switch r := c.rng.IntN(100); {
	case !c.have:
		c.create(ctx)
	case c.s == nil, r < 40:
		c.load(ctx, "load")
	case r < 75:
		c.save(ctx)
	case r < 85:
		c.write(ctx, "rotate", func(ctx context.Context) error { return c.w.store.Rotate(ctx, c.s) })
	case r < 90 && !c.signedIn:
		if c.write(ctx, "login", func(ctx context.Context) error { return c.w.store.Login(ctx, c.s, c.user) }) {
			c.signedIn = true
		}
	case r < 95:
		c.list(ctx)
	default:
		if c.write(ctx, "destroy", func(ctx context.Context) error { return c.w.store.Destroy(ctx, c.s) }) {
			c.have = false
		}
	}
}

// call runs op with a backstop deadline, counts its outcome, and returns its error.
func (c *soakChain) call(ctx context.Context, name string, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t0 := time.Now().UnixMicro()
	err := op(ctx)
	outcome := "ok"
	switch {
	case err == nil:
		c.w.succeeded(trackSession, t0, time.Now().UnixMicro())
	case errors.Is(err, session.ErrUnavailable):
		outcome = redisfail.Classify(err).String()
	case errors.Is(err, session.ErrNotFound):
		outcome = "not found"
	case errors.Is(err, session.ErrConflict):
		outcome = "conflict"
	default:
		outcome = "unexpected"
		c.res.unexpectedf("session %s: unexpected error %v", name, err)
	}
	c.tally[name+" "+outcome]++
	return err
}

// explained reports whether the session may be gone: a restart since it began, or a failed write.
func (c *soakChain) explained() bool { return c.tainted || c.w.restarts.Load() > c.epoch }

// lost handles ErrNotFound or ErrConflict from op: a loss nothing explains is reported. The chain
// starts again.
func (c *soakChain) lost(op string, err error) {
	if !c.explained() {
		c.res.unexpectedf("session %s: %v although no restart and no failed write could explain it", op, err)
	}
	c.have = false
}

func (c *soakChain) create(ctx context.Context) {
	epoch := c.w.restarts.Load()
	s, err := c.w.store.New()
	if err != nil {
		c.res.unexpectedf("session New: %v", err)
		return
	}
	c.seq++
	c.put(s, c.seq)
	if c.call(ctx, "create", func(ctx context.Context) error { return c.w.store.Save(ctx, s) }) != nil {
		return // it may or may not exist: forgotten, it expires
	}
	*c = soakChain{w: c.w, res: c.res, rng: c.rng, user: c.user, seq: c.seq, tally: c.tally,
		tok: s.Token(), have: true, s: s, value: c.seq, epoch: epoch}
}

func (c *soakChain) put(s *session.Session, v int64) {
	for _, name := range []string{"a", "b", "c"} {
		if err := s.Put(name, v); err != nil {
			c.res.unexpectedf("session Put: %v", err)
		}
	}
}

// load loads the session and checks its attributes; it reports whether Redis answered.
func (c *soakChain) load(ctx context.Context, name string) bool {
	var s *session.Session
	err := c.call(ctx, name, func(ctx context.Context) (err error) { s, err = c.w.store.Load(ctx, c.tok); return err })
	switch {
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrConflict):
		c.lost(name, err)
		return true
	case err != nil:
		return false
	}
	a, b, v := s.GetInt64("a"), s.GetInt64("b"), s.GetInt64("c")
	switch {
	case a != b || b != v:
		c.res.unexpectedf("session %s: attributes a, b, c = %d, %d, %d: a save landed in part", name, a, b, v)
	case a != c.value && !slices.Contains(c.maybe, a):
		c.res.unexpectedf("session %s: attributes hold %d, want %d or one of the failed saves %v", name, a, c.value, c.maybe)
	}
	c.s, c.value = s, a
	return true
}

func (c *soakChain) save(ctx context.Context) {
	c.seq++
	c.put(c.s, c.seq)
	err := c.call(ctx, "save", func(ctx context.Context) error { return c.w.store.Save(ctx, c.s) })
	switch {
	case err == nil:
		c.value = c.seq
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrConflict):
		c.lost("save", err)
	default:
		c.failed()
		c.maybe = append(c.maybe, c.seq)
	}
}

// write runs a Rotate, Login or Destroy of the session and reports whether it succeeded.
func (c *soakChain) write(ctx context.Context, name string, op func(context.Context) error) bool {
	err := c.call(ctx, name, op)
	switch {
	case err == nil:
		c.tok = c.s.Token()
		return true
	case errors.Is(err, session.ErrNotFound), errors.Is(err, session.ErrConflict):
		c.lost(name, err)
	default:
		c.failed()
	}
	return false
}

// failed notes a write that failed: it may have happened, or not, or later. The session is loaded
// again before the next write; too many doubts and the chain starts afresh.
func (c *soakChain) failed() {
	c.tainted, c.s = true, nil
	if len(c.maybe) >= 32 {
		c.have = false
	}
}

// list checks that a signed-in session is listed among its user's.
func (c *soakChain) list(ctx context.Context) {
	if !c.signedIn {
		c.load(ctx, "load")
		return
	}
	var list []session.Metadata
	if c.call(ctx, "list", func(ctx context.Context) (err error) { list, err = c.w.store.ListByUser(ctx, c.user); return err }) != nil {
		return
	}
	key := c.s.Key()
	if !c.explained() && !slices.ContainsFunc(list, func(m session.Metadata) bool { return m.Key == key }) {
		c.res.unexpectedf("session list: the signed-in session is not among the %d listed for its user", len(list))
	}
}

// soakChecked is how much the model checked.
type soakChecked struct{ admissions, spans int }

// checkSoakModel checks every admission of a hot identifier against its limits: those Redis
// decided (by every variant, which share the keys) against the algorithm, those the exact local
// fallback decided against its token buckets. It returns how much it checked, and the
// over-admissions found.
func checkSoakModel(adms []soakAdmission, restarts []soakRestart, variants []soakVariant) (soakChecked, []string) {
	type group struct {
		alg, set, key uint8
		local         bool
		variant       uint8
	}
	groups := map[group][]soakAdmission{}
	for _, a := range adms {
		g := group{alg: a.alg, set: a.set, key: a.key, local: a.local}
		if a.local {
			g.variant = a.variant // each local fallback counts by itself
		}
		groups[g] = append(groups[g], a)
	}
	var checked soakChecked
	var violations []string
	for g, list := range groups {
		sort.Slice(list, func(i, j int) bool { return list[i].start < list[j].start })
		alg := limitertest.Algorithms[g.alg]
		for _, lim := range soakLimits[g.set] {
			what := fmt.Sprintf("%s %v, hot-%d", alg, lim, g.key)
			var spans int
			var v []string
			switch {
			case g.local:
				what = fmt.Sprintf("local fallback of %s %s: %v, hot-%d", alg, variants[g.variant].name, lim, g.key)
				spans, v = checkBucket(what, list, lim.Capacity(), lim, nil)
			case alg == limiter.FixedWindow, alg == limiter.SlidingWindow:
				spans, v = checkAlignedWindows(what, list, lim, restarts)
			case alg == limiter.SlidingLog:
				spans, v = checkSlidingSpans(what, list, lim, restarts)
			case alg == limiter.TokenBucket:
				spans, v = checkBucket(what, list, lim.Capacity(), lim, restarts)
			}
			checked.spans += spans
			violations = append(violations, v...)
		}
		checked.admissions += len(list)
	}
	return checked, violations
}

// lives returns how many lives of the server the span [a, b] may overlap: each restart in it
// (killed before b, started again after a) loses every count, and may give a fresh quota.
func lives(restarts []soakRestart, a, b int64) int64 {
	n := int64(1)
	for _, r := range restarts {
		if r.kill < b && r.started > a {
			n++
		}
	}
	return n
}

// checkAlignedWindows checks a fixed or sliding window: the admissions certainly made within one
// epoch-aligned window of the limit's period add up to at most its rate (the sliding window
// weighs the previous window in on top of that), per life of the server.
func checkAlignedWindows(what string, list []soakAdmission, lim limiter.Limit, restarts []soakRestart) (int, []string) {
	p := lim.Period.Microseconds()
	sums := map[int64]int64{}
	for _, a := range list {
		if w := a.start / p; w == a.end/p {
			sums[w] += a.cost
		}
	}
	var v []string
	for w, sum := range sums {
		if bound := lim.Rate * lives(restarts, w*p, (w+1)*p); sum > bound {
			v = append(v, fmt.Sprintf("%s: %d admitted in the window starting %s, bound %d",
				what, sum, time.UnixMicro(w*p).Format("15:04:05.000"), bound))
		}
	}
	return len(sums), v
}

// checkSlidingSpans checks a sliding log: admissions certainly made within less than the period of
// each other add up to at most its rate, per life of the server.
func checkSlidingSpans(what string, list []soakAdmission, lim limiter.Limit, restarts []soakRestart) (int, []string) {
	p := lim.Period.Microseconds()
	var v []string
	for i, first := range list {
		var sum int64
		for _, a := range list[i:] {
			if a.start >= first.start+p {
				break
			}
			if a.end < first.start+p {
				sum += a.cost
			}
		}
		if bound := lim.Rate * lives(restarts, first.start, first.start+p); sum > bound {
			v = append(v, fmt.Sprintf("%s: %d admitted within %v from %s, bound %d",
				what, sum, lim.Period, time.UnixMicro(first.start).Format("15:04:05.000000"), bound))
		}
	}
	return len(list), v
}

// checkBucket checks a token bucket of capacity tokens gaining lim.Rate per lim.Period: the
// admissions certainly made within a span of T add up to at most capacity + Rate × T / Period,
// plus capacity for each restart (nil restarts: state that is never lost, the local fallback's).
// Spans up to three periods are checked.
func checkBucket(what string, list []soakAdmission, capacity int64, lim limiter.Limit, restarts []soakRestart) (int, []string) {
	p := lim.Period.Microseconds()
	var v []string
	spans := 0
	for i, first := range list {
		var sum, last int64
		for _, a := range list[i:] {
			if a.start > first.start+3*p {
				break
			}
			sum += a.cost
			last = max(last, a.end)
			span := last - first.start
			spans++
			// sum <= capacity × lives + rate × span / period, in integers.
			if sum*p > capacity*lives(restarts, first.start, last)*p+lim.Rate*span {
				v = append(v, fmt.Sprintf("%s: %d admitted within %v from %s, bound %d + %d × %v / %v",
					what, sum, time.Duration(span)*time.Microsecond, time.UnixMicro(first.start).Format("15:04:05.000000"),
					capacity*lives(restarts, first.start, last), lim.Rate, time.Duration(span)*time.Microsecond, lim.Period))
				break
			}
		}
	}
	return spans, v
}

// report logs the soak's figures.
func (r *soakResult) report(t *testing.T, checked soakChecked, scanned int) {
	var b strings.Builder
	fmt.Fprintf(&b, "soak figures over %v: %d decisions (%.0f/s), %d session operations (%.0f/s)\n",
		r.elapsed.Round(time.Millisecond), r.ops, float64(r.ops)/r.elapsed.Seconds(), r.sessionOps, float64(r.sessionOps)/r.elapsed.Seconds())
	for i, v := range soakVariants() {
		fmt.Fprintf(&b, "  limiter %-16s decisions %v; errors %v\n", v.name, sortedCounts(r.lim[i].decisions), sortedCounts(r.lim[i].errors))
	}
	fmt.Fprintf(&b, "  sessions: %v\n", sortedCounts(r.sess))
	byKind := map[string][]soakFault{}
	for _, f := range r.faults {
		byKind[f.kind] = append(byKind[f.kind], f)
	}
	fmt.Fprintf(&b, "  faults: %d; restarts %d\n", len(r.faults), len(r.restarts))
	for _, kind := range []string{"pause", "client-pause", "restart", "script-flush"} {
		fs := byKind[kind]
		if len(fs) == 0 {
			continue
		}
		var lasted []time.Duration
		for _, f := range fs {
			lasted = append(lasted, f.lasted)
		}
		fmt.Fprintf(&b, "    %-12s x%-4d lasting %s; back after:", kind, len(fs), spread(lasted))
		for tr := range nTrackers {
			var ds []time.Duration
			for _, f := range fs {
				ds = append(ds, f.recovered[tr])
			}
			fmt.Fprintf(&b, " %s %s;", trackerNames[tr], spread(ds))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  model: %d admissions of hot identifiers checked over %d windows or spans\n", checked.admissions, checked.spans)
	fmt.Fprintf(&b, "  bounds: largest deny cache %d (bound %d), largest small local fallback %d (bound %d); %d keys scanned at the end\n",
		r.bounds.denyMax, soakDenyEntries, r.bounds.localMax, soakLocalKeys, scanned)
	t.Log(b.String())
}

func sortedCounts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// spread returns "median m, max x" of ds, rounded; negative durations (not seen) are counted apart.
func spread(ds []time.Duration) string {
	var seen []time.Duration
	for _, d := range ds {
		if d >= 0 {
			seen = append(seen, d)
		}
	}
	if len(seen) == 0 {
		return "never"
	}
	slices.Sort(seen)
	s := fmt.Sprintf("median %v, max %v", seen[len(seen)/2].Round(time.Millisecond), seen[len(seen)-1].Round(time.Millisecond))
	if n := len(ds) - len(seen); n > 0 {
		s += fmt.Sprintf(" (%d never)", n)
	}
	return s
}

// failureKind names the failure behind a policy's decision or an error: "redis.ErrClosed" (the
// client was closed), "cooldown" (Redis not asked), "closed connection" (the client closed it
// under the call), or redisfail's kind.
func failureKind(err error) string {
	switch {
	case errors.Is(err, redis.ErrClosed):
		return "redis.ErrClosed"
	case errors.Is(err, limiter.ErrUnavailable):
		return "cooldown"
	case errors.Is(err, net.ErrClosed):
		return "closed connection"
	}
	return redisfail.Classify(err).String()
}
