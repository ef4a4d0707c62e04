package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/leaktest"
	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// shutdownVariants are the limiters deciding while the client closes: plain and auto-pipelined,
// each returning errors or failing open. The one place the test names limiter options.
func shutdownVariants(prefix string) []struct {
	name string
	opts []limiter.Option
} {
	p := limiter.WithKeyPrefix(prefix)
	return []struct {
		name string
		opts []limiter.Option
	}{
		{"plain", []limiter.Option{p}},
		{"auto", []limiter.Option{p, limiter.WithAutoPipeline()}},
		{"plain+open", []limiter.Option{p, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithLogger(slog.New(slog.DiscardHandler))}},
		{"auto+open", []limiter.Option{p, limiter.WithAutoPipeline(), limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithLogger(slog.New(slog.DiscardHandler))}},
	}
}

// A program closes its client while 64 goroutines decide through it, 16 for each of plain,
// auto-pipelined, and both failing open, over sliding logs whose sets count exactly what Redis
// admitted. Every call returns (within 10 seconds, a bound on a hang, not on speed), with a
// decision or an error; no goroutine is left; and, per key, Redis counted every admission a
// caller was told of, and at most one more for each call that ended in an error or in a
// failure policy's decision (a call whose script ran but whose reply was lost to the close).
func TestLimiterCloseUnderLoad(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) { closeUnderLoad(t) })
	}
}

func closeUnderLoad(t *testing.T) {
	srv, _ := redistest.Private(t)
	leaks := leaktest.Take()
	ctx := context.Background()
	c := redistest.ClientFor(t, srv.Addr)
	prefix := redistest.Prefix(t)
	limit := limiter.Per(limiter.MaxSlidingLogRate, time.Hour) // never binds here
	const goroutines, keysPer, maxCalls = 64, 4, 1000
	variants := shutdownVariants(prefix)
	lims := make([]*limiter.Limiter, len(variants))
	for i, v := range variants {
		l, err := limiter.New(c, limiter.SlidingLog, v.opts...)
		if err != nil {
			t.Fatal(err)
		}
		lims[i] = l
	}

	// What each key's callers were told, by variant and key.
	type told struct{ admitted, errored, policy atomic.Int64 }
	tally := make([][keysPer]told, len(variants))
	var calls, lateWrong atomic.Int64
	var closed atomic.Bool // set once Close has returned
	var errMu sync.Mutex
	errKinds := map[string]int{}
	var wg sync.WaitGroup
	for g := range goroutines {
		v, k := g%len(variants), (g/len(variants))%keysPer
		wg.Go(func() {
			key := fmt.Sprintf("%s-k%d", variants[v].name, k)
			for range maxCalls {
				late := closed.Load()
				r, err := lims[v].Allow(ctx, key, limit)
				calls.Add(1)
				if late && !errors.Is(err, redis.ErrClosed) {
					lateWrong.Add(1) // a call that began after Close returned must find the client closed
				}
				switch {
				case err != nil:
					tally[v][k].errored.Add(1)
					errMu.Lock()
					errKinds[failureKind(err)]++
					errMu.Unlock()
					return // the client is closed: the program stops deciding
				case r.Source != limiter.SourceRedis:
					tally[v][k].policy.Add(1)
					errMu.Lock()
					errKinds[r.Source.String()+": "+failureKind(r.Err)]++
					errMu.Unlock()
				case r.Allowed:
					tally[v][k].admitted.Add(1)
				default:
					t.Errorf("%s: refused under a limit that never binds: %+v", variants[v].name, r)
				}
			}
		})
	}
	// Let the decisions run, then close the client under them.
	for i := 0; i < 500 && calls.Load() < 2000; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	before := calls.Load()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed.Store(true)
	leaktest.Await(t, &wg, 10*time.Second, "calls made as the client closed")
	t.Logf("%d calls before Close, %d in all; how calls ended after it: %v", before, calls.Load(), errKinds)
	if n := lateWrong.Load(); n > 0 {
		t.Errorf("%d calls that began after Close returned did not fail with redis.ErrClosed", n)
	}

	// Every connection of the closed client has gone from the server, so it has run everything
	// the client sent; then the counts are read through a client of their own.
	check := redistest.ClientFor(t, srv.Addr)
	redistest.WaitClients(t, check, 1)
	var extra, doubts int64
	for v := range variants {
		for k := range keysPer {
			counted, err := check.ZCard(ctx, limitertest.Key(prefix, limiter.SlidingLog, fmt.Sprintf("%s-k%d", variants[v].name, k), limit)).Result()
			if err != nil {
				t.Fatal(err)
			}
			tl := &tally[v][k]
			admitted, doubt := tl.admitted.Load(), tl.errored.Load()+tl.policy.Load()
			extra, doubts = extra+counted-admitted, doubts+doubt
			if counted < admitted || counted > admitted+doubt {
				t.Errorf("%s k%d: Redis counted %d; callers were told of %d admissions, and %d calls ended in an error or a policy's decision",
					variants[v].name, k, counted, admitted, doubt)
			}
		}
	}
	t.Logf("Redis counted %d admissions more than callers were told of, for %d calls that ended in an error or a policy's decision", extra, doubts)
	check.Close()
	leaks.Check(t, 10*time.Second, redistest.ServerGoroutines...)
}

