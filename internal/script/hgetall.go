package script

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// RunHGetAll runs the script as Run does and then reads the hash at keys[0] with HGETALL, in one
// MULTI/EXEC transaction: one round trip, and nothing runs between the two. It returns the
// script's reply as Run does (int64, string, []any) and the hash. A script that answers only its verdict and leaves the
// reading to HGETALL spares Redis what carrying a large hash into Lua and back out as the reply
// costs. NOSCRIPT is recovered as Run recovers it: the script is loaded on the keys' node and the
// transaction sent once more.
func (s *Script) RunHGetAll(ctx context.Context, c redis.UniversalClient, keys []string, args ...any) (reply any, hash map[string]string, err error) {
	if len(keys) == 0 {
		return nil, nil, s.wrap(errors.New("RunHGetAll without a key"))
	}
	if err := checkSlots(keys); err != nil {
		return nil, nil, s.wrap(err)
	}
	run, read, err := s.runHGetAll(ctx, c, keys, args)
	if isNoScript(run.Err()) {
		if err := s.loadFor(ctx, c, keys); err != nil {
			return nil, nil, s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
		}
		run, read, err = s.runHGetAll(ctx, c, keys, args)
	}
	if err != nil {
		refreshRoutes(c, err)
		return nil, nil, s.wrap(err)
	}
	return run.Val(), read.Val(), nil
}

// argHGetAll is the command's name, boxed once.
var argHGetAll any = "hgetall"

// runHGetAll sends the transaction of RunHGetAll once.
func (s *Script) runHGetAll(ctx context.Context, c redis.UniversalClient, keys []string, args []any) (run *redis.Cmd, read *redis.MapStringStringCmd, err error) {
	// One array holds both commands' arguments: EVALSHA's, then HGETALL's, which reuses the key
	// boxed for EVALSHA.
	n := 3 + len(keys) + len(args)
	a := make([]any, 0, n+2)
	a = append(a, argEvalSha, s.shaArg, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	a = append(a, argHGetAll, a[3])
	run, read = redis.NewCmd(ctx, a[:n:n]...), redis.NewMapStringStringCmd(ctx, a[n:]...)
	tx := c.TxPipeline()
	_ = tx.Process(ctx, run)
	_ = tx.Process(ctx, read)
	_, err = tx.Exec(ctx)
	return run, read, err
}
