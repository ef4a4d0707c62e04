package contenders

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/bench/harness"
	"github.com/go-chi/httprate"
	httprateredis "github.com/go-chi/httprate-redis"
	"github.com/go-redis/redis_rate/v10"
	redsyncgoredis "github.com/go-redsync/redsync/v4/redis/goredis/v9"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/mennanov/limiters"
	"github.com/redis/go-redis/v9"
	sethvargo "github.com/sethvargo/go-redisstore"
	"github.com/throttled/throttled/v2"
	throttledstore "github.com/throttled/throttled/v2/store/goredisstore.v9"
	ulule "github.com/ulule/limiter/v3"
	ululeredis "github.com/ulule/limiter/v3/drivers/store/redis"
)

// autoPipeliner returns the client's asynchronous auto-pipeliner (the one go-redis keeps per
// client, as gatehouse's WithAutoPipeline uses).
func autoPipeliner(c *redis.Client) (*redis.AutoPipeliner, error) {
	ap, err := c.AsyncAutoPipeline()
	if err != nil {
		return nil, fmt.Errorf("auto-pipeliner: %w", err)
	}
	return ap, nil
}

// newEvalsha is the floor: EVALSHA of a script that returns 1, on one key, through the client or
// its auto-pipeliner.
func newEvalsha(auto bool) func(context.Context, harness.Env) (*harness.Instance, error) {
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		sha, err := env.Client.ScriptLoad(ctx, "return 1").Result()
		if err != nil {
			return nil, err
		}
		var via redis.Scripter = env.Client
		if auto {
			if via, err = autoPipeliner(env.Client); err != nil {
				return nil, err
			}
		}
		names := keyNames(env)
		keys := make([][]string, len(names)) // made once, so that the call itself allocates no slice
		for i, n := range names {
			keys[i] = []string{n}
		}
		return decisions(func(ctx context.Context, k int) (bool, error) {
			n, err := via.EvalSha(ctx, sha, keys[k]).Int64()
			return n == 1, err
		}), nil
	}
}

func newRedisRate(auto bool) func(context.Context, harness.Env) (*harness.Instance, error) {
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		var rl *redis_rate.Limiter
		if auto {
			ap, err := autoPipeliner(env.Client)
			if err != nil {
				return nil, err
			}
			rl = redis_rate.NewLimiter(ap)
		} else {
			rl = redis_rate.NewLimiter(env.Client)
		}
		g := gcraLimit(env.Limits)
		limit := redis_rate.Limit{Rate: int(g.rate), Period: g.period, Burst: int(g.burst)}
		keys := keyNames(env)
		return decisions(func(ctx context.Context, k int) (bool, error) {
			res, err := rl.Allow(ctx, keys[k], limit)
			if err != nil {
				return false, err
			}
			return res.Allowed > 0, nil
		}), nil
	}
}

func newUlule(auto bool) func(context.Context, harness.Env) (*harness.Instance, error) {
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		var client ululeredis.Client = env.Client
		if auto {
			ap, err := autoPipeliner(env.Client)
			if err != nil {
				return nil, err
			}
			client = ap
		}
		store, err := ululeredis.NewStoreWithOptions(client, ulule.StoreOptions{Prefix: "limiter"})
		if err != nil {
			return nil, err
		}
		w := windowLimit(env.Limits)
		lim := ulule.New(store, ulule.Rate{Period: w.period, Limit: w.limit})
		keys := keyNames(env)
		return decisions(func(ctx context.Context, k int) (bool, error) {
			c, err := lim.Get(ctx, keys[k])
			return !c.Reached, err
		}), nil
	}
}

func newThrottled(ctx context.Context, env harness.Env) (*harness.Instance, error) {
	store, err := throttledstore.NewCtx(env.Client, "throttled:")
	if err != nil {
		return nil, err
	}
	g := gcraLimit(env.Limits)
	rate := throttled.PerMin(int(g.rate))
	if env.Limits == harness.HugeRate {
		// throttled keeps the emission interval in whole nanoseconds: 2^30 per second would be 0.
		rate = throttled.PerSec(1_000_000)
	}
	rl, err := throttled.NewGCRARateLimiterCtx(store, throttled.RateQuota{MaxRate: rate, MaxBurst: int(g.burst)})
	if err != nil {
		return nil, err
	}
	keys := keyNames(env)
	return decisions(func(ctx context.Context, k int) (bool, error) {
		limited, _, err := rl.RateLimitCtx(ctx, keys[k], 1)
		return !limited, err
	}), nil
}

