package limiter_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// FailLocal, with Redis unreachable, keeps what was used when a limit changes, as Redis does: a
// client whose requests alternate between two limits that share a key (per-route limits of one
// identifier, a tier changing) is still limited. It used to start afresh at each change.
func TestLocalFallbackChangedLimitKeepsWhatWasUsed(t *testing.T) {
	lim := localOnly(t, limiter.LocalFallback{})
	ctx := context.Background()
	a, b := limiter.PerHour(3), limiter.PerHour(4) // one key: the same period, no name
	admitted := 0
	for i := range 40 {
		l := a
		if i%2 == 1 {
			l = b
		}
		res, err := lim.Allow(ctx, "alternating", l)
		if err != nil {
			t.Fatal(err)
		}
		if res.Source != limiter.SourceLocal {
			t.Fatalf("request %d: source %v, want local", i, res.Source)
		}
		if res.Allowed {
			admitted++
		}
	}
	if admitted > 4 {
		t.Errorf("%d of 40 requests admitted under PerHour(3) and PerHour(4) alternating; want at most 4", admitted)
	}
}

// The deny cache and the local fallback bound their memory by entries, and an entry must not keep
// its identifier: identifiers are the clients' (an API key header, up to the server's 1 MiB of
// header), so keeping them would let clients fill the process with MaxKeys or maxEntries times
// whatever they send.
func TestInProcessStateKeepsNoIdentifier(t *testing.T) {
	b := redistest.Get(t, "standalone")
	ctx := context.Background()
	const entries, size = 32, 1 << 20
	denying, err := limiter.New(b.Client, limiter.TokenBucket, limiter.WithKeyPrefix(redistest.Prefix(t)), limiter.WithDenyCache(entries))
	if err != nil {
		t.Fatal(err)
	}
	local := localOnly(t, limiter.LocalFallback{MaxKeys: entries})
	limit := limiter.PerHour(1)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	decide := func(id string) {
		denying.Allow(ctx, id, limit)
		if res, err := denying.Allow(ctx, id, limit); err != nil || res.Allowed {
			t.Fatalf("second request: %+v, %v; want refused", res, err)
		}
		if res, err := local.Allow(ctx, id, limit); err != nil || res.Source != limiter.SourceLocal {
			t.Fatalf("local: %+v, %v", res, err)
		}
	}
	decide(strings.Repeat("w", size)) // connections' buffers grown once
	before := heap()
	for i := range entries {
		decide(fmt.Sprint(i) + strings.Repeat("x", size))
	}
	after := heap()
	if mapped, _, _ := limiter.DenyCacheSize(denying); mapped < entries/2 {
		t.Fatalf("the deny cache holds %d entries", mapped)
	}
	if grown := int64(after) - int64(before); grown > 8<<20 {
		t.Errorf("the heap grew by %d MiB for %d entries of each cache: the identifiers (%d MiB each) are kept", grown>>20, entries, size>>20)
	}
	runtime.KeepAlive(denying)
	runtime.KeepAlive(local)
}

// FailLocal enforces each limit of an identifier once, whatever other limits a request names with
// it, as Redis (one key per limit) does: a client spreading its requests over routes whose limits
// share a global one is held to the global one while Redis is down.
func TestLocalFallbackLimitSharedAcrossLimitSets(t *testing.T) {
	lim := localOnly(t, limiter.LocalFallback{})
	ctx := context.Background()
	global := limiter.PerHour(3).WithName("global")
	admitted := 0
	for round := range 3 {
		for route := range 10 {
			res, err := lim.AllowAll(ctx, "spread", 1, global, limiter.PerHour(100).WithName(fmt.Sprint("route", route)))
			if err != nil {
				t.Fatal(err)
			}
			if res.Source != limiter.SourceLocal {
				t.Fatalf("round %d, route %d: source %v, want local", round, route, res.Source)
			}
			if res.Allowed {
				admitted++
			}
		}
	}
	if admitted != 3 {
		t.Errorf("%d of 30 requests over 10 routes admitted under a global PerHour(3); want 3", admitted)
	}
}

