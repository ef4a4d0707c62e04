package script

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Run runs the script with EVALSHA. On NOSCRIPT (a fresh server, a restart, SCRIPT FLUSH, a
// failover to a replica) it loads the script on the node that owns keys[0] (or, without keys,
// wherever the client sends keyless commands) and runs it once more; the caller sees no error.
//
// The reply is returned as go-redis decodes it: int64, string, []any, or a redis.Error for an error
// reply. Errors are wrapped with the script's name; a nil reply is redis.Nil, wrapped. A call whose
// keys are in different cluster slots gets ErrCrossSlot and is not sent.
func (s *Script) Run(ctx context.Context, c redis.UniversalClient, keys []string, args ...any) (any, error) {
	return s.RunVia(ctx, c, c, keys, args...)
}

// RunVia is Run with the EVALSHA sent through via, such as an asynchronous *redis.AutoPipeliner
// of c (c.AsyncAutoPipeline()), which gathers concurrent calls into pipelines. NOSCRIPT recovery
// and a Cluster's route refresh go through c, the client via sends on.
//
// Through an auto-pipeliner, the call waits for its reply only as long as ctx allows: go-redis runs
// a queued command on the pipeliner's own context, so without this a call queued behind a batch
// that a stalled server does not answer would wait for that batch, whatever its deadline. A call
// that gives up so may still run later, as any call that timed out after it was sent. (The
// pipeliner must be the asynchronous one: the blocking face, c.AutoPipeline(), refuses the
// submission this needs, and the call fails with redis.ErrSubmitBlockingFace.)
func (s *Script) RunVia(ctx context.Context, via redis.Scripter, c redis.UniversalClient, keys []string, args ...any) (any, error) {
	if err := checkSlots(keys); err != nil {
		return nil, s.wrap(err)
	}
	v, err := s.evalSha(ctx, via, keys, args)
	if isNoScript(err) {
		if err := s.loadFor(ctx, c, keys); err != nil {
			return nil, s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
		}
		v, err = s.evalSha(ctx, via, keys, args)
	}
	if err != nil {
		refreshRoutes(c, err)
		return nil, s.wrap(err)
	}
	return v, nil
}

// evalSha sends EVALSHA through via and returns its reply; through an auto-pipeliner, or the
// error of ctx if ctx ends first.
func (s *Script) evalSha(ctx context.Context, via redis.Scripter, keys []string, args []any) (any, error) {
	ap, ok := via.(*redis.AutoPipeliner)
	if !ok {
		return via.EvalSha(ctx, s.sha, keys, args...).Result()
	}
	cmdArgs := make([]any, 0, 3+len(keys)+len(args))
	cmdArgs = append(cmdArgs, "evalsha", s.sha, len(keys))
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	cmd := redis.NewCmd(ctx, append(cmdArgs, args...)...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3) // as go-redis' EvalSha: routes the command by its first key
	}
	if err := ap.Submit(ctx, cmd).WaitContext(ctx); err != nil {
		return nil, err
	}
	return cmd.Result()
}

func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// Load loads the script on every node the client knows: each master and replica of a Cluster, each
// shard of a Ring, otherwise the one server the client talks to.
func (s *Script) Load(ctx context.Context, c redis.UniversalClient) error {
	return loadAll(ctx, c, []*Script{s})
}

// Preload loads every embedded script on every node the client knows: each master and replica of a
// Cluster (so that a replica promoted by a failover has them too), each shard of a Ring, otherwise
// the one server. After it, a call costs exactly one EVALSHA on the server.
func Preload(ctx context.Context, c redis.UniversalClient) error {
	return loadAll(ctx, c, Scripts())
}

func loadAll(ctx context.Context, c redis.UniversalClient, scripts []*Script) error {
	load := func(ctx context.Context, node *redis.Client) error { return loadOn(ctx, node, scripts) }
	switch cc := c.(type) {
	case *redis.ClusterClient:
		return cc.ForEachShard(ctx, load)
	case *redis.Ring:
		return cc.ForEachShard(ctx, load)
	default:
		return loadOn(ctx, c, scripts)
	}
}

// loadOn loads scripts on one node in one round trip and checks that the node agrees on each digest.
func loadOn(ctx context.Context, node redis.Cmdable, scripts []*Script) error {
	cmds := make([]*redis.StringCmd, len(scripts))
	_, _ = node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range scripts {
			cmds[i] = p.ScriptLoad(ctx, s.src)
		}
		return nil
	})
	for i, cmd := range cmds {
		sha, err := cmd.Result()
		if err != nil {
			return scripts[i].wrap(fmt.Errorf("SCRIPT LOAD: %w", err))
		}
		if sha != scripts[i].sha {
			return scripts[i].wrap(fmt.Errorf("SCRIPT LOAD returned digest %s, want %s", sha, scripts[i].sha))
		}
	}
	return nil
}

// loadFor loads the script on the node that a call with these keys is sent to.
func (s *Script) loadFor(ctx context.Context, c redis.UniversalClient, keys []string) error {
	node, err := nodeFor(ctx, c, keys)
	if err != nil {
		return err
	}
	return loadOn(ctx, node, []*Script{s})
}