func newSethvargo(ctx context.Context, env harness.Env) (*harness.Instance, error) {
	pool := &redigo.Pool{
		MaxActive: env.PoolSize, MaxIdle: env.PoolSize, Wait: true,
		Dial: func() (redigo.Conn, error) {
			return redigo.Dial("tcp", env.Addr, redigo.DialDatabase(env.DB))
		},
	}
	w := windowLimit(env.Limits)
	store, err := sethvargo.NewWithPool(&sethvargo.Config{Tokens: uint64(w.limit), Interval: w.period}, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	keys := keyNames(env)
	inst := decisions(func(ctx context.Context, k int) (bool, error) {
		_, _, _, ok, err := store.Take(ctx, keys[k])
		return ok, err
	})
	inst.Close = func() { store.Close(context.Background()) } // closes the pool
	return inst, nil
}

// newMennanov returns a constructor of one of mennanov/limiters' Redis limiters: "fw" fixed window,
// "sw" sliding window, "tb" token bucket with a redsync lock. The library keeps one limiter object
// per identifier (its examples use a Registry); they are all made here, before the run.
func newMennanov(kind string) func(context.Context, harness.Env) (*harness.Instance, error) {
	type limit interface {
		Limit(context.Context) (time.Duration, error)
	}
	return func(ctx context.Context, env harness.Env) (*harness.Instance, error) {
		keys := keyNames(env)
		objs := make([]limit, len(keys))
		clock := limiters.NewSystemClock()
		w := windowLimit(env.Limits)
		var pool = redsyncgoredis.NewPool(env.Client)
		for i, key := range keys {
			prefix := "mennanov:" + kind + ":" + key
			switch kind {
			case "fw":
				objs[i] = limiters.NewFixedWindow(w.limit, w.period, limiters.NewFixedWindowRedis(env.Client, prefix), clock)
			case "sw":
				objs[i] = limiters.NewSlidingWindow(w.limit, w.period, limiters.NewSlidingWindowRedis(env.Client, prefix), clock, 1e-9)
			case "tb":
				g := gcraLimit(env.Limits)
				refill := g.period / time.Duration(g.rate)
				lock := limiters.NewLockRedis(pool, prefix+":lock")
				state := limiters.NewTokenBucketRedis(env.Client, prefix, time.Hour, false)
				objs[i] = limiters.NewTokenBucket(g.burst, refill, lock, state, clock, limiters.NewStdLogger())
			default:
				return nil, fmt.Errorf("mennanov: no limiter %q", kind)
			}
		}
		return decisions(func(ctx context.Context, k int) (bool, error) {
			_, err := objs[k].Limit(ctx)
			if errors.Is(err, limiters.ErrLimitExhausted) {
				return false, nil
			}
			return err == nil, err
		}), nil
	}
}

// newHTTPRate is go-chi/httprate with its Redis counter. Its API is HTTP middleware: OnLimit takes
// the response writer (it sets the X-RateLimit fields) and the request; each worker has its own.
func newHTTPRate(ctx context.Context, env harness.Env) (*harness.Instance, error) {
	w := windowLimit(env.Limits)
	counter := httprateredis.NewCounter(&httprateredis.Config{
		Client: env.Client, PrefixKey: env.Prefix + "httprate", WindowLength: w.period, FallbackDisabled: true,
	})
	rl := httprate.NewRateLimiter(int(w.limit), w.period, httprate.WithLimitCounter(counter))
	keys := keyNames(env)
	return &harness.Instance{Worker: func() harness.Op {
		sw := newSink()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://bench.test/", nil)
		return func(ctx context.Context, k int) error {
			sw.reset()
			if rl.OnLimit(sw, req, keys[k]) {
				if sw.code != 0 && sw.code != http.StatusTooManyRequests {
					return fmt.Errorf("httprate: status %d", sw.code)
				}
				return ErrDenied
			}
			return nil
		}
	}}, nil
}
