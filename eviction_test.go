package gatehouse_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// Every maxmemory-policy of Redis 7.0, as docs/operations.md discusses them.
var evictionPolicies = []string{
	"noeviction",
	"allkeys-lru", "allkeys-lfu", "allkeys-random",
	"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
}

// oomIsRedisFailure is what docs/operations.md says of an OOM reply under noeviction: it "reaches
// the caller as an error (a Redis failure)", so a limiter with a failure policy lets the policy
// decide, and one without returns the error; the session store returns it as ErrUnavailable. If
// OOM ever stops counting as a Redis failure, this and the docs change together.
const oomIsRedisFailure = true

// Each eviction policy against a server of its own whose maxmemory is 2 MiB above what it uses
// empty, filled past the limit: first gatehouse's state (decisions under every algorithm, anonymous
// and signed-in sessions), then filler keys worth three times the headroom, an eighth of them
// without an expiry. Then, with the server still full, new traffic; then, with the limit lifted so
// that nothing more is evicted, every key is inspected. What is checked is what operations.md says:
//
//   - noeviction: nothing is evicted; writes fail with Redis' OOM error and gatehouse calls that
//     write return it (the limiter's failure policy decides, OOM being a Redis failure), while
//     refusals, peeks and session reads, which write nothing Redis refuses, go on;
//   - every other policy: no error at all; gatehouse keys are evicted, and for each one the answer
//     is as if it never existed: a limiter key evicted gives its client a fresh quota, a session
//     evicted is not found (its user is signed out); every key that was kept holds its exact count
//     or attributes; volatile-* never evict a key without an expiry, so they take gatehouse's keys
//     (all of which expire) before anything of the application's that does not; the LRU policies
//     evict the keys used longest ago and volatile-ttl those closest to expiring first.
func TestEviction(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against real Redis; skipped by -short")
	}
	for _, policy := range evictionPolicies {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			evictionCase(t, policy)
		})
	}
}

const (
	evictionHeadroom = 2 << 20 // bytes of maxmemory above the empty server's use
	evictionIDs      = 100     // limiter identifiers per algorithm
	evictionAnon     = 100     // anonymous sessions
	evictionUsers    = 20      // signed-in sessions, one per user
	fillerSize       = 1000    // bytes per filler value
)

// evictionLimiters are one algorithm's limiters: without a policy, failing open, failing closed.
type evictionLimiters struct {
	alg                 limiter.Algorithm
	prefix              string
	plain, open, closed *limiter.Limiter
}

// storedSession is a session stored before the server filled up, with the attribute it holds and
// its user ("" for an anonymous one).
type storedSession struct {
	s    *session.Session
	want string
	user string
}

// evictionRun is one policy's server and the gatehouse state written into it.
type evictionRun struct {
	t        *testing.T
	ctx      context.Context
	policy   string
	rdb      *redis.Client
	prefix   string
	per      limiter.Limit
	lims     []evictionLimiters
	st       *session.Store
	sessions []storedSession
	ops      map[string]*session.Session // for noevictionTraffic; not inspected
}

// spent is how many requests identifier "c<i>" made before the server filled up: 1, 2 or 3.
func spent(i int) int64 { return int64(1 + i%3) }

func evictionCase(t *testing.T, policy string) {
	r := newEvictionRun(t, policy)
	noevict := policy == "noeviction"
	// The LRU clock counts whole seconds: wait, so that the filler is younger than gatehouse's keys.
	time.Sleep(1100 * time.Millisecond)
	fill := fillMemory(r.ctx, t, r.rdb, r.prefix+"fill:", 3*evictionHeadroom, noevict)
	if noevict {
		if fill.oom == 0 {
			t.Fatalf("noeviction: no OOM after writing %d filler bytes past a %d-byte headroom", 3*evictionHeadroom, evictionHeadroom)
		}
		// Keep the server past its limit by a margin: the first OOM leaves it only just above,
		// and freeing a client buffer could bring it under again.
		setMaxmemory(r.ctx, t, r.rdb, usedMemory(r.ctx, t, r.rdb)-256<<10)
		noevictionTraffic(r.ctx, t, r.lims, r.st, r.ops, r.per)
	} else {
		r.trafficWhenFull()
	}
	// Inspect, with the limit lifted so that nothing more is evicted.
	setMaxmemory(r.ctx, t, r.rdb, 0)
	r.inspect(fill)
}