// Edges that hold, on every algorithm and backend: the N-th and N+1-th request at one instant,
// the last microsecond of a window, periods of 1 ms, of a prime number of ms and of MaxPeriod;
// RetryAfter exact to the microsecond; AllowAll over more limits than one coalesced call carries,
// charging none when the last refuses; identifiers of 1 MiB and of escapes kept apart.
func TestLimiterEdgesHold(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		srvNow, err := b.Client.Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, alg := range limitertest.Algorithms {
			t.Run(alg.String(), func(t *testing.T) {
				for _, limit := range []limiter.Limit{limiter.Per(3, time.Millisecond), limiter.Per(3, 7*time.Millisecond),
					limiter.Per(1, time.Millisecond).WithBurst(1), limiter.Per(2, limiter.MaxPeriod)} {
					// The last µs of a window, an hour ahead of the server, whose clock expires keys.
					p := limit.Period.Microseconds()
					start := ((srvNow.UnixMicro()+3600e6)/p+2)*p - 1
					at := start
					lim, err := limiter.New(b.Client, alg, limiter.WithKeyPrefix(redistest.Prefix(t)),
						limiter.WithClock(func() time.Time { return time.UnixMicro(at) }))
					if err != nil {
						t.Fatal(err)
					}
					for i := range limit.Capacity() {
						if res, err := lim.Allow(ctx, "edge", limit); err != nil || !res.Allowed || res.Remaining != limit.Capacity()-1-i {
							t.Fatalf("%v: request %d at one instant: %+v, %v", limit, i+1, res, err)
						}
					}
					res, err := lim.Allow(ctx, "edge", limit)
					if err != nil || res.Allowed || res.RetryAfter <= 0 || res.RetryAfter == limiter.InfDuration {
						t.Fatalf("%v: request %d at the same instant: %+v, %v; want refused for a while", limit, limit.Capacity()+1, res, err)
					}
					at = start + res.RetryAfter.Microseconds() - 1
					if early, err := lim.Allow(ctx, "edge", limit); err != nil || early.Allowed {
						t.Fatalf("%v: 1µs before RetryAfter %v: %+v, %v; want refused", limit, res.RetryAfter, early, err)
					}
					at++
					if then, err := lim.Allow(ctx, "edge", limit); err != nil || !then.Allowed {
						t.Fatalf("%v: at RetryAfter %v: %+v, %v; want admitted", limit, res.RetryAfter, then, err)
					}
				}
			})
		}
		for _, alg := range limitertest.Algorithms {
			for _, opts := range [][]limiter.Option{{limiter.WithoutCoalescing()}, nil} {
				lim, err := limiter.New(b.Client, alg, append(opts, limiter.WithKeyPrefix(redistest.Prefix(t)))...)
				if err != nil {
					t.Fatal(err)
				}
				var limits []limiter.Limit
				for i := range 1499 {
					limits = append(limits, limiter.PerHour(5).WithName(fmt.Sprint("l", i)))
				}
				last := limiter.PerHour(1).WithName("last")
				limits = append(limits, last)
				if res, err := lim.Allow(ctx, "many", last); err != nil || !res.Allowed {
					t.Fatalf("%v: %+v, %v", alg, res, err)
				}
				res, err := lim.AllowAll(ctx, "many", 1, limits...)
				if err != nil || res.Allowed || res.Limit != last || len(res.All) != len(limits) {
					t.Fatalf("%v %d options: AllowAll of %d limits, the last spent: %+v, %v", alg, len(opts), len(limits), res.Limit, err)
				}
				for _, l := range limits[:3] {
					if p, err := lim.Peek(ctx, "many", l); err != nil || p.Remaining != 5 {
						t.Errorf("%v: %v charged by a refused AllowAll: %d left, %v", alg, l, p.Remaining, err)
					}
				}
			}
		}
		lim, err := limiter.New(b.Client, limiter.FixedWindow, limiter.WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		limit := limiter.PerHour(3)
		ids := []string{"a", "{a}", "%7Ba%7D", "%257Ba%257D", "a}", "{a", "}{", "{}", "\xff\xfe\x00", "\x00",
			strings.Repeat("x", 1<<20), strings.Repeat("x", 1<<20-1) + "y", strings.Repeat("{", 1000)}
		for i, id := range ids {
			if _, err := lim.AllowN(ctx, id, limit, int64(1+i%3)); err != nil {
				t.Fatalf("identifier %d: %v", i, err)
			}
		}
		for i, id := range ids {
			if p, err := lim.Peek(ctx, id, limit); err != nil || p.Remaining != int64(2-i%3) {
				t.Errorf("identifier %d: %d left, %v; want %d", i, p.Remaining, err, 2-i%3)
			}
		}
	})
}

