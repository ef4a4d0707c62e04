// Package contenders sets up each library the harness compares: gatehouse (in gatehouse.go, the
// only file that calls its API), the other rate limiters over Redis (limiters.go), the bare
// EVALSHA floor, and the session stores (sessions.go).
package contenders

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/bench/harness"
)

// ErrDenied is returned by a decision that was refused: the harness sets limits that are never
// reached, so a refusal means the comparison is not measuring what it says.
var ErrDenied = errors.New("contenders: denied, but the limits are set never to be reached")

// keyNames returns the identifiers a contender decides on, prefixed so that no two contenders
// (nor a library's plain and auto-pipelined runs) share state.
func keyNames(env harness.Env) []string {
	k := make([]string, env.Keys)
	for i := range k {
		k[i] = env.Prefix + "client-" + strconv.Itoa(i)
	}
	return k
}

// decisions wraps a decision function as an instance whose workers share one operation.
func decisions(decide func(ctx context.Context, k int) (bool, error)) *harness.Instance {
	op := func(ctx context.Context, k int) error {
		ok, err := decide(ctx, k)
		if err != nil {
			return err
		}
		if !ok {
			return ErrDenied
		}
		return nil
	}
	return &harness.Instance{Worker: func() harness.Op { return op }}
}

// gcra is a token bucket's setting: rate tokens per period, bursts of burst.
type gcra struct {
	rate   int64
	period time.Duration
	burst  int64
}

// gcraLimit is the limit of every token bucket (GCRA) contender. Persistent: one token a minute,
// bursts of a million, so that each decision moves the state a minute ahead of now and it stays
// in Redis for the whole run, without ever running out.
func gcraLimit(m harness.LimitMode) gcra {
	if m == harness.HugeRate {
		return gcra{rate: 1 << 30, period: time.Second, burst: 1 << 30}
	}
	return gcra{rate: 1, period: time.Minute, burst: 1_000_000}
}

// window is a window limit: limit requests per period.
type window struct {
	limit  int64
	period time.Duration
}

// windowLimit is the limit of every fixed or sliding window contender: ten million an hour (a
// billion would be past what gatehouse computes exactly, rate × period in ms under 2^50).
func windowLimit(m harness.LimitMode) window {
	if m == harness.HugeRate {
		return window{limit: 1 << 30, period: time.Second}
	}
	return window{limit: 10_000_000, period: time.Hour}
}

// logLimit is the sliding log's limit: it keeps every admission of the period, so the period is
// short enough that a log holds tens of entries, not thousands.
func logLimit(m harness.LimitMode) window {
	if m == harness.HugeRate {
		return window{limit: 10_000, period: time.Second}
	}
	return window{limit: 10_000, period: 10 * time.Second}
}

// Session settings shared by every session contender.
const (
	idleTimeout = 30 * time.Minute
	lifetime    = 12 * time.Hour
)

// Module paths, for the versions the report gives.
const (
	modGatehouse = "github.com/gatehouse/gatehouse"
	modGoRedis   = "github.com/redis/go-redis/v9"
)