// newEvictionRun starts a server with the policy and a maxmemory of evictionHeadroom above its
// use, and writes gatehouse's state: under every algorithm, evictionIDs clients that made 1 to 3
// requests and one at its limit; anonymous and signed-in sessions.
func newEvictionRun(t *testing.T, policy string) *evictionRun {
	ctx := context.Background()
	rdb := evictingServer(ctx, t, policy)
	if err := gatehouse.Preload(ctx, rdb); err != nil {
		t.Fatal(err)
	}

	// A fixed instant keeps the counts exact; 30-day limits keep every limiter key far from its
	// natural expiry, yet closer to it than the filler's year.
	var err error
	r := &evictionRun{t: t, ctx: ctx, policy: policy, rdb: rdb, prefix: redistest.Prefix(t), per: limiter.Per(5, 30*24*time.Hour)}
	fixed := time.Now()
	for _, alg := range limitertest.Algorithms {
		el := evictionLimiters{alg: alg, prefix: r.prefix + "rl:" + alg.String() + ":"}
		opts := []limiter.Option{limiter.WithKeyPrefix(el.prefix), limiter.WithClock(func() time.Time { return fixed }), limiter.WithLogger(limitertest.Discard)}
		el.plain, err = limiter.New(rdb, alg, opts...)
		if err == nil {
			el.open, err = limiter.New(rdb, alg, append(opts, limiter.WithFailurePolicy(limiter.FailOpen()))...)
		}
		if err == nil {
			el.closed, err = limiter.New(rdb, alg, append(opts, limiter.WithFailurePolicy(limiter.FailClosed(time.Minute)))...)
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range evictionIDs {
			for range spent(i) {
				mustAllow(ctx, t, el.plain, "c"+strconv.Itoa(i), r.per, true)
			}
		}
		for range r.per.Rate {
			mustAllow(ctx, t, el.plain, "full", r.per, true)
		}
		r.lims = append(r.lims, el)
	}
	if r.st, err = session.NewStore(rdb, session.WithKeyPrefix(r.prefix+"s:")); err != nil {
		t.Fatal(err)
	}
	for i := range evictionAnon + evictionUsers {
		want := strings.Repeat("v", 200) + strconv.Itoa(i)
		ss := storedSession{s: sessiontest.Stored(t, r.st, "v", want), want: want}
		if i >= evictionAnon {
			ss.user = "user-" + strconv.Itoa(i)
			if err := r.st.Login(ctx, ss.s, ss.user); err != nil {
				t.Fatal(err)
			}
		}
		r.sessions = append(r.sessions, ss)
	}
	r.ops = map[string]*session.Session{}
	for _, op := range []string{"load", "save", "save+remove", "rotate", "login", "destroy", "user"} {
		r.ops[op] = sessiontest.Stored(t, r.st, "v", "op")
	}
	if err := r.st.Login(ctx, r.ops["user"], "op-user"); err != nil {
		t.Fatal(err)
	}
	return r
}

// trafficWhenFull checks that on a full server that evicts, new clients are admitted and new
// sessions stored, without an error.
func (r *evictionRun) trafficWhenFull() {
	t := r.t
	for _, el := range r.lims {
		if res, err := el.plain.Allow(r.ctx, "new", r.per); err != nil || !res.Allowed {
			t.Errorf("%s, a new client: %+v, %v; want admitted", el.alg, res, err)
		}
	}
	fresh := sessiontest.Stored(t, r.st, "v", "new")
	if got := sessiontest.MustLoad(t, r.st, fresh.Token()); got.GetString("v") != "new" {
		t.Errorf("the new session reads %v", got.Names())
	}
}

// inspect checks every key gatehouse wrote before the server filled up: a limiter key kept holds
// its exact count, one evicted gives a fresh quota; a session kept loads with its attribute, one
// evicted is not found. It then checks which keys the policy chose.
func (r *evictionRun) inspect(fill filled) {
	t, ctx := r.t, r.ctx
	present := scanKeys(ctx, t, r.rdb, r.prefix)
	var lim, gone [4]int // limiter keys by requests spent (1 to 3), and of those evicted
	for _, el := range r.lims {
		for i := range evictionIDs {
			id := "c" + strconv.Itoa(i)
			kept := present.hasPrefix(el.prefix + "{" + id + "}:")
			want := r.per.Rate
			lim[spent(i)]++
			if kept {
				want -= spent(i)
			} else {
				gone[spent(i)]++
			}
			if res, err := el.plain.Peek(ctx, id, r.per); err != nil || res.Remaining != want {
				t.Errorf("%s %s (key kept: %v): Peek = %+v, %v; want %d remaining", el.alg, id, kept, res, err, want)
			}
		}
	}
	limAll, limGone := lim[1]+lim[2]+lim[3], gone[1]+gone[2]+gone[3]
	var sessGone, ixGone, orphans int
	for _, ss := range r.sessions {
		key := string(ss.s.Key())
		kept := present.has(key)
		tag, _, _ := strings.Cut(key, "}:s:")
		indexed := ss.user == "" || present.has(tag+"}:ix") // anonymous sessions need no index
		got, err := r.st.Load(ctx, ss.s.Token())
		switch {
		case kept && indexed && err != nil:
			t.Errorf("a kept session: Load: %v", err)
		case kept && indexed && got.GetString("v") != ss.want:
			t.Errorf("a kept session lost its attribute: %v", got.Names())
		case !kept && !errors.Is(err, session.ErrNotFound):
			t.Errorf("an evicted session: Load: %v; want ErrNotFound", err)
		case !indexed && !errors.Is(err, session.ErrNotFound):
			t.Errorf("a session whose user index was evicted: Load: %v; want ErrNotFound (signed out)", err)
		}
		if !kept {
			sessGone++
		}
		if indexed {
			continue
		}
		// The user's index was evicted: the user is signed out, everywhere, at once.
		ixGone++
		if kept {
			orphans++
		}
		if list, err := r.st.ListByUser(ctx, ss.user); err != nil || len(list) != 0 {
			t.Errorf("a user whose index was evicted: ListByUser = %d, %v; want none", len(list), err)
		}
	}
	fillGone := [2]int{fill.written[0] - present.countPrefix(r.prefix+"fill:p:"), fill.written[1] - present.countPrefix(r.prefix+"fill:v:")}
	t.Logf("%s: limiter keys evicted %d of %d (used once %d of %d, three times %d of %d); sessions evicted %d of %d; "+
		"user indexes evicted %d of %d (%d sessions outlived theirs: signed out); "+
		"filler evicted %d of %d without expiry, %d of %d with; OOM replies %d",
		r.policy, limGone, limAll, gone[1], lim[1], gone[3], lim[3], sessGone, len(r.sessions),
		ixGone, evictionUsers, orphans, fillGone[0], fill.written[0], fillGone[1], fill.written[1], fill.oom)

	frac := func(a, b int) float64 { return float64(a) / float64(b) }
	gate := frac(limGone+sessGone, limAll+len(r.sessions))
	fillAll := frac(fillGone[0]+fillGone[1], fill.written[0]+fill.written[1])
	switch p := r.policy; {
	case p == "noeviction":
		if limGone+sessGone+ixGone+fillGone[0]+fillGone[1] > 0 {
			t.Errorf("noeviction evicted keys")
		}
		return
	case limGone+sessGone == 0:
		t.Errorf("%s evicted none of gatehouse's keys", p)
	case strings.HasPrefix(p, "volatile-") && fillGone[0] > 0:
		t.Errorf("%s evicted %d keys without an expiry", p, fillGone[0])
	case strings.HasSuffix(p, "-lru") && gate <= fillAll:
		t.Errorf("%s evicted %.0f%% of gatehouse's keys and %.0f%% of the younger filler; want the older first", p, 100*gate, 100*fillAll)
	case p == "volatile-ttl" && gate <= frac(fillGone[1], fill.written[1]):
		t.Errorf("volatile-ttl evicted %.0f%% of gatehouse's keys and %.0f%% of the filler expiring later; want the sooner first", 100*gate, 100*frac(fillGone[1], fill.written[1]))
	case strings.HasSuffix(p, "-lfu") && frac(gone[1], lim[1]) <= frac(gone[3], lim[3]):
		t.Errorf("%s evicted %d of %d limiter keys used once and %d of %d used three times; want the least used first", p, gone[1], lim[1], gone[3], lim[3])
	}
}

// evictingServer starts a server of the test's own with the eviction policy and a maxmemory of
// evictionHeadroom above what it uses empty, and returns a client of it.
func evictingServer(ctx context.Context, t *testing.T, policy string) *redis.Client {
	t.Helper()
	srv, err := redistest.StartServer("--maxmemory-policy", policy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	setMaxmemory(ctx, t, rdb, usedMemory(ctx, t, rdb)+evictionHeadroom)
	return rdb
}

// mustAllow makes one decision and fails the test unless it is as wanted, from Redis.
func mustAllow(ctx context.Context, t *testing.T, l *limiter.Limiter, id string, per limiter.Limit, want bool) {
	t.Helper()
	if r, err := l.Allow(ctx, id, per); err != nil || r.Allowed != want || r.Source != limiter.SourceRedis {
		t.Fatalf("Allow(%s) = %+v, %v; want allowed=%v by Redis", id, r, err, want)
	}
}

// checkOOMPolicy checks a limiter with a failure policy on a server past maxmemory under
// noeviction: the decision is the policy's, standing in for the OOM failure, twice. An OOM reply
// means Redis cannot take writes, so it starts a cooldown: the second decision is the policy's
// without asking Redis (Err is ErrUnavailable).
func checkOOMPolicy(ctx context.Context, t *testing.T, l *limiter.Limiter, name string, per limiter.Limit, src limiter.Source) {
	t.Helper()
	for i := range 2 {
		r, err := l.Allow(ctx, "new", per)
		if !oomIsRedisFailure {
			if !isOOM(err) {
				t.Errorf("noeviction, %s, %v policy: %+v, %v; want Redis' OOM error", name, src, r, err)
			}
			continue
		}
		cause := isOOM(r.Err)
		if i > 0 {
			cause = errors.Is(r.Err, limiter.ErrUnavailable)
		}
		if err != nil || r.Source != src || !cause || r.Allowed != (src == limiter.SourceFailOpen) {
			t.Errorf("noeviction, %s: %+v, %v; want the %v policy's decision standing in for Redis' OOM error", name, r, err, src)
		}
	}
}

// isOOM reports whether err is Redis' reply to a write past maxmemory under noeviction.
func isOOM(err error) bool {
	return err != nil && strings.Contains(err.Error(), "OOM command not allowed when used memory > 'maxmemory'")
}

func usedMemory(ctx context.Context, t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("INFO memory without used_memory")
	return 0
}

func setMaxmemory(ctx context.Context, t *testing.T, c *redis.Client, bytes int64) {
	t.Helper()
	if err := c.ConfigSet(ctx, "maxmemory", strconv.FormatInt(bytes, 10)).Err(); err != nil {
		t.Fatal(err)
	}
}

// filled is what fillMemory wrote: keys without an expiry ([0]) and with one ([1]), and the writes
// Redis refused with OOM.
type filled struct {
	written [2]int
	oom     int
}

// fillMemory writes about total bytes of filler under prefix, in pipelines of 100 SETs: one key in
// eight under prefix+"p:" without an expiry, the others under prefix+"v:" expiring in a year. Only
// OOM replies are allowed as errors, and only when allowOOM.
func fillMemory(ctx context.Context, t *testing.T, c *redis.Client, prefix string, total int, allowOOM bool) filled {
	t.Helper()
	var f filled
	value := strings.Repeat("f", fillerSize)
	for n := 0; n < total/fillerSize; {
		cmds, _ := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for end := n + 100; n < end; n++ {
				if n%8 == 0 {
					p.Set(ctx, prefix+"p:"+strconv.Itoa(n), value, 0)
				} else {
					p.Set(ctx, prefix+"v:"+strconv.Itoa(n), value, 365*24*time.Hour)
				}
			}
			return nil
		})
		for _, cmd := range cmds {
			err := cmd.Err()
			switch {
			case err == nil:
				persistent := strings.Contains(cmd.Args()[1].(string), ":p:")
				f.written[map[bool]int{true: 0, false: 1}[persistent]]++
			case allowOOM && isOOM(err):
				f.oom++
			default:
				t.Fatalf("filler %v: %v", cmd.Args()[1], err)
			}
		}
	}
	return f
}

