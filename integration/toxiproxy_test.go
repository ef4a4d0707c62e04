package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/session"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// faultyRedis is a private redis-server behind an in-process toxiproxy, with a client that talks
// to it through the proxy.
type faultyRedis struct {
	proxy  *toxiproxy.Proxy
	client *redis.Client
}

func newFaultyRedis(t testing.TB) *faultyRedis {
	t.Helper()
	srv, _ := redistest.Private(t)
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	proxy := toxiproxy.NewProxy(api, "redis", "127.0.0.1:0", srv.Addr)
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Stop)
	c := redis.NewClient(&redis.Options{Addr: proxy.Listen, MaxRetries: -1, DisableIdentity: true,
		DialTimeout: time.Second, ReadTimeout: 2 * time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return &faultyRedis{proxy: proxy, client: c}
}

// toxic adds a toxic to every byte flowing in stream ("upstream": to Redis, "downstream": back).
func (f *faultyRedis) toxic(t testing.TB, name, typ, stream, attrs string) {
	t.Helper()
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":{%s}}`, name, typ, stream, attrs)
	if _, err := f.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatal(err)
	}
}

func (f *faultyRedis) heal(t *testing.T, name string) {
	t.Helper()
	if err := f.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// Replies cut into one-byte segments change nothing: exact decisions, sessions read back whole.
func TestFaultFragmentedReplies(t *testing.T) {
	f := newFaultyRedis(t)
	f.toxic(t, "slicer", "slicer", "downstream", `"average_size":1,"size_variation":0,"delay":0`)
	ctx := context.Background()
	lim, err := limiter.New(f.client, limiter.SlidingWindow)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		res, err := lim.AllowAll(ctx, "frag", 1, limiter.PerMinute(5), limiter.PerHour(100))
		if err != nil || res.Allowed != (i < 5) {
			t.Fatalf("request %d: %+v, %v", i, res, err)
		}
	}
	st, err := session.NewStore(f.client)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.New()
	s.Put("note", strings.Repeat("é", 500))
	if err := st.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	got, err := st.Load(ctx, s.Token())
	if err != nil || got.GetString("note") != strings.Repeat("é", 500) {
		t.Fatalf("session through one-byte segments: %v", err)
	}
}

// Latency beyond WithTimeout: the local fallback decides, then Redis again once healed and the
// cooldown is over.
func TestFaultLatency(t *testing.T) {
	f := newFaultyRedis(t)
	ctx := context.Background()
	lim, err := limiter.New(f.client, limiter.TokenBucket, limiter.WithTimeout(50*time.Millisecond),
		limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})), limiter.WithCooldown(100*time.Millisecond), limiter.WithLogger(limitertest.Discard))
	if err != nil {
		t.Fatal(err)
	}
	limit := limiter.PerHour(3)
	if res, err := lim.Allow(ctx, "lat", limit); err != nil || res.Source != limiter.SourceRedis {
		t.Fatalf("before: %+v, %v", res, err)
	}
	f.toxic(t, "latency", "latency", "downstream", `"latency":400,"jitter":0`)
	res, err := lim.Allow(ctx, "lat", limit)
	if err != nil || res.Source != limiter.SourceLocal || !res.Allowed || !redistest.IsTimeout(res.Err) {
		t.Fatalf("with 400ms latency: %+v, %v; want decided locally after the 50ms timeout", res, err)
	}
	f.heal(t, "latency")
	time.Sleep(600 * time.Millisecond) // the late reply has arrived or its connection is gone; the cooldown is over
	// The call that timed out had (almost always) reached Redis, which ran it: Redis counted it
	// although the caller got the local decision. So this is the third request Redis counts, not
	// the second: a timeout makes the limit stricter, never looser.
	res, err = lim.Allow(ctx, "lat", limit)
	if err != nil || res.Source != limiter.SourceRedis || !res.Allowed || res.Remaining > 1 {
		t.Fatalf("healed: %+v, %v; want Redis to decide, having counted 2 or 3", res, err)
	}
	t.Logf("healed: Redis counted the timed-out request: %v", res.Remaining == 0)
}

// Connections reset mid-call: errors, not panics or wrong answers; then recovery.
func TestFaultConnectionReset(t *testing.T) {
	f := newFaultyRedis(t)
	ctx := context.Background()
	plain, err := limiter.New(f.client, limiter.FixedWindow)
	if err != nil {
		t.Fatal(err)
	}
	st, err := session.NewStore(f.client)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.New()
	s.Put("k", "v")
	if err := st.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	f.toxic(t, "reset", "reset_peer", "upstream", `"timeout":0`)
	var netErr net.Error
	if _, err := plain.Allow(ctx, "reset", limiter.PerMinute(5)); err == nil {
		t.Error("decision through a reset connection: no error")
	} else if errors.As(err, &netErr) && netErr.Timeout() {
		t.Errorf("decision through a reset connection: a timeout (%v), want the reset", err)
	}
	if _, err := st.Load(ctx, s.Token()); err == nil || errors.Is(err, session.ErrNotFound) {
		t.Errorf("load through a reset connection: %v, want an error that is not ErrNotFound", err)
	}
	f.heal(t, "reset")
	if res, err := plain.Allow(ctx, "reset", limiter.PerMinute(5)); err != nil || !res.Allowed || res.Remaining != 4 {
		t.Errorf("healed: %+v, %v; want the first request counted once", res, err)
	}
	if got, err := st.Load(ctx, s.Token()); err != nil || got.GetString("k") != "v" {
		t.Errorf("healed: load %v", err)
	}
}
