package limiter_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// The failure policy decides only when Redis fails, says so in the Result, and leaves every other
// error to the caller. Run against a real server that is stopped, paused and fed corrupt state.
func TestLimiterFailurePolicy(t *testing.T) {
	srv, rdb := redistest.Private(t)
	ctx := context.Background()
	limit := limiter.PerMinute(2).WithName("api")

	// No cooldown: every call below asks Redis (TestLimiterFailureCooldown tests the cooldown).
	// open has no bound of its own: the decisions it must get from Redis (the first on a new
	// connection, and the first after a restart, which loads the script again) may take long on a
	// loaded machine. hasty, bounded to 200ms, is for the paused server alone.
	open, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithCooldown(0))
	if err != nil {
		t.Fatal(err)
	}
	hasty, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithTimeout(200*time.Millisecond), limiter.WithCooldown(0))
	if err != nil {
		t.Fatal(err)
	}
	closed, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailClosed(3*time.Second)), limiter.WithCooldown(0))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailClosed(0))); err == nil {
		t.Error("FailClosed(0) accepted")
	}
	deaf := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer deaf.Close()
	if _, err := limiter.New(deaf, limiter.TokenBucket, limiter.WithTimeout(time.Second)); err == nil {
		t.Error("WithTimeout accepted for a client that ignores context deadlines")
	}

	// Redis up: Redis decides, whatever the policy.
	for i, want := range []bool{true, true, false} {
		res, err := open.Allow(ctx, "up", limit)
		if err != nil || res.Allowed != want || res.Source != limiter.SourceRedis || res.Err != nil {
			t.Fatalf("Redis up, request %d: %+v, %v; want allowed=%v from Redis", i, res, err, want)
		}
	}

	// Corrupt state under the key (another type): Redis answered, and the answer is an error about
	// this key, which the policy does not hide.
	corrupt := limiter.PerMinute(2).WithName("corrupt")
	if err := rdb.HSet(ctx, "gh:rl:{bad}:tb:ncorrupt", "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Allow(ctx, "bad", corrupt); err == nil {
		t.Fatal("a decision over a key of the wrong type succeeded")
	}
	if res, err := open.Allow(ctx, "bad", corrupt); err == nil {
		t.Errorf("fail-open over corrupt state: %+v with no error, want the error", res)
	}

	// Redis paused (CLIENT PAUSE): the call outlives WithTimeout, and the policy decides on time.
	// The pause outlasts any slowness of the machine (UNPAUSE would not get through it); the
	// server is killed next.
	if err := rdb.Do(ctx, "CLIENT", "PAUSE", 600_000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := hasty.Allow(ctx, "slow", limit)
	if err != nil || !res.Allowed || res.Source != limiter.SourceFailOpen || !redistest.IsTimeout(res.Err) {
		t.Errorf("fail-open with Redis paused: %+v, %v; want admitted by the policy after the timeout", res, err)
	}

	// Redis down.
	srv.Stop()
	res, err = open.Allow(ctx, "down", limit)
	if err != nil || !res.Allowed || res.Source != limiter.SourceFailOpen || res.Err == nil || res.Remaining != 0 {
		t.Errorf("fail-open, Redis down: %+v, %v", res, err)
	}
	res, err = closed.AllowN(ctx, "down", limit, 1)
	if err != nil || res.Allowed || res.Source != limiter.SourceFailClosed || res.RetryAfter != 3*time.Second || res.Err == nil {
		t.Errorf("fail-closed, Redis down: %+v, %v", res, err)
	}
	res, err = closed.AllowAll(ctx, "down", 1, limit, limiter.PerHour(10))
	if err != nil || res.Allowed || len(res.All) != 2 || res.All[1].Source != limiter.SourceFailClosed {
		t.Errorf("fail-closed AllowAll, Redis down: %+v, %v", res, err)
	}
	if res, err := closed.Peek(ctx, "down", limit); err != nil || res.Allowed || res.Source != limiter.SourceFailClosed {
		t.Errorf("fail-closed Peek, Redis down: %+v, %v", res, err)
	}
	if _, err := plain.Allow(ctx, "down", limit); err == nil {
		t.Error("no policy, Redis down: no error")
	}
	// Not Redis failures: still errors, whatever the policy.
	if _, err := open.Allow(ctx, "down", limiter.Limit{}); !errors.Is(err, limiter.ErrInvalidLimit) {
		t.Errorf("fail-open, invalid limit: %v", err)
	}
	if _, err := open.AllowN(ctx, "down", limit, 0); !errors.Is(err, limiter.ErrInvalidCost) {
		t.Errorf("fail-open, invalid cost: %v", err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := open.Allow(gone, "down", limit); err == nil {
		t.Error("fail-open with the caller's context canceled: no error")
	}
	if err := open.Reset(ctx, "down", limit); err == nil {
		t.Error("Reset with Redis down: no error")
	}

	// Back up: Redis decides again, with what it held before it went down (nothing: no persistence).
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	res, err = open.Allow(ctx, "down", limit)
	if err != nil || !res.Allowed || res.Source != limiter.SourceRedis || res.Remaining != 1 {
		t.Errorf("Redis back: %+v, %v", res, err)
	}
}

// After Redis fails to answer, a limiter with a failure policy stops asking it for the cooldown,
// then asks once and resumes when Redis answers. An error Redis replies with starts no cooldown.
func TestLimiterFailureCooldown(t *testing.T) {
	srv, rdb := redistest.Private(t)
	ctx := context.Background()
	var sent redistest.Calls
	rdb.AddHook(&sent)
	limit := limiter.PerMinute(10).WithName("api")
	var logs limitertest.Logs
	long, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithCooldown(time.Hour),
		limiter.WithLogger(logs.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	short, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailClosed(time.Second)), limiter.WithCooldown(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	every, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithCooldown(0))
	if err != nil {
		t.Fatal(err)
	}

	// A reply with an error (a key of the wrong type) is the caller's, and starts no cooldown.
	if err := rdb.HSet(ctx, "gh:rl:{bad}:tb:napi", "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	if res, err := long.Allow(ctx, "bad", limit); err == nil {
		t.Fatalf("corrupt key: %+v, with no error", res)
	}
	if res, err := long.Allow(ctx, "good", limit); err != nil || res.Source != limiter.SourceRedis {
		t.Fatalf("after a corrupt key: %+v, %v; want Redis to decide", res, err)
	}

	srv.Stop()
	for _, l := range []*limiter.Limiter{long, short} {
		before := sent.N.Load()
		res, err := l.Allow(ctx, "k", limit)
		if err != nil || res.Source == limiter.SourceRedis || errors.Is(res.Err, limiter.ErrUnavailable) || sent.N.Load() == before {
			t.Fatalf("first call with Redis down: %+v, %v; want the policy, after asking Redis", res, err)
		}
	}
	// Within the cooldown: the policy decides and Redis is not asked. Arguments are still checked.
	before := sent.N.Load()
	for range 20 {
		res, err := long.Allow(ctx, "k", limit)
		if err != nil || res.Source != limiter.SourceFailOpen || !errors.Is(res.Err, limiter.ErrUnavailable) {
			t.Fatalf("in the cooldown: %+v, %v", res, err)
		}
	}
	if _, err := long.Allow(ctx, "", limit); !errors.Is(err, limiter.ErrInvalidKey) {
		t.Errorf("in the cooldown, an empty key: %v", err)
	}
	if n := sent.N.Load() - before; n != 0 {
		t.Errorf("%d commands sent during the cooldown, want 0", n)
	}
	if n := logs.Len(); n != 1 {
		t.Errorf("%d failures logged, want 1 (the first call with Redis down):\n%s", n, logs.Text())
	}
	// Without a cooldown, every decision asks.
	before = sent.N.Load()
	for range 3 {
		if res, err := every.Allow(ctx, "k", limit); err != nil || res.Source != limiter.SourceFailOpen || errors.Is(res.Err, limiter.ErrUnavailable) {
			t.Fatalf("no cooldown: %+v, %v", res, err)
		}
	}
	if n := sent.N.Load() - before; n < 3 {
		t.Errorf("no cooldown: %d commands for 3 decisions", n)
	}

	// Redis back, cooldown over: the next call asks, and Redis decides from then on.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	for i := range 3 {
		res, err := short.Allow(ctx, "k", limit)
		if err != nil || res.Source != limiter.SourceRedis || res.Remaining != int64(9-i) {
			t.Fatalf("call %d after the cooldown, Redis back: %+v, %v", i, res, err)
		}
	}
	// The long cooldown is still running: its limiter has not asked yet.
	if res, _ := long.Allow(ctx, "k", limit); !errors.Is(res.Err, limiter.ErrUnavailable) {
		t.Errorf("long cooldown with Redis back: %+v, want still cooling down", res)
	}
}

// With FailLocal, a stopped Redis leaves the limit enforced in the process: the same client
// is admitted up to the limit and then refused, other clients are served, and the HTTP middleware
// reports the local count. When Redis is back it decides again.
func TestLimiterFailLocal(t *testing.T) {
	srv, rdb := redistest.Private(t)
	ctx := context.Background()
	lim, err := limiter.New(rdb, limiter.SlidingWindow, limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{MaxKeys: 100})),
		limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	limit := limiter.PerHour(3).WithName("api")
	if res, err := lim.Allow(ctx, "c", limit); err != nil || res.Source != limiter.SourceRedis {
		t.Fatalf("Redis up: %+v, %v", res, err)
	}
	srv.Stop()
	for i := range 3 {
		res, err := lim.Allow(ctx, "c", limit)
		if err != nil || !res.Allowed || res.Source != limiter.SourceLocal || res.Err == nil || res.Remaining != int64(2-i) {
			t.Fatalf("Redis down, request %d: %+v, %v; want admitted locally with %d left", i, res, err, 2-i)
		}
	}
	res, err := lim.Allow(ctx, "c", limit)
	if err != nil || res.Allowed || res.Source != limiter.SourceLocal || res.RetryAfter <= 0 || res.RetryAfter > 20*time.Minute {
		t.Fatalf("Redis down, fourth request: %+v, %v; want refused locally for up to 20 minutes", res, err)
	}
	srvHTTP, _ := limitertest.RecordedServer(t, lim, []limiter.Limit{limit})
	if got := limitertest.Get(t, srvHTTP, "/", "c"); got.StatusCode != 429 || !strings.HasPrefix(got.Header.Get("RateLimit"), `"api";r=0;`) || got.Header.Get("Retry-After") == "" {
		t.Errorf("middleware, Redis down, client over its limit: %s, RateLimit %q, Retry-After %q", got.Status, got.Header.Get("RateLimit"), got.Header.Get("Retry-After"))
	}
	if got := limitertest.Get(t, srvHTTP, "/", "d"); got.StatusCode != 200 || !strings.HasPrefix(got.Header.Get("RateLimit"), `"api";r=2;`) {
		t.Errorf("middleware, Redis down, another client: %s, RateLimit %q", got.Status, got.Header.Get("RateLimit"))
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(limiter.DefaultCooldown + 100*time.Millisecond)
	if res, err := lim.Allow(ctx, "c", limit); err != nil || res.Source != limiter.SourceRedis || !res.Allowed {
		t.Errorf("Redis back (emptied by the restart): %+v, %v; want admitted by Redis", res, err)
	}
}

// A failure policy is one value: invalid ones make New fail, the zero value is FailError, and of
// two WithFailurePolicy options the last one is the policy, whole.
func TestLimiterFailurePolicyValues(t *testing.T) {
	srv, rdb := redistest.Private(t)
	srv.Stop()
	ctx := context.Background()
	for name, p := range map[string]limiter.FailurePolicy{
		"FailClosed(0)":            limiter.FailClosed(0),
		"FailClosed(-1s)":          limiter.FailClosed(-time.Second),
		"FailLocal(MaxKeys -1)":    limiter.FailLocal(limiter.LocalFallback{MaxKeys: -1}),
		"FailLocal(Instances -2)":  limiter.FailLocal(limiter.LocalFallback{Instances: -2}),
		"FailLocal(both negative)": limiter.FailLocal(limiter.LocalFallback{MaxKeys: -1, Instances: -1}),
	} {
		if _, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(p)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	limit := limiter.PerMinute(5).WithName("api")
	for name, opts := range map[string][]limiter.Option{
		"the zero FailurePolicy": {limiter.WithFailurePolicy(limiter.FailurePolicy{})},
		"FailError()":            {limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithFailurePolicy(limiter.FailError())},
	} {
		lim, err := limiter.New(rdb, limiter.TokenBucket, opts...)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // no cooldown: each call asks, and fails
			if res, err := lim.Allow(ctx, "k", limit); err == nil || errors.Is(err, limiter.ErrUnavailable) {
				t.Errorf("%s, Redis down: %+v, %v; want Redis' error", name, res, err)
			}
		}
	}
	// The last policy wins whole: no local fallback left behind a later FailOpen.
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})),
		limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := lim.Allow(ctx, "k", limit); err != nil || !res.Allowed || res.Source != limiter.SourceFailOpen || res.Remaining != 0 {
		t.Errorf("FailLocal then FailOpen, Redis down: %+v, %v; want admitted by FailOpen", res, err)
	}
}

