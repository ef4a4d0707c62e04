// Package harness runs rate limiters and session stores side by side against one private Redis
// server, in one run, interleaved: rounds of a fixed length per contender, repeated in rotating
// order, the median of the rounds reported. Per contender and concurrency it measures operations
// per second, client-side latency (p50, p99), allocations, Redis CPU, client CPU and bytes on the
// wire per operation, and the memory one identifier's state takes in Redis.
package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Op makes one operation (a rate-limit decision, an HTTP request through session middleware) for
// identifier k, in [0, Env.Keys). It returns an error when the operation failed or did not have
// the expected outcome (a limiter that refused: the limits are set never to be reached).
type Op func(ctx context.Context, k int) error

// Instance is a contender set up against the server.
type Instance struct {
	// Worker returns the operation one worker goroutine calls. It is called once per worker and
	// round, so that state a worker needs of its own (a response writer) lives in its closure.
	Worker func() Op
	// Close releases what the instance holds (clients it made); nil when nothing.
	Close func()
}

// Kind is what a contender is: a rate limiter or a session store.
type Kind string

// The kinds of contender.
const (
	Limiter Kind = "limiter"
	Session Kind = "session"
)

// LimitMode says how a limiter contender sets its limits. Both are never reached in a run.
type LimitMode string

const (
	// Persistent limits keep each identifier's state in Redis for the whole run, as for a client
	// that calls again well before its quota refills: every decision updates an existing key.
	Persistent LimitMode = "persistent"
	// HugeRate limits allow 2^30 per second, as the older harnesses did. A token bucket's state then
	// says "full" again within a microsecond and expires at once, so most decisions of a GCRA that
	// expires its key at the full-bucket instant (gatehouse) create a new key, while redis_rate's
	// whole-second TTL keeps its key.
	HugeRate LimitMode = "huge-rate"
)

// KeyPattern says how workers pick identifiers.
type KeyPattern string

const (
	// Random: each worker draws identifiers uniformly at random (its own xorshift sequence).
	Random KeyPattern = "random"
	// Lockstep: every worker walks the identifiers in the same order from the same start
	// (keys[i % len(keys)] with i counting from 1), as the b.RunParallel harness did, so that
	// concurrent decisions often share a key.
	Lockstep KeyPattern = "lockstep"
)

// Env is what a contender is set up with.
type Env struct {
	Client   *redis.Client // the go-redis client it must use (shared by all contenders, or its own)
	Addr     string        // the server, for libraries with a client of their own
	DB       int           // the database Client selects
	PoolSize int           // the connections Client has; libraries with their own client get as many
	Keys     int           // identifiers: operations use k in [0, Keys)
	Prefix   string        // a key prefix unique to this contender and variant
	Limits   LimitMode
}

// Contender is one library in one configuration.
type Contender struct {
	ID      string   // short and stable: "redis_rate", "gatehouse-tb-auto"
	Name    string   // for tables and charts
	Kind    Kind     // Limiter or Session
	Modules []string // module paths whose versions are reported
	Pool    string   // the connections it is given, and what else it could be given
	Notes   string   // what a reader should know to judge its figures
	// Gatehouse marks gatehouse's own contenders (drawn in another colour).
	Gatehouse bool
	New       func(ctx context.Context, env Env) (*Instance, error)
}

// Variant is a setting of the harness under which contenders run: the defaults, or one factor
// changed to find out what moves a figure.
type Variant struct {
	Name       string
	PoolSize   int
	Separate   bool // each contender gets a client of its own instead of one shared by all
	Keys       int
	Pattern    KeyPattern
	Limits     LimitMode
	AutoPipe   *redis.AutoPipelineOptions // the client's auto-pipeliner options; nil for go-redis' defaults
	Goroutines []int                      // concurrency levels; nil for Config.Goroutines
	// Hogs is how many busy-looping processes run beside the contender during its rounds, to
	// see how a contender fares on a machine whose other work takes CPU.
	Hogs int
}

// Entry is a contender run under a variant.
type Entry struct {
	Contender Contender
	Variant   Variant
}

// Config is one run.
type Config struct {
	Addr        string        // the server, started by the caller
	Round       time.Duration // measured time per round
	Warmup      time.Duration // unmeasured time before each round's measurement
	Rounds      int           // rounds per contender and concurrency, in rotating order
	Goroutines  []int         // concurrency levels for entries whose variant sets none
	MemoryProbe int           // identifiers whose state is measured with MEMORY USAGE
	Entries     []Entry
	Log         io.Writer // progress; nil for none
}