// Limiters returns the rate-limiter contenders, the floor first.
func Limiters() []harness.Contender {
	cs := []harness.Contender{
		{
			ID: "evalsha", Name: "go-redis EVALSHA of `return 1` (floor)", Kind: harness.Limiter,
			Modules: []string{modGoRedis}, Pool: "the shared client",
			Notes: "one round trip per call, nothing written: the least any script-per-decision limiter can cost",
			New:   newEvalsha(false),
		},
		{
			ID: "evalsha-auto", Name: "go-redis EVALSHA of `return 1`, auto-pipelined (floor)", Kind: harness.Limiter,
			Modules: []string{modGoRedis}, Pool: "the shared client's AutoPipeliner",
			Notes: "the floor of any limiter sent through go-redis' auto-pipeliner",
			New:   newEvalsha(true),
		},
		{
			ID: "redis_rate", Name: "go-redis/redis_rate v10 (GCRA)", Kind: harness.Limiter,
			Modules: []string{"github.com/go-redis/redis_rate/v10"},
			Pool:    "the shared client; its rediser interface also takes go-redis' AutoPipeliner",
			New:     newRedisRate(false),
		},
		{
			ID: "redis_rate-auto", Name: "go-redis/redis_rate v10, auto-pipelined", Kind: harness.Limiter,
			Modules: []string{"github.com/go-redis/redis_rate/v10"},
			Pool:    "the shared client's AutoPipeliner, passed as its rediser",
			Notes:   "not a documented use of redis_rate, but its interface accepts it",
			New:     newRedisRate(true),
		},
		{
			ID: "ulule", Name: "ulule/limiter v3 (fixed window)", Kind: harness.Limiter,
			Modules: []string{"github.com/ulule/limiter/v3"},
			Pool:    "the shared client; its Client interface also takes go-redis' AutoPipeliner",
			Notes:   "one script: INCRBY, and PEXPIRE on the first hit, so a window starts at its first hit",
			New:     newUlule(false),
		},
		{
			ID: "ulule-auto", Name: "ulule/limiter v3, auto-pipelined", Kind: harness.Limiter,
			Modules: []string{"github.com/ulule/limiter/v3"},
			Pool:    "the shared client's AutoPipeliner, passed as its Client",
			New:     newUlule(true),
		},
		{
			ID: "throttled", Name: "throttled/throttled v2 (GCRA, go-redis v9 store)", Kind: harness.Limiter,
			Modules: []string{"github.com/throttled/throttled/v2"},
			Pool:    "the shared client (any redis.UniversalClient)",
			Notes:   "GET+TIME pipelined, then a compare-and-swap sent with EVAL (the script text each time)",
			New:     newThrottled,
		},
		{
			ID: "sethvargo", Name: "sethvargo/go-limiter + go-redisstore (token bucket)", Kind: harness.Limiter,
			Modules: []string{"github.com/sethvargo/go-limiter", "github.com/sethvargo/go-redisstore"},
			Pool: "its own redigo pool, MaxActive = MaxIdle = the pool size, Wait; its New() default " +
				"keeps no idle connection and PINGs on every borrow, so NewWithPool is used",
			Notes: "one script, client clock",
			New:   newSethvargo,
		},
		{
			ID: "mennanov-fw", Name: "mennanov/limiters (fixed window)", Kind: harness.Limiter,
			Modules: []string{"github.com/mennanov/limiters"},
			Pool:    "the shared client; one limiter object per identifier, made before the run",
			Notes:   "INCR + PEXPIRE pipelined, client clock; a goroutine per call",
			New:     newMennanov("fw"),
		},
		{
			ID: "mennanov-sw", Name: "mennanov/limiters (sliding window)", Kind: harness.Limiter,
			Modules: []string{"github.com/mennanov/limiters"},
			Pool:    "the shared client; one limiter object per identifier, made before the run",
			Notes:   "INCR + PEXPIRE + GET pipelined, client clock; a goroutine per call",
			New:     newMennanov("sw"),
		},
		{
			ID: "mennanov-tb", Name: "mennanov/limiters (token bucket, redsync lock)", Kind: harness.Limiter,
			Modules: []string{"github.com/mennanov/limiters", "github.com/go-redsync/redsync/v4"},
			Pool:    "the shared client, for the state and the lock; one limiter object per identifier",
			Notes:   "lock, GET, SET, unlock: four round trips, the lock needed for correctness across processes",
			New:     newMennanov("tb"),
		},
		{
			ID: "httprate", Name: "go-chi/httprate + httprate-redis (sliding window)", Kind: harness.Limiter,
			Modules: []string{"github.com/go-chi/httprate", "github.com/go-chi/httprate-redis"},
			Pool:    "the shared client (a *redis.Client)",
			Notes: "MGET, then MULTI INCRBY EXPIRE, under one mutex per limiter: decisions are serialized " +
				"in the process; client clock; called through OnLimit with a response writer",
			New: newHTTPRate,
		},
	}
	cs = append(cs,
		harness.Contender{
			ID: "floor-coalesced-getset", Name: "gatehouse's coalescer, a script that only GETs and SETs each key (floor)",
			Kind: harness.Limiter, Modules: []string{modGatehouse}, Pool: "the shared client", Gatehouse: true,
			Notes: "the coalescer's calls, each decision a GET and a SET ... PXAT of its key and nothing decided: the most any exact coalesced algorithm can reach",
			New:   newCoalescedFloor("floor_getset", floorGetSetOne, floorGetSet),
		},
		harness.Contender{
			ID: "floor-coalesced-none", Name: "gatehouse's coalescer, a script that touches no key (floor)",
			Kind: harness.Limiter, Modules: []string{modGatehouse}, Pool: "the shared client", Gatehouse: true,
			Notes: "the coalescer's calls with nothing read or written: the coalescer's and the round trips' own cost",
			New:   newCoalescedFloor("floor_none", floorNoneOne, floorNone),
		},
	)
	for _, a := range gatehouseAlgorithms {
		for _, send := range []sending{oneCallEach, autoPipeline, coalesced} {
			c := harness.Contender{
				ID: "gatehouse-" + a.tag, Name: "gatehouse " + a.name, Kind: harness.Limiter,
				Modules: []string{modGatehouse}, Pool: "the shared client", Gatehouse: true,
				New: newGatehouseLimiter(a.alg, send),
			}
			switch send {
			case oneCallEach:
				c.Name += ", WithoutCoalescing"
			case autoPipeline:
				c.ID += "-auto"
				c.Name += ", WithAutoPipeline"
				c.Pool = "the shared client's AutoPipeliner"
			case coalesced:
				c.ID += "-coalesced"
				c.Name += ", coalesced (the default)"
				c.Notes = "concurrent decisions share script calls (one call of many decisions per round trip)"
			}
			cs = append(cs, c)
		}
	}
	return cs
}

