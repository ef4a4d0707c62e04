package script_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// A Ring of two private servers: Preload reaches both shards, NOSCRIPT is recovered on the shard
// that answered, in single calls (Run, RunInts) and in batches, each call goes to its key's shard,
// and a limiter works across the shards.
func TestRing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against real Redis; skipped by -short")
	}
	redistest.Get(t, "standalone") // skips unless standalone servers are selected
	addrs := map[string]string{}
	for i := range 2 {
		s, err := redistest.StartServer()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		addrs[fmt.Sprint("shard", i)] = s.Addr
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: addrs, DisableIdentity: true})
	defer ring.Close()
	ctx := context.Background()
	flush := func() {
		if err := ring.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.ScriptFlush(ctx).Err() }); err != nil {
			t.Fatal(err)
		}
	}

	if err := script.Preload(ctx, ring); err != nil {
		t.Fatal(err)
	}
	clock, _ := script.Lookup("clock")
	if err := ring.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
		ok, err := n.ScriptExists(ctx, clock.SHA1()).Result()
		if err == nil && !ok[0] {
			err = fmt.Errorf("shard %s lacks the preloaded script", n.Options().Addr)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}

	prefix := redistest.Prefix(t)
	s := incrScript(prefix)
	flush()
	for i := range 20 { // keys on both shards
		if v, err := s.Run(ctx, ring, []string{fmt.Sprintf("%s{k%d}", prefix, i)}, 2); err != nil || v != int64(2) {
			t.Fatalf("Run after SCRIPT FLUSH on a ring: %v, %v", v, err)
		}
	}
	flush()
	calls := make([]script.Call, 50)
	for i := range calls {
		calls[i] = script.Call{Script: s, Keys: []string{fmt.Sprintf("%s{k%d}", prefix, i)}, Args: []any{1}}
	}
	for i, r := range script.RunBatch(ctx, ring, calls) {
		want := int64(1)
		if i < 20 {
			want = 3
		}
		if r.Err != nil || r.Val != want {
			t.Fatalf("batch call %d on a ring = %v, %v; want %d", i, r.Val, r.Err, want)
		}
	}

	if err := ring.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
		if k := n.Keys(ctx, prefix+"*").Val(); len(k) == 0 {
			return fmt.Errorf("shard %s holds none of the keys: the test does not cover both shards", n.Options().Addr)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// RunInts, which builds the command itself, sends each call to the shard of its key (where
	// the key is found), and recovers NOSCRIPT there.
	si := intsScript(prefix)
	flush()
	for i := range 20 {
		key := fmt.Sprintf("%s{i%d}", prefix, i)
		if v, err := runInts(ctx, si, ring, ring, []string{key}, 5, 300); err != nil || len(v) != 4 || v[0] != 5 {
			t.Fatalf("RunInts after SCRIPT FLUSH on a ring: %v, %v", v, err)
		}
		shard, err := ring.GetShardClientForKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := shard.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Fatalf("RunInts on a ring: %s is not on its shard %s (%d, %v)", key, shard.Options().Addr, n, err)
		}
	}

	// RunHGetAll sends its pipeline to the shard of its keys, and recovers NOSCRIPT there.
	sh := hashScript(prefix)
	flush()
	for i := range 20 {
		key := fmt.Sprintf("%s{h%d}", prefix, i)
		for call := range 2 { // the second reads what the first wrote
			hash, reply, err := sh.RunHGetAll(ctx, ring, []string{key, key + ":other"}, "v")
			if r, ok := reply.([]any); err != nil || !ok || len(r) != 2 || hash["n"] != []string{"", "1"}[call] {
				t.Fatalf("RunHGetAll %d after SCRIPT FLUSH on a ring: reply %#v, hash %v, err %v", call, reply, hash, err)
			}
		}
	}

	lim, err := limiter.New(ring, limiter.SlidingWindow, limiter.WithKeyPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		id := fmt.Sprint("client-", i%4)
		r, err := lim.AllowAll(ctx, id, 1, limiter.PerMinute(10), limiter.PerHour(100))
		if err != nil || !r.Allowed {
			t.Fatalf("AllowAll on a ring: %+v, %v", r, err)
		}
	}
	for i := range 4 {
		if r, _ := lim.Peek(ctx, fmt.Sprint("client-", i), limiter.PerMinute(10)); r.Remaining != 0 {
			t.Errorf("client-%d has %d left, want 0", i, r.Remaining)
		}
	}
}
