package harness

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// probeDB is the database the memory probe uses, so that it sees only the keys it made.
const probeDB = 9

type memory struct{ bytes, keys float64 }

// probeMemory sets the contender up on an empty database of its own, makes five operations on
// each of cfg.MemoryProbe identifiers, and returns MEMORY USAGE summed over every key that
// appeared, and the number of keys, per identifier.
func probeMemory(ctx context.Context, cfg Config, e Entry, env Env) (memory, error) {
	n := cfg.MemoryProbe
	if n < 1 {
		n = 1
	}
	c := redis.NewClient(&redis.Options{Addr: cfg.Addr, DB: probeDB, PoolSize: 4})
	defer c.Close()
	if err := c.FlushDB(ctx).Err(); err != nil {
		return memory{}, fmt.Errorf("memory probe: FLUSHDB: %w", err)
	}
	defer c.FlushDB(ctx)
	env.Client, env.DB, env.Keys, env.Prefix = c, probeDB, n, "probe:"
	inst, err := e.Contender.New(ctx, env)
	if err != nil {
		return memory{}, err
	}
	if inst.Close != nil {
		defer inst.Close()
	}
	op := inst.Worker()
	for range 5 {
		for k := 0; k < n; k++ {
			if err := op(ctx, k); err != nil {
				return memory{}, fmt.Errorf("memory probe: %w", err)
			}
		}
	}
	var total, keys int64
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		used, err := c.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err == redis.Nil {
			continue // expired since SCAN saw it
		}
		if err != nil {
			return memory{}, fmt.Errorf("memory probe: MEMORY USAGE: %w", err)
		}
		total += used
		keys++
	}
	if err := iter.Err(); err != nil {
		return memory{}, fmt.Errorf("memory probe: SCAN: %w", err)
	}
	return memory{bytes: float64(total) / float64(n), keys: float64(keys) / float64(n)}, nil
}
