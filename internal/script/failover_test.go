package script_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// A master dies and its replica takes over. Decisions for keys in its slots go on with no error
// reaching the caller, and state written before the failover (replicated) is still counted. The
// script cache of the promoted replica is whatever it had: Preload loads replicas too, and NOSCRIPT
// recovery covers the rest, so the test flushes the replica's cache before the failover to make sure
// recovery is what it exercises.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test against real Redis; skipped by -short")
	}
	cl, rdb := redistest.PrivateCluster(t)
	ctx := context.Background()
	if err := gatehouse.Preload(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	lim, err := limiter.New(rdb, limiter.FixedWindow)
	if err != nil {
		t.Fatal(err)
	}
	per := limiter.PerHour(10)
	const id = "failover-client"
	for range 3 {
		if r, err := lim.Allow(ctx, id, per); err != nil || !r.Allowed {
			t.Fatalf("before failover: %+v, %v", r, err)
		}
	}
	master, err := cl.MasterFor(ctx, "{"+id+"}")
	if err != nil {
		t.Fatal(err)
	}
	// Wait until the write reached the replica, then empty every replica's script cache.
	if err := rdb.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		return n.Do(ctx, "WAIT", 1, 2000).Err()
	}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ForEachSlave(ctx, func(ctx context.Context, n *redis.Client) error { return n.ScriptFlush(ctx).Err() }); err != nil {
		t.Fatal(err)
	}

	master.Stop()
	if err := cl.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The client still routes the slots to the dead master; the first failed call makes the runtime
	// reload the slot map (go-redis alone would wait for its 60-second periodic reload), and calls
	// after it reach the promoted replica. Allow a few tries, as an application retrying would.
	var r limiter.Result
	healed := time.Now()
	failed := 0
	for deadline := healed.Add(10 * time.Second); ; failed++ {
		r, err = lim.Allow(ctx, id, per)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("after failover, still failing after %d tries: %v", failed, err)
	}
	t.Logf("after the failover: %d failed calls, routed again after %v", failed, time.Since(healed).Round(time.Millisecond))
	if !r.Allowed || r.Remaining != 6 {
		t.Errorf("after failover: %+v; want allowed with 6 remaining (the 3 before it still counted)", r)
	}

	// The old master comes back as a replica; the cluster heals and decisions go on.
	if err := master.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitHealthy(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if r, err := lim.Allow(ctx, id, per); err != nil || r.Remaining != 5 {
		t.Errorf("after the old master rejoined: %+v, %v", r, err)
	}
}
