package redistest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// EachNode runs fn on every node of c: each master and replica of a cluster, or the one server.
func EachNode(ctx context.Context, t testing.TB, c redis.UniversalClient, fn func(ctx context.Context, n *redis.Client) error) {
	t.Helper()
	var err error
	switch c := c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachShard(ctx, fn)
	case *redis.Client:
		err = fn(ctx, c)
	default:
		t.Fatalf("unexpected client type %T", c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// FlushScripts empties the script cache of every node, as a restart or SCRIPT FLUSH would.
func FlushScripts(ctx context.Context, t testing.TB, c redis.UniversalClient) {
	t.Helper()
	EachNode(ctx, t, c, func(ctx context.Context, n *redis.Client) error { return n.ScriptFlush(ctx).Err() })
}

// CommandCalls sums, over every master, the calls counted in INFO commandstats for each command
// (keys as Redis names them, with the statistic: "evalsha.calls", "eval.calls",
// "script|load.calls", "evalsha.failed_calls").
func CommandCalls(ctx context.Context, t testing.TB, b *Backend) map[string]int64 {
	t.Helper()
	masters, err := b.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	total := map[string]int64{}
	for _, n := range masters {
		info, err := n.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		for cmd, stats := range parseCommandStats(info) {
			for k, v := range stats {
				total[cmd+"."+k] += v
			}
		}
		mu.Unlock()
	}
	return total
}

// parseCommandStats parses lines such as
// "cmdstat_evalsha:calls=3,usec=40,usec_per_call=13.33,rejected_calls=0,failed_calls=1".
func parseCommandStats(info string) map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
		if !ok || !strings.HasPrefix(line, "cmdstat_") {
			continue
		}
		stats := map[string]int64{}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				stats[k] = n
			}
		}
		out[name] = stats
	}
	return out
}

// Delta returns after[k] - before[k] for every k in keys.
func Delta(before, after map[string]int64, keys ...string) map[string]int64 {
	d := map[string]int64{}
	for _, k := range keys {
		d[k] = after[k] - before[k]
	}
	return d
}

// AssertKeysExpire fails the test if any key under prefix, on any master, has no expiry.
func AssertKeysExpire(t testing.TB, b *Backend, prefix string) {
	t.Helper()
	ctx := context.Background()
	masters, err := b.Masters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range masters {
		_, missing, err := KeysWithoutExpiry(ctx, n, prefix+"*")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range missing {
			t.Errorf("key %q has no expiry", k)
		}
	}
}

// KeysWithoutExpiry scans the server behind n for keys matching the pattern match and returns how
// many it saw and those without an expiry (PTTL -1), asking the PTTLs of each page of the scan in
// one pipeline. A key that expires between the scan and its PTTL is counted, and not missing.
func KeysWithoutExpiry(ctx context.Context, n *redis.Client, match string) (scanned int, missing []string, err error) {
	var cursor uint64
	for page := 0; page < 1_000_000; page++ {
		var keys []string
		if keys, cursor, err = n.Scan(ctx, cursor, match, 1000).Result(); err != nil {
			return scanned, missing, err
		}
		scanned += len(keys)
		ttls := make([]*redis.DurationCmd, len(keys))
		if _, err := n.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				ttls[i] = p.PTTL(ctx, k)
			}
			return nil
		}); err != nil {
			return scanned, missing, err
		}
		for i, ttl := range ttls {
			// -2: expired since the scan saw it; anything else must be a positive expiry.
			if ttl.Val() == -1 {
				missing = append(missing, keys[i])
			}
		}
		if cursor == 0 {
			return scanned, missing, nil
		}
	}
	return scanned, missing, errors.New("redistest: SCAN did not end")
}