// keySet is the set of keys a SCAN found.
type keySet map[string]struct{}

func scanKeys(ctx context.Context, t *testing.T, c *redis.Client, prefix string) keySet {
	t.Helper()
	ks := keySet{}
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		ks[iter.Val()] = struct{}{}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return ks
}

func (ks keySet) has(k string) bool { _, ok := ks[k]; return ok }

func (ks keySet) hasPrefix(p string) bool { return ks.countPrefix(p) > 0 }

func (ks keySet) countPrefix(p string) int {
	n := 0
	for k := range ks {
		if strings.HasPrefix(k, p) {
			n++
		}
	}
	return n
}

// noevictionOutcomes is what docs/operations.md says each operation does on a server past its
// maxmemory under noeviction: true, it goes on; false, it fails with Redis' OOM error and changes
// nothing. Redis refuses a script's first write that may add data, unless the script has already
// written something (a removal, an expiry), in which case it lets the script finish: so the
// outcome depends on what each script writes first.
var noevictionOutcomes = map[string]bool{
	"fixed_window":   false, // SET first
	"sliding_window": false, // SET first
	"token_bucket":   false, // SET first
	"sliding_log":    false, // ZADD first, then trims its log
	"refusal":        true,  // a decision that refuses writes nothing
	"peek":           true,  // never writes
	"load":           true,  // slides the expiry (PEXPIRE) before it updates last-seen
	"save":           false, // HSET first
	"save+remove":    true,  // HDEL of the removed attribute first
	"rotate":         false, // HSET of the new key first
	"login":          false, // session_create: HSET first
	"new session":    false, // session_create: HSET first
	"destroy":        true,  // DEL
	"list":           true,  // session_user: reads, then removes what ended
	"destroy all":    true,  // session_user: DEL
}

