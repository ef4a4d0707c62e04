package gatehouse_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// startSentinel starts a master, one replica and three Sentinels of the test's own. Cleanup kills
// every process and checks that none of their ports still accepts connections.
func startSentinel(t *testing.T) *redistest.Sentinel {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against real Redis; skipped by -short")
	}
	start := time.Now()
	sn, err := redistest.StartSentinel(1)
	if err != nil {
		t.Fatal(err)
	}
	addrs := sn.Addrs()
	t.Cleanup(func() {
		sn.Close()
		for _, a := range addrs {
			if c, err := net.DialTimeout("tcp", a, 200*time.Millisecond); err == nil {
				c.Close()
				t.Errorf("%s still accepts connections after Close", a)
			}
		}
	})
	t.Logf("sentinels (%s) ready in %v: master %s, replica %s, sentinels %v",
		sn.Program, time.Since(start).Round(time.Millisecond), sn.Data[0].Addr, sn.Data[1].Addr, sn.SentinelAddrs())
	return sn
}

// failoverClient returns a Sentinel failover client with go-redis' defaults (3 retries), except
// that it honours context deadlines (as WithTimeout needs) and sends no CLIENT SETINFO.
func failoverClient(t *testing.T, sn *redistest.Sentinel) *redis.Client {
	t.Helper()
	rdb := sn.Client(redis.FailoverOptions{DisableIdentity: true, ContextTimeoutEnabled: true, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// streamStats is what happened to one kind of traffic around a failover.
type streamStats struct {
	calls       int
	failed      int       // calls that returned an error
	failedAfter int       // of those, calls started after the kill
	resumed     time.Time // the end of the first successful call started after the kill
	okSince     int       // successful calls started after the new master was announced
	lastErr     error
	lateErrs    []error // errors of calls started after the stream had resumed
}

// stream records one kind of traffic; it is safe for concurrent use.
type stream struct {
	name string
	mu   sync.Mutex
	st   streamStats
}

// failoverClock holds the moments of a failover, as Unix nanoseconds (0: not yet).
type failoverClock struct{ killed, switched atomic.Int64 }

func (c *failoverClock) after(at *atomic.Int64, t time.Time) bool {
	v := at.Load()
	return v != 0 && t.UnixNano() >= v
}

// record notes a call that started at start and ended now with err.
func (s *stream) record(c *failoverClock, start time.Time, err error) {
	end := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.st
	st.calls++
	afterKill := c.after(&c.killed, start)
	if err != nil {
		st.failed++
		st.lastErr = err
		if afterKill {
			st.failedAfter++
		}
		if !st.resumed.IsZero() && start.After(st.resumed) {
			st.lateErrs = append(st.lateErrs, err)
		}
		return
	}
	if afterKill && st.resumed.IsZero() {
		st.resumed = end
	}
	if c.after(&c.switched, start) {
		st.okSince++
	}
}

// stats returns a copy of what was recorded so far.
func (s *stream) stats() streamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.lateErrs = slices.Clone(st.lateErrs)
	return st
}

// runStreams calls each stream's op in its own goroutine, every 10ms, until stop is closed or 60
// seconds pass. Each call has a 2-second budget.
func runStreams(ctx context.Context, c *failoverClock, stop <-chan struct{}, streams []*stream, ops []func(context.Context) error) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i, s := range streams {
		wg.Go(func() {
			deadline := time.Now().Add(time.Minute)
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				start := time.Now()
				err := ops[i](cctx)
				cancel()
				s.record(c, start, err)
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	return &wg
}

// waitReplicated waits until the master's writes so far reached its replica (WAIT 1).
func waitReplicated(ctx context.Context, t *testing.T, master *redistest.Server) {
	t.Helper()
	m := redis.NewClient(&redis.Options{Addr: master.Addr, DisableIdentity: true})
	defer m.Close()
	n, err := m.Do(ctx, "WAIT", 1, 5000).Int()
	if err != nil || n != 1 {
		t.Fatalf("WAIT 1 5000 on the master: %d replicas, %v", n, err)
	}
}

// A Sentinel failover under traffic. Through redis.NewFailoverClient, one goroutine per algorithm
// decides and one works a session (load, save, rotate) while the master is killed (SIGKILL). The
// replica's script cache is emptied first, so that the promoted replica answers NOSCRIPT and the
// runtime's recovery is what serves the first calls. Checked: every stream resumes once the
// Sentinels announce the new master, and nothing fails after it has resumed; the promoted replica
// did answer NOSCRIPT and loaded the scripts; decisions and sessions written before the failover
// (replicated, WAIT) are intact; and of the decisions made during it, every one admitted after the
// kill is counted, and nothing is counted that was not admitted or failed.
func TestSentinelFailover(t *testing.T) {
	sn := startSentinel(t)
	rdb := failoverClient(t, sn)
	ctx := context.Background()
	if err := gatehouse.Preload(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	master, replica := sn.Data[0], sn.Data[1]
	prefix := redistest.Prefix(t)

	// A fixed instant keeps the counts exact (a token bucket would otherwise refill while the
	// test runs). The failover does not depend on the clock: Redis 7 replicates a script's writes.
	fixed := time.Now()
	per := limiter.Per(10000, 30*24*time.Hour)
	lims := make([]*limiter.Limiter, len(limitertest.Algorithms))
	for i, alg := range limitertest.Algorithms {
		l, err := limiter.New(rdb, alg, limiter.WithKeyPrefix(prefix+"rl:"), limiter.WithClock(func() time.Time { return fixed }))
		if err != nil {
			t.Fatal(err)
		}
		lims[i] = l
	}
	st, err := session.NewStore(rdb, session.WithKeyPrefix(prefix+"s:"))
	if err != nil {
		t.Fatal(err)
	}

	// Before the failover: 3 decisions per algorithm and five sessions (one rotated, one signed in).
	for i, l := range lims {
		for range 3 {
			if r, err := l.Allow(ctx, "kept", per); err != nil || !r.Allowed {
				t.Fatalf("%v before the failover: %+v, %v", limitertest.Algorithms[i], r, err)
			}
		}
	}
	var kept []*session.Session
	for i := range 5 {
		s := sessiontest.Stored(t, st, "name", "user-"+strconv.Itoa(i))
		switch i {
		case 1:
			if err := st.Rotate(ctx, s); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := st.Login(ctx, s, "ada"); err != nil {
				t.Fatal(err)
			}
		}
		kept = append(kept, s)
	}
	waitReplicated(ctx, t, master)
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr, DisableIdentity: true})
	defer rc.Close()
	t.Logf("replica's script cache before the flush: %d of gatehouse's %d scripts (Redis 7 does not replicate SCRIPT LOAD)",
		cachedScripts(ctx, t, rc), len(script.Scripts()))
	if err := rc.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n := cachedScripts(ctx, t, rc); n != 0 {
		t.Fatalf("%d scripts still cached on the replica after SCRIPT FLUSH", n)
	}

	// Traffic: one stream per algorithm on its own key, and one session stream.
	var clock failoverClock
	var streams []*stream
	var ops []func(context.Context) error
	admitted := make([]atomic.Int64, len(lims))      // decisions the callers were told were admitted
	admittedAfter := make([]atomic.Int64, len(lims)) // of those, decisions started after the kill
	for i, l := range lims {
		streams = append(streams, &stream{name: limitertest.Algorithms[i].String()})
		ops = append(ops, func(ctx context.Context) error {
			start := time.Now()
			r, err := l.Allow(ctx, "during", per)
			if err == nil && !r.Allowed {
				err = fmt.Errorf("refused under a limit of %v: %+v", per, r)
			}
			if err == nil {
				admitted[i].Add(1)
				if clock.after(&clock.killed, start) {
					admittedAfter[i].Add(1)
				}
			}
			return err
		})
	}
	var sw sessionWorker
	sw.st = st
	streams = append(streams, &stream{name: "session"})
	ops = append(ops, sw.step)

	stop := make(chan struct{})
	wg := runStreams(ctx, &clock, stop, streams, ops)
	stopStreams := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopStreams()
	// Let every stream succeed a few times before the kill.
	waitUntil(t, 10*time.Second, "traffic before the kill", func() bool {
		for _, s := range streams {
			if st := s.stats(); st.calls-st.failed < 5 {
				return false
			}
		}
		return true
	})

	old := master.Addr
	clock.killed.Store(time.Now().UnixNano())
	killed := time.Now()
	master.Stop()
	newAddr, err := sn.WaitFailover(old, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clock.switched.Store(time.Now().UnixNano())
	switched := time.Since(killed)
	if newAddr != replica.Addr {
		t.Fatalf("new master %s, want the replica %s", newAddr, replica.Addr)
	}
	// Every stream must succeed 5 times after the announcement, within 20 seconds.
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range streams {
		for s.stats().okSince < 5 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	stopStreams()

	t.Logf("master killed; the sentinels announced %s after %v", newAddr, switched.Round(time.Millisecond))
	for _, s := range streams {
		st := s.stats()
		after := "never"
		if !st.resumed.IsZero() {
			after = st.resumed.Sub(killed).Round(time.Millisecond).String()
		}
		t.Logf("%-14s %4d calls, %3d failed (%d after the kill), resumed %s after the kill, %d ok since the announcement; last error: %v",
			s.name, st.calls, st.failed, st.failedAfter, after, st.okSince, st.lastErr)
		if st.resumed.IsZero() || st.okSince < 5 {
			t.Errorf("%s did not resume after the failover (%d successful calls since the announcement); last error: %v", s.name, st.okSince, st.lastErr)
		}
		if len(st.lateErrs) > 0 {
			t.Errorf("%s: %d calls failed after it had resumed, first: %v", s.name, len(st.lateErrs), st.lateErrs[0])
		}
	}
	t.Logf("session stream: %d sessions signed out by the failover (writes the old master acknowledged but never replicated)", sw.lost)

	// The promoted replica answered NOSCRIPT and loaded the scripts it was asked for.
	nc := redis.NewClient(&redis.Options{Addr: newAddr, DisableIdentity: true})
	defer nc.Close()
	errs, err := nc.Info(ctx, "errorstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	noscript := errorCount(errs, "NOSCRIPT")
	stats := redistest.CommandCalls(ctx, t, &redistest.Backend{Client: nc})
	t.Logf("promoted replica: %d NOSCRIPT replies, %d SCRIPT LOAD, %d EVALSHA", noscript, stats["script|load.calls"], stats["evalsha.calls"])
	if noscript == 0 || stats["script|load.calls"] == 0 {
		t.Errorf("the promoted replica answered NOSCRIPT %d times and loaded %d scripts; want both > 0 (its cache was emptied)", noscript, stats["script|load.calls"])
	}

	// Counts: those written before the failover are all there; of those written during it, every
	// decision admitted after the kill (so by the new master) is counted, and nothing beyond what
	// was admitted or failed (a failed call may have been counted before its reply was lost).
	for i, l := range lims {
		name := limitertest.Algorithms[i].String()
		r, err := l.Peek(ctx, "kept", per)
		if err != nil || r.Remaining != per.Rate-3 {
			t.Errorf("%s: the 3 decisions made before the failover: Peek = %+v, %v; want %d remaining", name, r, err, per.Rate-3)
		}
		r, err = l.Peek(ctx, "during", per)
		if err != nil {
			t.Fatal(err)
		}
		counted := per.Rate - r.Remaining
		failed := streams[i].stats().failed
		adm, admAfter := admitted[i].Load(), admittedAfter[i].Load()
		t.Logf("%-14s during the failover: %d admitted (%d after the kill), %d counted by the new master, %d lost",
			name, adm, admAfter, counted, adm-counted)
		if counted < admAfter || counted > adm+int64(failed) {
			t.Errorf("%s: %d counted; want between the %d admitted after the kill and %d (admitted + failed)", name, counted, admAfter, adm+int64(failed))
		}
	}

	// Sessions written before the failover: each loads with its attribute, and takes a save and a
	// rotation; the signed-in one is still listed for its user.
	for i, s := range kept {
		got, err := st.Load(ctx, s.Token())
		if err != nil {
			t.Errorf("session %d after the failover: %v", i, err)
			continue
		}
		if want := "user-" + strconv.Itoa(i); got.GetString("name") != want {
			t.Errorf("session %d after the failover: name %q, want %q", i, got.GetString("name"), want)
		}
		if err := got.Put("after", true); err != nil {
			t.Fatal(err)
		}
		if err := st.Save(ctx, got); err != nil {
			t.Errorf("session %d: save after the failover: %v", i, err)
		}
		if err := st.Rotate(ctx, got); err != nil {
			t.Errorf("session %d: rotation after the failover: %v", i, err)
		}
		if again := sessiontest.MustLoad(t, st, got.Token()); !again.GetBool("after") || again.GetString("name") == "" {
			t.Errorf("session %d after save and rotation: %v", i, again.Names())
		}
		if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("session %d: the token from before the rotation: %v, want ErrNotFound", i, err)
		}
	}
	if list, err := st.ListByUser(ctx, "ada"); err != nil || len(list) != 1 {
		t.Errorf("ListByUser after the failover: %d sessions, %v; want 1", len(list), err)
	}
}

// sessionWorker is a client of the session store: it creates a session, then loads it, saves a
// counter into it, and rotates it every fifth step. A session the failover lost (its creation or
// rotation was acknowledged by the old master but never replicated) signs the user out: the
// worker then starts a new one, as the middleware would, and counts it.
type sessionWorker struct {
	st   *session.Store
	tok  session.Token
	n    int
	lost int
}

func (w *sessionWorker) step(ctx context.Context) error {
	if w.tok == "" {
		s, err := w.st.New()
		if err != nil {
			return err
		}
		if err := s.Put("n", 0); err != nil {
			return err
		}
		if err := w.st.Save(ctx, s); err != nil {
			return err
		}
		w.tok = s.Token()
		return nil
	}
	s, err := w.st.Load(ctx, w.tok)
	if errors.Is(err, session.ErrNotFound) {
		w.lost++
		w.tok = ""
		return nil
	}
	if err != nil {
		return err
	}
	w.n++
	if err := s.Put("n", w.n); err != nil {
		return err
	}
	if err := w.st.Save(ctx, s); err != nil {
		return err
	}
	if w.n%5 == 0 {
		if err := w.st.Rotate(ctx, s); err != nil {
			return err
		}
		w.tok = s.Token()
	}
	return nil
}

// cachedScripts returns how many of gatehouse's scripts are in the node's script cache.
func cachedScripts(ctx context.Context, t *testing.T, c *redis.Client) int {
	t.Helper()
	var shas []string
	for _, s := range script.Scripts() {
		shas = append(shas, s.SHA1())
	}
	exists, err := c.ScriptExists(ctx, shas...).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ok := range exists {
		if ok {
			n++
		}
	}
	return n
}

// errorCount returns the count of an error prefix in INFO errorstats ("errorstat_NOSCRIPT:count=3").
func errorCount(info, prefix string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "errorstat_"+prefix+":count="); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// waitUntil polls cond every 20ms and fails the test if it does not hold within timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not done within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WithTimeout and each failure policy through a Sentinel failover: while the master is gone, every
// call returns a decision, never an error, made by the limiter's own policy (fail open, fail
// closed, or the local fallback) with the failure in Result.Err; once the Sentinels announce the
// promoted replica, Redis decides again. Durations are measured and logged, not asserted.
func TestSentinelFailoverPolicy(t *testing.T) {
	sn := startSentinel(t)
	rdb := failoverClient(t, sn)
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	per := limiter.PerMinute(100000)

	type policy struct {
		name string
		opt  limiter.Option
		src  limiter.Source
		lim  *limiter.Limiter

		mu       sync.Mutex
		bySource map[limiter.Source]int
		outage   int           // policy decisions started after the kill
		skipped  int           // of those, made during a cooldown (Err is ErrUnavailable)
		slowest  time.Duration // the longest decision started after the kill
		redisOK  int           // Redis decisions started after the announcement
		back     time.Time     // the end of the first Redis decision started after the kill
		bad      []string      // decisions that break the policy's contract
	}
	policies := []*policy{
		{name: "fail open", opt: limiter.WithFailurePolicy(limiter.FailOpen()), src: limiter.SourceFailOpen},
		{name: "fail closed", opt: limiter.WithFailurePolicy(limiter.FailClosed(time.Second)), src: limiter.SourceFailClosed},
		{name: "fail local", opt: limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})), src: limiter.SourceLocal},
	}
	var logs limitertest.Logs
	for _, p := range policies {
		l, err := limiter.New(rdb, limiter.TokenBucket, p.opt, limiter.WithKeyPrefix(prefix),
			limiter.WithTimeout(100*time.Millisecond), limiter.WithCooldown(250*time.Millisecond),
			limiter.WithLogger(logs.Logger()))
		if err != nil {
			t.Fatal(err)
		}
		p.lim, p.bySource = l, map[limiter.Source]int{}
	}
	var clock failoverClock
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range policies {
		wg.Go(func() {
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				r, err := p.lim.Allow(ctx, p.name, per)
				took := time.Since(start)
				p.mu.Lock()
				p.bySource[r.Source]++
				switch {
				case err != nil:
					p.bad = append(p.bad, fmt.Sprintf("error %v", err))
				case r.Source == limiter.SourceRedis:
					if !r.Allowed || r.Err != nil {
						p.bad = append(p.bad, fmt.Sprintf("from Redis: %+v", r))
					}
					if clock.after(&clock.switched, start) {
						p.redisOK++
					}
					if clock.after(&clock.killed, start) && p.back.IsZero() {
						p.back = start.Add(took)
					}
				case r.Source != p.src || r.Err == nil:
					p.bad = append(p.bad, fmt.Sprintf("not the policy's decision: %+v", r))
				case p.src == limiter.SourceFailClosed && (r.Allowed || r.RetryAfter != time.Second),
					p.src != limiter.SourceFailClosed && !r.Allowed:
					p.bad = append(p.bad, fmt.Sprintf("against the policy: %+v", r))
				}
				if clock.after(&clock.killed, start) {
					p.slowest = max(p.slowest, took)
					if r.Source == p.src {
						p.outage++
						if errors.Is(r.Err, limiter.ErrUnavailable) {
							p.skipped++
						}
					}
				}
				p.mu.Unlock()
			}
		})
	}
	stopAll := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopAll()
	count := func(p *policy, f func(p *policy) int) int { p.mu.Lock(); defer p.mu.Unlock(); return f(p) }
	waitUntil(t, 10*time.Second, "Redis decisions before the kill", func() bool {
		for _, p := range policies {
			if count(p, func(p *policy) int { return p.bySource[limiter.SourceRedis] }) < 5 {
				return false
			}
		}
		return true
	})

	master := sn.Data[0]
	killed := time.Now()
	clock.killed.Store(killed.UnixNano())
	master.Stop()
	newAddr, err := sn.WaitFailover(master.Addr, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clock.switched.Store(time.Now().UnixNano())
	t.Logf("master killed; the sentinels announced %s after %v", newAddr, time.Since(killed).Round(time.Millisecond))
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range policies {
		for count(p, func(p *policy) int { return p.redisOK }) < 5 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	stopAll()

	for _, p := range policies {
		t.Logf("%-11s %d decisions by Redis, %d by the policy after the kill (%d during a cooldown, without asking Redis); slowest after the kill %v; Redis decided again %v after the kill",
			p.name, p.bySource[limiter.SourceRedis], p.outage, p.skipped, p.slowest.Round(time.Millisecond), p.back.Sub(killed).Round(time.Millisecond))
		if len(p.bad) > 0 {
			t.Errorf("%s: %d decisions broke the policy, first: %s", p.name, len(p.bad), p.bad[0])
		}
		if p.outage == 0 {
			t.Errorf("%s: no decision by the policy while the master was gone", p.name)
		}
		if p.redisOK < 5 {
			t.Errorf("%s: Redis decided %d times after the announcement, want 5 within 20s", p.name, p.redisOK)
		}
	}
	t.Logf("failures logged (at most one per cooldown per limiter): %d", logs.Len())
}