// Run measures every entry and returns the figures. A contender that cannot be set up is
// reported in Report.Failed and left out; an operation that fails is counted in Result.Errors.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Rounds < 1 || cfg.Round <= 0 {
		return nil, errors.New("harness: need at least one round of positive length")
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	ctl := redis.NewClient(&redis.Options{Addr: cfg.Addr, PoolSize: 2})
	defer ctl.Close()
	if err := ctl.FlushAll(ctx).Err(); err != nil {
		return nil, fmt.Errorf("harness: FLUSHALL: %w", err)
	}
	rep := &Report{Started: time.Now().UTC()}
	var err error
	if rep.Machine, err = describeMachine(ctx, ctl); err != nil {
		return nil, err
	}

	clients := newClients(cfg.Addr)
	defer clients.closeAll()

	type live struct {
		Entry
		id   string
		env  Env
		inst *Instance
	}
	var entries []*live
	seen := map[string]bool{}
	for i, e := range cfg.Entries {
		id := e.Contender.ID
		if e.Variant.Name != "" {
			id += "@" + e.Variant.Name
		}
		if seen[id] {
			return nil, fmt.Errorf("harness: entry %s twice", id)
		}
		seen[id] = true
		env := Env{
			Addr: cfg.Addr, PoolSize: e.Variant.PoolSize, Keys: e.Variant.Keys,
			Prefix: fmt.Sprintf("b%d:", i), Limits: e.Variant.Limits,
		}
		info := ContenderInfo{
			ID: id, Contender: e.Contender.ID, Name: e.Contender.Name, Kind: e.Contender.Kind,
			Variant: e.Variant.Name, Gatehouse: e.Contender.Gatehouse, Pool: e.Contender.Pool,
			Notes: e.Contender.Notes, Versions: moduleVersions(e.Contender.Modules),
			Settings: VariantSettings{
				PoolSize: e.Variant.PoolSize, Separate: e.Variant.Separate, Keys: e.Variant.Keys,
				Pattern: string(e.Variant.Pattern), Limits: string(e.Variant.Limits), Hogs: e.Variant.Hogs,
			},
		}
		if e.Contender.Kind == Session {
			info.Settings.Limits = ""
		}
		if ap := e.Variant.AutoPipe; ap != nil {
			info.Settings.AutoPipeline = fmt.Sprintf("%+v", *ap)
		}
		mem, err := probeMemory(ctx, cfg, e, env)
		if err != nil {
			rep.Failed = append(rep.Failed, Failure{ID: id, Name: e.Contender.Name, Reason: err.Error()})
			logf("%s: left out: %v", id, err)
			continue
		}
		info.MemoryPerID, info.KeysPerID = mem.bytes, mem.keys
		env.Client = clients.get(e.Variant, id)
		inst, err := e.Contender.New(ctx, env)
		if err != nil {
			rep.Failed = append(rep.Failed, Failure{ID: id, Name: e.Contender.Name, Reason: err.Error()})
			logf("%s: left out: %v", id, err)
			continue
		}
		rep.Contenders = append(rep.Contenders, info)
		entries = append(entries, &live{Entry: e, id: id, env: env, inst: inst})
	}
	defer func() {
		for _, l := range entries {
			if l.inst.Close != nil {
				l.inst.Close()
			}
		}
	}()

	// Groups of entries that run interleaved: one kind at one concurrency level.
	type group struct {
		kind Kind
		g    int
	}
	byGroup := map[group][]*live{}
	var groups []group
	for _, l := range entries {
		levels := l.Variant.Goroutines
		if levels == nil {
			levels = cfg.Goroutines
		}
		for _, g := range levels {
			k := group{l.Contender.Kind, g}
			if _, ok := byGroup[k]; !ok {
				groups = append(groups, k)
			}
			byGroup[k] = append(byGroup[k], l)
		}
	}
	sort.SliceStable(groups, func(i, j int) bool {
		if groups[i].kind != groups[j].kind {
			return groups[i].kind == Limiter
		}
		return groups[i].g < groups[j].g
	})

	for _, gr := range groups {
		members := byGroup[gr]
		rounds := make([][]Round, len(members))
		for r := 0; r < cfg.Rounds; r++ {
			for j := range members {
				m := (j + r) % len(members) // rotate the order every round
				l := members[m]
				rd, err := runRound(ctx, cfg, ctl, l.inst, l.env.Keys, l.Variant, gr.g, r)
				if err != nil {
					return nil, fmt.Errorf("harness: %s at %d goroutines: %w", l.id, gr.g, err)
				}
				rd.Position = j
				rounds[m] = append(rounds[m], rd)
				logf("%-8s g=%-3d round %d/%d  %-44s %9.0f ops/s  p50 %7.1fµs  errors %d",
					gr.kind, gr.g, r+1, cfg.Rounds, l.id, rd.OpsPerSec, rd.P50us, rd.Errors)
			}
		}
		for m, l := range members {
			rep.Results = append(rep.Results, summarize(l.id, gr.g, rounds[m]))
		}
	}
	rep.Finished = time.Now().UTC()
	rep.Machine.LoadAvgEnd = loadAvg()
	return rep, nil
}