// noevictionTraffic tries each operation of noevictionOutcomes on a server past its maxmemory
// under noeviction and checks its outcome; a decision that fails with OOM is also tried through
// the failure policies, which stand in for it (oomIsRedisFailure).
func noevictionTraffic(ctx context.Context, t *testing.T, lims []evictionLimiters, st *session.Store, ops map[string]*session.Session, per limiter.Limit) {
	t.Helper()
	check := func(op string, err error) {
		t.Helper()
		goesOn := noevictionOutcomes[op]
		switch {
		case goesOn && err != nil:
			t.Errorf("noeviction, %s on a full server: %v; want it to go on", op, err)
		case !goesOn && !isOOM(err):
			t.Errorf("noeviction, %s on a full server: %v; want Redis' OOM error", op, err)
		}
	}
	for _, el := range lims {
		name := el.alg.String()
		r, err := el.plain.Allow(ctx, "new", per)
		check(name, err)
		if err == nil && (!r.Allowed || r.Source != limiter.SourceRedis) {
			t.Errorf("noeviction, %s: %+v; want admitted by Redis", name, r)
		}
		if !noevictionOutcomes[name] {
			checkOOMPolicy(ctx, t, el.open, name, per, limiter.SourceFailOpen)
			checkOOMPolicy(ctx, t, el.closed, name, per, limiter.SourceFailClosed)
		}
		r, err = el.plain.Allow(ctx, "full", per)
		check("refusal", err)
		if err == nil && (r.Allowed || r.Source != limiter.SourceRedis) {
			t.Errorf("noeviction, %s, a client at its limit: %+v; want refused by Redis", name, r)
		}
		r, err = el.plain.Peek(ctx, "c0", per)
		check("peek", err)
		if err == nil && r.Remaining != per.Rate-spent(0) {
			t.Errorf("noeviction, %s, Peek: %+v; want %d remaining", name, r, per.Rate-spent(0))
		}
	}

	// The session store counts OOM as a failure of Redis, as the limiter's policies do.
	sessionCheck := func(op string, err error) {
		t.Helper()
		check(op, err)
		if !noevictionOutcomes[op] && oomIsRedisFailure && !errors.Is(err, session.ErrUnavailable) {
			t.Errorf("noeviction, %s on a full server: %v; want an error matching session.ErrUnavailable", op, err)
		}
	}
	load := func(s *session.Session) *session.Session {
		got, err := st.Load(ctx, s.Token())
		if err != nil {
			t.Fatalf("noeviction: Load: %v", err)
		}
		return got
	}
	_, err := st.Load(ctx, ops["load"].Token())
	sessionCheck("load", err)
	s := load(ops["save"])
	s.Put("w", "changed")
	sessionCheck("save", st.Save(ctx, s))
	s = load(ops["save+remove"])
	s.Put("w", "changed")
	s.Remove("v")
	sessionCheck("save+remove", st.Save(ctx, s))
	sessionCheck("rotate", st.Rotate(ctx, load(ops["rotate"])))
	sessionCheck("login", st.Login(ctx, load(ops["login"]), "op-login"))
	fresh, err := st.New()
	if err != nil {
		t.Fatal(err)
	}
	fresh.Put("v", "new")
	sessionCheck("new session", st.Save(ctx, fresh))
	sessionCheck("destroy", st.Destroy(ctx, load(ops["destroy"])))
	_, err = st.ListByUser(ctx, "op-user")
	sessionCheck("list", err)
	_, err = st.DestroyAllForUser(ctx, "op-user")
	sessionCheck("destroy all", err)
}