// What the limiter logs: a Warn record per failure its policy stands in for, with the algorithm,
// the policy, the error and the cooldown it starts; never the identifier. Under FailError it logs
// nothing: the error is the caller's.
func TestLimiterLogRecords(t *testing.T) {
	srv, rdb := redistest.Private(t)
	srv.Stop()
	ctx := context.Background()
	const who = "user-4242@example.com"
	limit := limiter.PerMinute(5).WithName("api")
	for _, c := range []struct {
		policy limiter.FailurePolicy
		want   string
	}{
		{limiter.FailOpen(), "WARN limiter: Redis unavailable algorithm=sliding_window policy=fail_open error="},
		{limiter.FailClosed(time.Second), "WARN limiter: Redis unavailable algorithm=sliding_window policy=fail_closed error="},
		{limiter.FailLocal(limiter.LocalFallback{}), "WARN limiter: Redis unavailable algorithm=sliding_window policy=local error="},
		{limiter.FailError(), ""},
	} {
		var logs limitertest.Logs
		lim, err := limiter.New(rdb, limiter.SlidingWindow, limiter.WithFailurePolicy(c.policy), limiter.WithCooldown(time.Minute), limiter.WithLogger(logs.Logger()))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			lim.Allow(ctx, who, limit)
		}
		text := logs.Text()
		switch {
		case c.want == "" && logs.Len() != 0:
			t.Errorf("FailError: %d records, want none:\n%s", logs.Len(), text)
		case c.want != "" && (logs.Len() != 1 || !strings.HasPrefix(text, c.want) || !strings.Contains(text, "connection refused") || !strings.HasSuffix(text, " cooldown=1m0s\n")):
			t.Errorf("records:\n%s\nwant one (the cooldown spares Redis the other calls), starting %q, ending with the cooldown", text, c.want)
		}
		if strings.Contains(text, "4242") {
			t.Errorf("the log holds the identifier:\n%s", text)
		}
	}
}

