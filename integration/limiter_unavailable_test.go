package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// policyLimiters are one limiter per failure policy over one client, each asking Redis for every
// decision (no cooldown), with a short timeout, and telling failures to log.
type policyLimiters struct {
	plain  *limiter.Limiter
	byName map[string]*limiter.Limiter
	source map[string]limiter.Source
	logs   limitertest.Logs
	reader *sdkmetric.ManualReader
}

func newPolicyLimiters(t *testing.T, c redis.UniversalClient, alg limiter.Algorithm) *policyLimiters {
	t.Helper()
	p := &policyLimiters{byName: map[string]*limiter.Limiter{}, reader: sdkmetric.NewManualReader(),
		source: map[string]limiter.Source{"open": limiter.SourceFailOpen, "closed": limiter.SourceFailClosed, "local": limiter.SourceLocal}}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(p.reader))
	common := []limiter.Option{limiter.WithTimeout(300 * time.Millisecond), limiter.WithCooldown(0),
		limiter.WithLogger(p.logs.Logger()), limiter.WithMeterProvider(mp)}
	for name, o := range map[string]limiter.Option{
		"open":   limiter.WithFailurePolicy(limiter.FailOpen()),
		"closed": limiter.WithFailurePolicy(limiter.FailClosed(time.Second)),
		"local":  limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})),
	} {
		l, err := limiter.New(c, alg, append([]limiter.Option{o}, common...)...)
		if err != nil {
			t.Fatal(err)
		}
		p.byName[name] = l
	}
	var err error
	if p.plain, err = limiter.New(c, alg, limiter.WithTimeout(300*time.Millisecond), limiter.WithMeterProvider(mp)); err != nil {
		t.Fatal(err)
	}
	return p
}

// standIn checks that every policy decides in place of Redis, with the failure in Result.Err,
// and that without a policy the decision is an error.
func (p *policyLimiters) standIn(t *testing.T, ctx context.Context, key string, limits ...limiter.Limit) {
	t.Helper()
	for name, l := range p.byName {
		res, err := l.AllowAll(ctx, key, 1, limits...)
		if err != nil || res.Source != p.source[name] || res.Err == nil {
			t.Errorf("%s policy: %+v, %v; want a decision by the policy (%v) holding the failure", name, res, err, p.source[name])
		}
	}
	if _, err := p.plain.AllowAll(ctx, key, 1, limits...); err == nil {
		t.Error("no policy: no error")
	}
}

// refuse checks that every policy, and no policy, returns the error: the policy does not stand in.
func (p *policyLimiters) refuse(t *testing.T, ctx context.Context, key string, limits ...limiter.Limit) {
	t.Helper()
	before := p.logs.Len()
	lims := map[string]*limiter.Limiter{"no policy": p.plain}
	for name, l := range p.byName {
		lims[name] = l
	}
	for name, l := range lims {
		res, err := l.AllowAll(ctx, key, 1, limits...)
		if err == nil {
			t.Errorf("%s: %+v with a nil error; want the error returned, not decided by the policy", name, res)
		}
	}
	if n := p.logs.Len() - before; n != 0 {
		t.Errorf("%d failures logged for errors the policy does not stand in for", n)
	}
}

// errorTypes returns the decisions metric's error.type counts for decision=error.
func (p *policyLimiters) errorTypes(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for k, n := range decisionCounts(t, p.reader, "gatehouse.limiter.decision", "error.type") {
		if typ, ok := strings.CutPrefix(k, "error/"); ok {
			out[typ] += n
		}
	}
	return out
}

// An error of the script itself (here a real one: the ACL forbids a command the script runs) or a
// key of another type is returned to the caller under every policy, counted in the decisions
// metric with its error.type, and not logged as a failure the policy stood in for.
func TestLimiterScriptErrorsAreNotAbsorbed(t *testing.T) {
	srv, admin := redistest.Private(t)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "lim", "on", ">pw", "~*", "+@all", "-set", "-zadd").Err(); err != nil {
		t.Fatal(err)
	}
	c := redistest.ClientFor(t, srv.Addr, func(o *redis.Options) { o.Username, o.Password = "lim", "pw" })
	limit := limiter.PerMinute(5).WithName("api")
	for _, alg := range limitertest.Algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			p := newPolicyLimiters(t, c, alg)
			// Reads work: a peek is answered.
			if res, err := p.byName["open"].Peek(ctx, "acl", limit); err != nil || res.Source != limiter.SourceRedis {
				t.Fatalf("peek as the restricted user: %+v, %v", res, err)
			}
			p.refuse(t, ctx, "acl", limit)
			if got := p.errorTypes(t); got["error_reply"] != 4 || len(got) != 1 {
				t.Errorf("decisions with error.type: %v, want 4 of type error_reply", got)
			}
		})
	}

	// A key of another type under the limit's key: an error whatever the policy.
	for _, alg := range limitertest.Algorithms {
		t.Run(alg.String()+"/wrong type", func(t *testing.T) {
			p := newPolicyLimiters(t, admin, alg)
			id := "wrongtype-" + alg.String()
			if err := admin.HSet(ctx, limitertest.Key(limiter.DefaultKeyPrefix, alg, id, limit), "x", "y").Err(); err != nil {
				t.Fatal(err)
			}
			p.refuse(t, ctx, id, limit)
		})
	}
}