// localOnly returns a token-bucket limiter deciding with FailLocal(f) on a Redis that is down.
func localOnly(t *testing.T, f limiter.LocalFallback) *limiter.Limiter {
	t.Helper()
	srv, _ := redistest.Private(t)
	addr := srv.Addr
	srv.Stop()
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailLocal(f)), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	return lim
}

// holdReply is a redis.Hook that, once armed, holds the reply of the next EVALSHA: it signals
// held when the reply has come, and returns it when release is closed.
type holdReply struct {
	armed   atomic.Bool
	held    chan struct{}
	release chan struct{}
}

func (h *holdReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "evalsha" && h.armed.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
		}
		return err
	}
}

func (h *holdReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Reset through the Limiter clears its deny cache, also of a refusal Redis made before the reset
// and that reaches the cache after it (a client hammering while refused has one in flight): the
// cache must not refuse what Redis, reset, admits.
func TestDenyCacheResetRacingARefusal(t *testing.T) {
	_, rdb := redistest.Private(t)
	hook := &holdReply{held: make(chan struct{}), release: make(chan struct{})}
	rdb.AddHook(hook)
	ctx := context.Background()
	for _, alg := range limitertest.Algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			lim, err := limiter.New(rdb, alg, limiter.WithDenyCache(16), limiter.WithKeyPrefix(redistest.Prefix(t)))
			if err != nil {
				t.Fatal(err)
			}
			limit := limiter.PerHour(1)
			if res, err := lim.Allow(ctx, "reset", limit); err != nil || !res.Allowed {
				t.Fatalf("first: %+v, %v", res, err)
			}
			hook.held, hook.release = make(chan struct{}), make(chan struct{})
			hook.armed.Store(true)
			refused := make(chan limiter.Result, 1)
			go func() {
				res, _ := lim.Allow(ctx, "reset", limit) // refused by Redis; its reply held
				refused <- res
			}()
			<-hook.held
			if err := lim.Reset(ctx, "reset", limit); err != nil {
				t.Fatal(err)
			}
			close(hook.release)
			if res := <-refused; res.Allowed || res.Source != limiter.SourceRedis {
				t.Fatalf("the request in flight: %+v; want refused by Redis", res)
			}
			if res, err := lim.Allow(ctx, "reset", limit); err != nil || !res.Allowed {
				t.Errorf("after Reset: %+v, %v; want admitted, as Redis admits it", res, err)
			}
		})
	}
}

// Reset forgets what FailLocal counted for the identifier under the limits it names, as it does in
// Redis: a client reset while Redis answered (an operator lifting a block, a counter of failed
// logins reset by a good one) is not refused by the local fallback in a later outage for what it
// used before the reset. Limits Reset does not name, and other identifiers, keep their counts.
// Before, the local state outlived Reset: refused until its bucket refilled (an hour here).
func TestLocalFallbackForgetsOnReset(t *testing.T) {
	srv, _ := redistest.Private(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})),
		limiter.WithCooldown(0), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	reset, kept := limiter.PerHour(2), limiter.PerHour(2).WithName("kept")
	allow := func(key string, l limiter.Limit) bool {
		t.Helper()
		res, err := lim.Allow(ctx, key, l)
		if err != nil {
			t.Fatal(err)
		}
		if res.Source != limiter.SourceLocal {
			t.Fatalf("%s under %v: source %v, want local", key, l, res.Source)
		}
		return res.Allowed
	}
	srv.Stop()
	for _, key := range []string{"reset", "other"} {
		for _, l := range []limiter.Limit{reset, kept} {
			for i := range 3 {
				if got := allow(key, l); got != (i < 2) {
					t.Fatalf("%s under %v, request %d: allowed %v while Redis is down", key, l, i+1, got)
				}
			}
		}
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := lim.Reset(ctx, "reset", reset); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if !allow("reset", reset) {
		t.Error("after Reset, the reset limit still refuses the client locally")
	}
	if allow("reset", kept) {
		t.Error("after Reset of another limit, a limit Reset did not name admits the client locally")
	}
	if allow("other", reset) {
		t.Error("after Reset of another identifier, an identifier Reset did not name is admitted locally")
	}
}