// Sessions returns the session-store contenders.
func Sessions() []harness.Contender {
	return []harness.Contender{
		{
			ID: "gatehouse-session", Name: "gatehouse session.Middleware (touch on read)", Kind: harness.Session,
			Modules: []string{modGatehouse}, Pool: "the shared client", Gatehouse: true,
			Notes: "one round trip per read: HGETALL, then the touch script (expiry, last-seen); a field-level save script on write",
			New:   newGatehouseSessions,
		},
		{
			ID: "scs-idle", Name: "alexedwards/scs v2 + goredisstore, IdleTimeout (touch on read)", Kind: harness.Session,
			Modules: []string{"github.com/alexedwards/scs/v2", "github.com/alexedwards/scs/goredisstore"},
			Pool:    "the shared client (a *redis.Client)",
			Notes:   "GET, then a SET of the whole session on every request",
			New:     newSCS(true),
		},
		{
			ID: "scs", Name: "alexedwards/scs v2 + goredisstore, no idle timeout", Kind: harness.Session,
			Modules: []string{"github.com/alexedwards/scs/v2", "github.com/alexedwards/scs/goredisstore"},
			Pool:    "the shared client (a *redis.Client)",
			Notes:   "GET; a SET of the whole session on write",
			New:     newSCS(false),
		},
		{
			ID: "gorilla", Name: "gorilla/sessions + rbcervilla/redisstore v9", Kind: harness.Session,
			Modules: []string{"github.com/gorilla/sessions", "github.com/rbcervilla/redisstore/v9"},
			Pool:    "the shared client (any redis.UniversalClient)",
			Notes:   "GET; Save (a SET of the whole session, gob) on write",
			New:     newGorilla(false),
		},
		{
			ID: "gorilla-touch", Name: "gorilla/sessions + redisstore v9, Save on every request", Kind: harness.Session,
			Modules: []string{"github.com/gorilla/sessions", "github.com/rbcervilla/redisstore/v9"},
			Pool:    "the shared client (any redis.UniversalClient)",
			Notes:   "GET, then Save on every request to slide the expiry (gorilla's way to touch on read)",
			New:     newGorilla(true),
		},
	}
}

// NotBuilt lists the Go limiters over Redis that were considered and are not in the comparison.
func NotBuilt() []harness.Failure {
	return []harness.Failure{
		{Name: "envoyproxy/ratelimit", Reason: "a gRPC service, not a library to call in process"},
		{Name: "brandur/redis-cell", Reason: "a Redis module (CL.THROTTLE), not a Go library; the server here cannot load it"},
	}
}