// refusingHook is a go-redis hook that fails every command with err, without sending it.
type refusingHook struct{ err error }

func (h refusingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h refusingHook) ProcessHook(redis.ProcessHook) redis.ProcessHook {
	return func(_ context.Context, cmd redis.Cmder) error { cmd.SetErr(h.err); return h.err }
}
func (h refusingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// An error of no known kind (here a hook's own, as a circuit breaker's would be) comes from between
// the client and Redis: the policy stands in for it, with the error in Result.Err, and FailError
// returns it.
func TestLimiterUnknownErrorAbsorbed(t *testing.T) {
	_, rdb := redistest.Private(t)
	ctx := context.Background()
	refused := errors.New("a hook's own error")
	rdb.AddHook(refusingHook{refused})
	for _, c := range []struct {
		policy  limiter.FailurePolicy
		allowed bool
		source  limiter.Source
	}{
		{limiter.FailOpen(), true, limiter.SourceFailOpen},
		{limiter.FailClosed(time.Second), false, limiter.SourceFailClosed},
	} {
		lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(c.policy), limiter.WithLogger(limitertest.Discard))
		if err != nil {
			t.Fatal(err)
		}
		res, err := lim.Allow(ctx, "k", limiter.PerMinute(2))
		if err != nil || res.Allowed != c.allowed || res.Source != c.source || !errors.Is(res.Err, refused) {
			t.Errorf("%v: %+v, %v; want allowed %v by %v, the hook's error in Err", c.source, res, err, c.allowed, c.source)
		}
	}
	lim, err := limiter.New(rdb, limiter.TokenBucket)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := lim.Allow(ctx, "k", limiter.PerMinute(2)); !errors.Is(err, refused) {
		t.Errorf("FailError: %+v, %v; want the hook's error returned", res, err)
	}

	// No cooldown follows such an error (nor any, with WithCooldown(0)): every decision meets it,
	// and the log has at most one record a second, the next saying how many it held back.
	var logs limitertest.Logs
	open, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithLogger(logs.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	start := time.Now()
	for range n {
		if res, err := open.Allow(ctx, "k", limiter.PerMinute(2)); err != nil || res.Source != limiter.SourceFailOpen {
			t.Fatalf("%+v, %v", res, err)
		}
	}
	if most := 1 + int(time.Since(start)/time.Second); logs.Len() < 1 || logs.Len() > most {
		t.Errorf("%d decisions by the policy logged %d records; want 1 to %d (one a second)", n, logs.Len(), most)
	}
}