// "Sign out everywhere" cannot miss a session whose user index was evicted: the index vouches for
// the user's sessions, so a session it no longer lists is signed out. The test signs 20 users in,
// reads their sessions, and fills an allkeys-lru server until an index is evicted while its
// session is kept; then that session must not load (nor be listed), before and after
// DestroyAllForUser, while the users whose index was kept keep their sessions. The sessions are
// read directly (HGET), not through Load, which reads the index too and keeps it as recently used
// as they are: here the index must go first, as it still may (under the random policies and LFU,
// or when LRU's sampling picks it among keys of the same second).
func TestEvictionSignOutEverywhere(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against real Redis; skipped by -short")
	}
	ctx := context.Background()
	rdb := evictingServer(ctx, t, "allkeys-lru")
	prefix := redistest.Prefix(t)
	st, err := session.NewStore(rdb, session.WithKeyPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	type user struct {
		id       string
		s        *session.Session
		index    string
		sessions string
	}
	var users []user
	for i := range evictionUsers {
		u := user{id: "user-" + strconv.Itoa(i), s: sessiontest.Stored(t, st, "v", "x")}
		if err := st.Login(ctx, u.s, u.id); err != nil {
			t.Fatal(err)
		}
		tag, _, _ := strings.Cut(string(u.s.Key()), "}:s:")
		u.index, u.sessions = tag+"}:ix", string(u.s.Key())
		users = append(users, u)
	}
	// The LRU clock counts whole seconds: indexes, then sessions, then filler, a second apart.
	time.Sleep(1100 * time.Millisecond)
	for _, u := range users {
		if err := rdb.HGet(ctx, u.sessions, "_u").Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1100 * time.Millisecond)
	// Fill ten keys at a time until some user's index is gone and its session kept (EXISTS does
	// not count as a use).
	var orphan *user
	value := strings.Repeat("f", fillerSize)
	for n := 0; orphan == nil; n++ {
		if n*10*fillerSize > 3*evictionHeadroom {
			t.Fatal("no index evicted before its session after filling three times the headroom")
		}
		for j := range 10 {
			if err := rdb.Set(ctx, prefix+"fill:"+strconv.Itoa(10*n+j), value, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for i, u := range users {
			ix, err1 := rdb.Exists(ctx, u.index).Result()
			s, err2 := rdb.Exists(ctx, u.sessions).Result()
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			if ix == 0 && s == 1 {
				orphan = &users[i]
				break
			}
		}
	}
	setMaxmemory(ctx, t, rdb, 0)
	// The users whose index and session were both kept are still signed in.
	var indexed []user
	for _, u := range users {
		if rdb.Exists(ctx, u.index, u.sessions).Val() == 2 {
			indexed = append(indexed, u)
		}
	}
	if list, err := st.ListByUser(ctx, orphan.id); err != nil || len(list) != 0 {
		t.Errorf("after its user index was evicted: ListByUser = %d, %v; want none", len(list), err)
	}
	n, err := st.DestroyAllForUser(ctx, orphan.id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Load(ctx, orphan.s.Token()); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("after its user index was evicted, DestroyAllForUser ended %d sessions and the user's session still loads (Load: %v); want it signed out", n, err)
	}
	for _, u := range indexed {
		sessiontest.MustLoad(t, st, u.s.Token())
	}
	t.Logf("%d of %d users kept both index and session, and stay signed in", len(indexed), len(users))
}