// runRound runs one contender at g goroutines: a warm-up, then the measured window.
func runRound(ctx context.Context, cfg Config, ctl *redis.Client, inst *Instance, keys int, v Variant, g, round int) (Round, error) {
	stopHogs, err := startHogs(v.Hogs)
	if err != nil {
		return Round{}, err
	}
	defer stopHogs()
	const (
		warming = iota
		measuring
		stopping
	)
	var phase atomic.Int32
	type tally struct {
		ops, errs int64
		firstErr  error
		hist      *Histogram
	}
	tallies := make([]tally, g)
	var wg sync.WaitGroup
	for w := 0; w < g; w++ {
		tallies[w].hist = NewHistogram()
		op := inst.Worker()
		next := picker(v.Pattern, keys, uint64(round)<<32|uint64(w))
		wg.Add(1)
		go func(t *tally) {
			defer wg.Done()
			for {
				p := phase.Load()
				if p == stopping {
					return
				}
				k := next()
				start := time.Now()
				err := op(ctx, k)
				d := time.Since(start)
				if err != nil {
					t.errs++
					if t.firstErr == nil {
						t.firstErr = err
					}
				}
				if p == measuring {
					t.hist.Record(d)
					t.ops++
				}
			}
		}(&tallies[w])
	}
	stop := func() { phase.Store(stopping); wg.Wait() }

	sleep(ctx, cfg.Warmup)
	before, err := take(ctx, ctl)
	if err != nil {
		stop()
		return Round{}, err
	}
	phase.Store(measuring)
	t0 := time.Now()
	sleep(ctx, cfg.Round)
	stop()
	elapsed := time.Since(t0)
	after, err := take(ctx, ctl)
	if err != nil {
		return Round{}, err
	}
	if ctx.Err() != nil {
		return Round{}, ctx.Err()
	}

	hist := NewHistogram()
	var rd Round
	for _, t := range tallies {
		hist.Merge(t.hist)
		rd.Ops += t.ops
		rd.Errors += t.errs
		if t.firstErr != nil && rd.FirstError == "" {
			rd.FirstError = t.firstErr.Error()
		}
	}
	rd.Seconds = elapsed.Seconds()
	if rd.Ops == 0 {
		return rd, nil
	}
	ops := float64(rd.Ops)
	rd.OpsPerSec = ops / elapsed.Seconds()
	rd.P50us = micros(hist.Quantile(0.50))
	rd.P99us = micros(hist.Quantile(0.99))
	rd.AllocsPerOp = float64(after.mallocs-before.mallocs) / ops
	rd.RedisCPUus = micros(after.redisCPU-before.redisCPU) / ops
	rd.ClientCPUus = micros(after.clientCPU-before.clientCPU) / ops
	rd.WireBytesPerOp = float64(after.netBytes-before.netBytes) / ops
	rd.CommandsPerOp = float64(after.commands-before.commands) / ops
	rd.ReadsPerOp = float64(after.reads-before.reads) / ops
	if dt := after.total - before.total; dt > 0 {
		busyCores := float64(after.busy-before.busy) / float64(dt) * float64(runtime.NumCPU())
		ours := (after.clientCPU - before.clientCPU + after.redisCPU - before.redisCPU).Seconds() / after.at.Sub(before.at).Seconds()
		rd.OtherCores = max(0, busyCores-ours)
	}
	return rd, nil
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// picker returns the identifier sequence of one worker.
func picker(p KeyPattern, keys int, seed uint64) func() int {
	if p == Lockstep {
		i := 0
		return func() int { i++; return i % keys }
	}
	x := seed*0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D
	return func() int {
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		return int((x * 0x2545F4914F6CDD1D) % uint64(keys))
	}
}

// summarize takes the median of each figure over the rounds.
func summarize(id string, g int, rounds []Round) Result {
	res := Result{ID: id, Goroutines: g, Rounds: rounds}
	for i, dst := range res.fields() {
		v := make([]float64, len(rounds))
		for j := range rounds {
			v[j] = *rounds[j].fields()[i]
		}
		*dst = Median(v)
	}
	res.OpsMin, res.OpsMax = rounds[0].OpsPerSec, rounds[0].OpsPerSec
	for _, r := range rounds {
		res.Errors += r.Errors
		if res.FirstError == "" {
			res.FirstError = r.FirstError
		}
		res.OpsMin = min(res.OpsMin, r.OpsPerSec)
		res.OpsMax = max(res.OpsMax, r.OpsPerSec)
	}
	return res
}

// Median returns the median of v (the mean of the middle two for an even count), 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// clients hands out go-redis clients: one per variant shared by its contenders, or one per
// contender for a variant that separates them.
type clients struct {
	addr string
	mu   sync.Mutex
	m    map[string]*redis.Client
}

func newClients(addr string) *clients { return &clients{addr: addr, m: map[string]*redis.Client{}} }

func (c *clients) get(v Variant, id string) *redis.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := "shared@" + v.Name
	if v.Separate {
		key = id
	}
	if cl, ok := c.m[key]; ok {
		return cl
	}
	cl := redis.NewClient(&redis.Options{Addr: c.addr, PoolSize: v.PoolSize, AutoPipelineOptions: v.AutoPipe})
	c.m[key] = cl
	return cl
}

func (c *clients) closeAll() {
	for _, cl := range c.m {
		cl.Close()
	}
}
