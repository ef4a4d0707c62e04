package script

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// On a Cluster whose slot is migrating, a call on a key the old master no longer holds is sent
// (ASK) to the importing master. When neither has the script, the NOSCRIPT comes from the
// importing master; loading the script on the slot's master alone would leave the call failing
// NOSCRIPT again, and the call must succeed.
func TestNoScriptBehindAsk(t *testing.T) {
	_, rdb := redistest.PrivateCluster(t)
	ctx := context.Background()
	const key = "{ask}moved"
	_, to, err := redistest.StartMigration(ctx, rdb, key)
	if err != nil {
		t.Fatal(err)
	}

	s := New("ask_test", "redis.call('SET', KEYS[1], '1', 'PX', 60000) return {7}")
	got, err := s.RunInts(ctx, rdb, rdb, []string{key}, make([]any, 4))
	if err != nil || len(got) != 1 || got[0] != 7 {
		t.Fatalf("RunInts through ASK to a master without the script: %v, %v; want [7]", got, err)
	}
	var onTo *redis.IntCmd
	if _, err := to.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "ASKING")
		onTo = p.Exists(ctx, key)
		return nil
	}); err != nil || onTo.Val() != 1 {
		t.Errorf("the key on the importing master: %v, %v", onTo.Val(), err)
	}
}
