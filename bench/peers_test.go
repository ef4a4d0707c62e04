// Package bench compares gatehouse with other rate limiters on the same Redis, in the same run. It
// is a module of its own so that the libraries compared against never become gatehouse's
// dependencies. Run it with 'make bench-peers'.
package bench

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

var addr string

func TestMain(m *testing.M) {
	srv, err := redistest.StartServer()
	if err != nil {
		os.Stderr.WriteString("bench: " + err.Error() + "\n")
		os.Exit(1)
	}
	addr = srv.Addr
	code := m.Run()
	srv.Close()
	os.Exit(code)
}

var keys = func() []string {
	k := make([]string, 1000)
	for i := range k {
		k[i] = "client-" + strconv.Itoa(i)
	}
	return k
}()

// client returns a client of its own for one benchmark, with a pool large enough for the
// benchmark's 64 goroutines, so that no contender waits for connections.
func client(b *testing.B) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64, DisableIdentity: true})
	b.Cleanup(func() { c.Close() })
	return c
}

// parallel runs decide from 64 goroutines (on 2 cores: 32 per GOMAXPROCS) over 1000 keys.
func parallel(b *testing.B, decide func(ctx context.Context, key string) error) {
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if err := decide(ctx, keys[i%len(keys)]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Token bucket / GCRA decisions per second: go-redis/redis_rate against gatehouse, with and without
// auto-pipelining. The limit is never reached, so every decision writes.
func BenchmarkGCRA(b *testing.B) {
	b.Run("redis_rate", func(b *testing.B) {
		rl := redis_rate.NewLimiter(client(b))
		limit := redis_rate.Limit{Rate: 1 << 30, Burst: 1 << 30, Period: time.Second}
		parallel(b, func(ctx context.Context, key string) error {
			_, err := rl.Allow(ctx, key, limit)
			return err
		})
	})
	for _, auto := range []bool{false, true} {
		name, opts := "gatehouse", []limiter.Option{limiter.WithKeyPrefix("bench:")}
		if auto {
			name, opts = "gatehouse-auto-pipeline", append(opts, limiter.WithAutoPipeline())
		}
		b.Run(name, func(b *testing.B) {
			c := client(b)
			if err := gatehouse.Preload(context.Background(), c); err != nil {
				b.Fatal(err)
			}
			lim, err := limiter.New(c, limiter.TokenBucket, opts...)
			if err != nil {
				b.Fatal(err)
			}
			limit := limiter.PerSecond(1 << 30)
			parallel(b, func(ctx context.Context, key string) error {
				_, err := lim.Allow(ctx, key, limit)
				return err
			})
		})
	}
}