// A client the program closed is an error under every failure policy (docs/operations.md), also
// when it is closed during a cooldown: once the cooldown has passed, every call returns
// redis.ErrClosed, none is decided by the policy. (The calls made during the rest of the cooldown
// are the policy's: the limiter does not ask the client then.)
func TestLimiterClosedClientAfterCooldown(t *testing.T) {
	srv, _ := redistest.Private(t)
	c := redistest.ClientFor(t, srv.Addr)
	ctx := context.Background()
	lim, err := limiter.New(c, limiter.TokenBucket, closedClientOptions(200*time.Millisecond)...)
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop() // the next call fails and starts a cooldown
	if r, err := lim.Allow(ctx, "k", limiter.PerMinute(10)); err != nil || r.Source != limiter.SourceFailOpen {
		t.Fatalf("Redis down: %+v, %v; want the policy's decision", r, err)
	}
	c.Close()
	time.Sleep(300 * time.Millisecond) // the cooldown passes
	for i := range 10 {
		r, err := lim.Allow(ctx, "k", limiter.PerMinute(10))
		if !errors.Is(err, redis.ErrClosed) {
			t.Errorf("call %d after Close and the cooldown: %+v, %v; want redis.ErrClosed", i, r, err)
		}
	}
}

// A call in flight when the program closes the client fails with the connection closed under it
// (net.ErrClosed): the policy may decide it, but that is no sign of Redis failing, so it starts no
// cooldown, and the next call returns redis.ErrClosed.
func TestLimiterClosedClientInFlight(t *testing.T) {
	srv, _ := redistest.Private(t)
	c := redistest.ClientFor(t, srv.Addr)
	ctx := context.Background()
	lim, err := limiter.New(c, limiter.TokenBucket, closedClientOptions(time.Hour)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lim.Allow(ctx, "k", limiter.PerMinute(10)); err != nil { // a connection in the pool
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	defer srv.Resume()
	type outcome struct {
		r   limiter.Result
		err error
	}
	inFlight := make(chan outcome, 1)
	go func() {
		r, err := lim.Allow(ctx, "k", limiter.PerMinute(10))
		inFlight <- outcome{r, err}
	}()
	time.Sleep(200 * time.Millisecond) // the call is sent, and waits for a reply that cannot come
	c.Close()
	var first outcome
	select {
	case first = <-inFlight:
	case <-time.After(10 * time.Second):
		t.Fatalf("the call in flight did not return within 10s of Close:\n\n%s", leaktest.Dump())
	}
	if first.err == nil && first.r.Source == limiter.SourceRedis {
		t.Fatalf("the call in flight was decided by a paused Redis: %+v", first.r)
	}
	t.Logf("the call in flight at Close: %+v, %v", first.r, first.err)
	for i := range 10 {
		r, err := lim.Allow(ctx, "k", limiter.PerMinute(10))
		if !errors.Is(err, redis.ErrClosed) {
			t.Errorf("call %d after Close: %+v, %v; want redis.ErrClosed", i, r, err)
		}
	}
}

// closedClientOptions fail open with the given cooldown, quietly: the one place the tests of a
// closed client name options.
func closedClientOptions(cooldown time.Duration) []limiter.Option {
	return []limiter.Option{limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithCooldown(cooldown), limiter.WithTimeout(5 * time.Second), limiter.WithLogger(slog.New(slog.DiscardHandler))}
}