// waitReply polls c with PING until its error starts with prefix (or, for "", until it answers).
func waitReply(t *testing.T, c *redis.Client, prefix string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(ctx).Err()
		if (prefix == "" && err == nil) || (prefix != "" && err != nil && strings.HasPrefix(err.Error(), prefix)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("PING: %v, want a reply starting with %q", err, prefix)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Each way Redis can be unavailable that a real server can be made to show: the failure policy
// stands in, and without a policy the decision is an error. Server-wide conditions start a
// cooldown; TRYAGAIN, which concerns one slot, does not, and its log line does not say it does.
func TestLimiterUnavailableKinds(t *testing.T) {
	ctx := context.Background()
	limit := limiter.PerMinute(5).WithName("api")
	other := limiter.PerHour(50).WithName("hourly")

	type kind struct {
		name     string
		client   func(t *testing.T) redis.UniversalClient // set up for the kind
		begin    func(t *testing.T)                       // make Redis unavailable; nil: it already is
		end      func(t *testing.T)
		cooldown bool
		limits   []limiter.Limit
	}
	var (
		srv   *redistest.Server
		debug *redis.Client // a server the kinds below reconfigure
		busy  sync.WaitGroup
	)
	debugServer := func(t *testing.T) redis.UniversalClient {
		srv, debug = redistest.Private(t, "--enable-debug-command", "yes")
		return debug
	}
	config := func(kv ...string) func(t *testing.T) {
		return func(t *testing.T) {
			for i := 0; i < len(kv); i += 2 {
				if err := debug.ConfigSet(ctx, kv[i], kv[i+1]).Err(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	kinds := []kind{
		{name: "connection refused (server stopped)", client: debugServer, cooldown: true,
			begin: func(t *testing.T) { srv.Stop() },
			end: func(t *testing.T) {
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "timeout (CLIENT PAUSE)", client: debugServer, cooldown: true,
			begin: func(t *testing.T) {
				// Long enough for the 5 decisions below, 300ms each; paused, UNPAUSE does not get through.
				if err := debug.Do(ctx, "CLIENT", "PAUSE", 2500, "ALL").Err(); err != nil {
					t.Fatal(err)
				}
			},
			end: func(t *testing.T) { waitReply(t, redistest.ClientFor(t, srv.Addr), "") }},
		{name: "connection reset", cooldown: true,
			client: func(t *testing.T) redis.UniversalClient {
				f := newFaultyRedis(t)
				f.toxic(t, "reset", "reset_peer", "upstream", `"timeout":0`)
				return f.client
			}},
		{name: "LOADING", client: debugServer, cooldown: true,
			begin: func(t *testing.T) {
				if err := debug.Do(ctx, "DEBUG", "POPULATE", 2000).Err(); err != nil {
					t.Fatal(err)
				}
				config("key-load-delay", "1000", "loading-process-events-interval-bytes", "1024")(t)
				busy.Go(func() { debug.Do(context.Background(), "DEBUG", "RELOAD") })
				waitReply(t, redistest.ClientFor(t, srv.Addr), "LOADING")
			},
			end: func(t *testing.T) {
				busy.Wait()
				config("key-load-delay", "0")(t)
			}},
		{name: "BUSY", client: debugServer, cooldown: true,
			begin: func(t *testing.T) {
				config("busy-reply-threshold", "50")(t)
				long := redistest.ClientFor(t, srv.Addr, func(o *redis.Options) { o.ReadTimeout = -1 })
				busy.Go(func() { long.Eval(context.Background(), "while true do end", nil) })
				waitReply(t, redistest.ClientFor(t, srv.Addr), "BUSY")
			},
			end: func(t *testing.T) {
				redistest.ClientFor(t, srv.Addr).ScriptKill(ctx)
				busy.Wait()
			}},
		{name: "NOREPLICAS", client: debugServer, cooldown: true,
			begin: config("min-replicas-to-write", "1"), end: config("min-replicas-to-write", "0")},
		{name: "OOM (maxmemory, noeviction)", client: debugServer, cooldown: true,
			begin: config("maxmemory-policy", "noeviction", "maxmemory", "1"), end: config("maxmemory", "0")},
		{name: "MISCONF (a snapshot failed)", cooldown: true,
			client: func(t *testing.T) redis.UniversalClient {
				srv, debug = redistest.Private(t, "--enable-protected-configs", "yes", "--save", "3600 1")
				return debug
			},
			begin: func(t *testing.T) { redistest.FailSnapshot(t, debug) },
			end:   config("stop-writes-on-bgsave-error", "no")},
		{name: "READONLY (a replica)", cooldown: true,
			client: func(t *testing.T) redis.UniversalClient {
				master, _ := redistest.Private(t)
				replica, c := redistest.Private(t, "--replicaof", "127.0.0.1", fmt.Sprint(master.Port))
				_ = replica
				deadline := time.Now().Add(10 * time.Second)
				for {
					info, _ := c.Info(ctx, "replication").Result()
					if strings.Contains(info, "master_link_status:up") {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the replica did not connect: %s", info)
					}
					time.Sleep(20 * time.Millisecond)
				}
				return c
			}},
		{name: "MASTERDOWN (a replica of a dead master)", cooldown: true,
			client: func(t *testing.T) redis.UniversalClient {
				dead, _ := redistest.Private(t)
				dead.Stop()
				_, c := redistest.Private(t, "--replica-serve-stale-data", "no")
				if err := c.Do(ctx, "REPLICAOF", "127.0.0.1", dead.Port).Err(); err != nil {
					t.Fatal(err)
				}
				waitReply(t, c, "MASTERDOWN")
				return c
			}},
		{name: "CLUSTERDOWN (a cluster node serving no slot)", cooldown: true,
			client: func(t *testing.T) redis.UniversalClient {
				_, c := redistest.Private(t, "--cluster-enabled", "yes")
				return c
			}},
		{name: "TRYAGAIN (a slot migrating, keys split)", cooldown: false,
			limits: []limiter.Limit{limit, other},
			client: func(t *testing.T) redis.UniversalClient {
				// One of the two keys is there, the other is not: Redis cannot run the script until
				// the migration ends, and says TRYAGAIN (before running it: the value does not matter).
				var present []string
				for _, alg := range limitertest.Algorithms {
					present = append(present, limitertest.Key(limiter.DefaultKeyPrefix, alg, "tryagain", limit))
				}
				return migratingSlot(t, "tryagain", present...)
			}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			limits := k.limits
			if limits == nil {
				limits = []limiter.Limit{limit}
			}
			c := k.client(t)
			for _, alg := range limitertest.Algorithms {
				p := newPolicyLimiters(t, c, alg)
				var logs limitertest.Logs
				cool, err := limiter.New(c, alg, limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithCooldown(time.Hour),
					limiter.WithTimeout(300*time.Millisecond), limiter.WithLogger(logs.Logger()))
				if err != nil {
					t.Fatal(err)
				}
				id := "tryagain" // TRYAGAIN needs keys in the migrating slot: every decision uses this identifier
				if k.begin != nil {
					k.begin(t)
				}
				func() {
					if k.end != nil {
						defer k.end(t)
					}
					p.standIn(t, ctx, id, limits...)
					if _, err := cool.AllowAll(ctx, id, 1, limits...); err != nil {
						t.Fatalf("%v: %v", alg, err)
					}
					res, err := cool.AllowAll(ctx, id, 1, limits...)
					if err != nil || res.Source != limiter.SourceFailOpen {
						t.Fatalf("%v: second call %+v, %v", alg, res, err)
					}
					if got := errors.Is(res.Err, limiter.ErrUnavailable); got != k.cooldown {
						t.Errorf("%v: cooldown started = %v, want %v (second call's Err %v)", alg, got, k.cooldown, res.Err)
					}
				}()
				// The first failure asked of Redis is logged. With a cooldown the second call does
				// not ask; without one it does, and is logged only if a second has passed (at most
				// one record a second).
				line, least, most := logs.Text(), 1, 2
				if k.cooldown {
					most = 1
				}
				n := strings.Count(line, "WARN limiter: Redis unavailable algorithm="+alg.String()+" policy=fail_open error=")
				if wantFor := k.cooldown; logs.Len() < least || logs.Len() > most || n != logs.Len() || strings.Contains(line, "cooldown=1h0m0s") != wantFor {
					t.Errorf("%v: log %q; want %d to %d records saying fail_open, with cooldown=1h0m0s only when a cooldown starts (%v)", alg, line, least, most, wantFor)
				}
			}
		})
	}
}

// migratingSlot starts two cluster nodes, gives every slot to the first, writes the keys present
// there, and marks the slot of the identifier id as migrating to the second, so that a script
// over two keys of that slot, one present and one missing, is answered TRYAGAIN. It returns a
// client of the first node.
func migratingSlot(t *testing.T, id string, present ...string) *redis.Client {
	t.Helper()
	ctx := context.Background()
	a, ca := redistest.Private(t, "--cluster-enabled", "yes")
	b, cb := redistest.Private(t, "--cluster-enabled", "yes")
	_ = a
	if err := ca.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatal(err)
	}
	if err := ca.ClusterMeet(ctx, "127.0.0.1", fmt.Sprint(b.Port)).Err(); err != nil {
		t.Fatal(err)
	}
	idB, err := cb.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		nodes, _ := ca.ClusterNodes(ctx).Result()
		state, _ := ca.ClusterInfo(ctx).Result()
		if strings.Contains(nodes, idB) && strings.Contains(state, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not form: %s\n%s", nodes, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, k := range present {
		if err := ca.Set(ctx, k, "x", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
	}
	slot := script.Slot(id)
	if err := ca.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", idB).Err(); err != nil {
		t.Fatal(err)
	}
	return ca
}
