package script

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// RunHGetAll reads the hash at keys[0] with HGETALL and then runs the script as Run does, in one
// pipeline: one round trip, the read first. It returns the hash and the script's reply as Run
// returns it (int64, string, []any). A script that answers only its verdict on the hash and
// leaves the reading to HGETALL spares Redis what carrying a large hash into Lua and back out as
// the reply costs.
//
// The two commands are not a transaction: another client's command may run between them. The
// caller's verdict must hold for the hash as read: it does when what the script checks, once
// false, stays false for the key (a session destroyed, expired, rotated away or signed out never
// comes back), so that a script that finds the key live proves it was live when it was read. Not
// MULTI/EXEC, because a server at maxmemory under noeviction refuses every command queued in a
// transaction, reads included, where it still runs these two.
//
// NOSCRIPT is recovered as Run recovers it: the script is loaded on the keys' node and both
// commands sent once more, the read first.
func (s *Script) RunHGetAll(ctx context.Context, c redis.UniversalClient, keys []string, args ...any) (hash map[string]string, reply any, err error) {
	if len(keys) == 0 {
		return nil, nil, s.wrap(errors.New("RunHGetAll without a key"))
	}
	if err := checkSlots(keys); err != nil {
		return nil, nil, s.wrap(err)
	}
	read, run := s.runHGetAll(ctx, c, keys, args)
	if isNoScript(run.Err()) {
		if err := s.loadFor(ctx, c, keys); err != nil {
			return nil, nil, s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
		}
		read, run = s.runHGetAll(ctx, c, keys, args)
	}
	err = read.Err()
	if err == nil {
		err = run.Err()
	}
	if err != nil {
		refreshRoutes(c, err)
		return nil, nil, s.wrap(err)
	}
	return read.Val(), run.Val(), nil
}

// argHGetAll is the command's name, boxed once.
var argHGetAll any = "hgetall"

// runHGetAll sends the pipeline of RunHGetAll once. An error of the pipeline that reached neither
// command is given to both (failPipeline).
func (s *Script) runHGetAll(ctx context.Context, c redis.UniversalClient, keys []string, args []any) (read *redis.MapStringStringCmd, run *redis.Cmd) {
	// One array holds both commands' arguments: HGETALL's, then EVALSHA's, which reuses the key
	// boxed for HGETALL.
	n := 3 + len(keys) + len(args)
	a := make([]any, 0, 2+n)
	a = append(a, argHGetAll, keys[0])
	a = append(a, argEvalSha, s.shaArg, len(keys), a[1])
	for _, k := range keys[1:] {
		a = append(a, k)
	}
	a = append(a, args...)
	read, run = redis.NewMapStringStringCmd(ctx, a[:2:2]...), redis.NewCmd(ctx, a[2:]...)
	p := c.Pipeline()
	_ = p.Process(ctx, read)
	_ = p.Process(ctx, run)
	if _, err := p.Exec(ctx); err != nil {
		failPipeline([]redis.Cmder{read, run}, err)
	}
	return read, run
}
