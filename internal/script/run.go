package script

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Run runs the script with EVALSHA. On NOSCRIPT (a fresh server, a restart, SCRIPT FLUSH, a
// failover to a replica) it loads the script on the node that owns keys[0] (or, without keys,
// wherever the client sends keyless commands; on a Cluster, then on every other node that answers)
// and runs it once more; the caller sees no error.
//
// The reply is returned as go-redis decodes it: int64, string, []any, or a redis.Error for an error
// reply. Errors are wrapped with the script's name; a nil reply is redis.Nil, wrapped. A call whose
// keys are in different cluster slots gets ErrCrossSlot and is not sent.
func (s *Script) Run(ctx context.Context, c redis.UniversalClient, keys []string, args ...any) (any, error) {
	if err := checkSlots(keys); err != nil {
		return nil, s.wrap(err)
	}
	v, err := c.EvalSha(ctx, s.sha, keys, args...).Result()
	if isNoScript(err) {
		if err := s.loadFor(ctx, c, keys); err != nil {
			return nil, s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
		}
		v, err = c.EvalSha(ctx, s.sha, keys, args...).Result()
	}
	if err != nil {
		refreshRoutes(c, err)
		return nil, s.wrap(err)
	}
	return v, nil
}

// Via is what RunInts sends its EVALSHA through: a client, or an asynchronous *redis.AutoPipeliner
// of it (c.AsyncAutoPipeline()), which gathers concurrent calls into pipelines.
type Via interface {
	Process(ctx context.Context, cmd redis.Cmder) error
}

// ErrBadReply is returned, wrapped, when a call of RunInts, or a command of IntsCmd, was
// answered with something other than an array of integers, or a command of StringCmd with
// something other than a string; internal/coalesce also wraps it for a batch reply it cannot
// unpack. Redis answered: it says nothing of the server's health.
var ErrBadReply = errors.New("gatehouse: script reply of the wrong shape")

// RunInts runs a script whose reply is an array of integers, or an error reply, as Run does (the
// same NOSCRIPT recovery, the same ErrCrossSlot check), and returns the array decoded by go-redis
// into one []int64, without the []any and the boxed integers of Run's reply. A reply of another
// shape is an error wrapping ErrBadReply; a nil element (Lua false) reads as 0. An error must be
// the whole reply, never an element of the array: go-redis stops reading at such an element,
// leaving the rest of the array on the connection.
//
// args is the whole command, built by the caller in one slice: args[:3+len(keys)] are left for
// RunInts, which fills them with EVALSHA, the digest, numkeys and keys; the script's ARGV follow.
// The command keeps args, which the caller must not change after the call (through an
// auto-pipeliner, a call that gave up may still be sent later).
//
// The EVALSHA goes through via, such as an asynchronous *redis.AutoPipeliner of c; NOSCRIPT
// recovery and a Cluster's route refresh go through c, the client via sends on. Through an
// auto-pipeliner, the call waits for its reply only as long as ctx allows: go-redis runs a queued
// command on the pipeliner's own context, so without this a call queued behind a batch that a
// stalled server does not answer would wait for that batch, whatever its deadline. A call that
// gives up so may still run later, as any call that timed out after it was sent. (The pipeliner
// must be the asynchronous one: the blocking face, c.AutoPipeline(), refuses the submission this
// needs, and the call fails with redis.ErrSubmitBlockingFace.)
func (s *Script) RunInts(ctx context.Context, via Via, c redis.UniversalClient, keys []string, args []any) ([]int64, error) {
	if err := checkSlots(keys); err != nil {
		return nil, s.wrap(err)
	}
	args[0], args[1], args[2] = argEvalSha, s.shaArg, len(keys)
	for i, k := range keys {
		args[3+i] = k
	}
	v, err := s.sendInts(ctx, via, len(keys), args)
	if isNoScript(err) {
		if err := s.loadFor(ctx, c, keys); err != nil {
			return nil, s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
		}
		v, err = s.sendInts(ctx, via, len(keys), args)
	}
	if err != nil {
		refreshRoutes(c, err)
		return nil, s.wrap(err)
	}
	return v, nil
}

// sendInts sends the EVALSHA of args (whose numkeys keys start at args[3]) through via and returns
// its reply; through an auto-pipeliner, or the error of ctx if ctx ends first.
func (s *Script) sendInts(ctx context.Context, via Via, numkeys int, args []any) ([]int64, error) {
	cmd := newIntsCmd(ctx, args, numkeys)
	var err error
	if ap, ok := via.(*redis.AutoPipeliner); ok {
		err = ap.Submit(ctx, cmd).WaitContext(ctx)
	} else {
		err = via.Process(ctx, cmd)
	}
	if err != nil {
		return nil, shapeErr(err)
	}
	return cmd.Val(), nil
}

// IntsCmd returns the EVALSHA command of one call of s whose reply is an array of integers, for
// Exec: Cmd's, decoded as RunInts decodes it. args is laid out as for Cmd.
func (s *Script) IntsCmd(ctx context.Context, args []any, numkeys int) *redis.IntSliceCmd {
	args[0], args[1], args[2] = argEvalSha, s.shaArg, numkeys
	return newIntsCmd(ctx, args, numkeys)
}

func newIntsCmd(ctx context.Context, args []any, numkeys int) *redis.IntSliceCmd {
	cmd := redis.NewIntSliceCmd(ctx, args...)
	if numkeys > 0 {
		cmd.SetFirstKeyPos(3) // as go-redis' EvalSha: routes the command by its first key
	}
	return cmd
}

// shapeErr returns err, wrapping ErrBadReply when it is go-redis refusing to read the reply in the
// shape asked for: an array or a string expected, an integer expected, or a number out of range. (go-redis
// closes the connection after such an error, since the rest of the reply is left unread.)
func shapeErr(err error) error {
	var num *strconv.NumError
	if errors.As(err, &num) || strings.HasPrefix(err.Error(), "redis: can't parse ") ||
		strings.HasPrefix(err.Error(), "bigInt(") {
		return fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	return err
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

// loadFor loads the script on the node that a call with these keys is sent to. On a Cluster it
// then loads it on every other node too, as far as they answer: a NOSCRIPT may come from a node
// other than the slot's master, which a migrating slot's ASK sent the call to, and a failover may
// promote a replica. Only the slot's master must take it; a node that does not answer (down,
// failing over) does not fail the call it cannot serve.
func (s *Script) loadFor(ctx context.Context, c redis.UniversalClient, keys []string) error {
	node, err := nodeFor(ctx, c, keys)
	if err != nil {
		return err
	}
	if err := loadOn(ctx, node, []*Script{s}); err != nil {
		return err
	}
	if cc, ok := c.(*redis.ClusterClient); ok {
		loaded := nodeName(node)
		_ = cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			if nodeName(n) == loaded {
				return nil
			}
			return loadOn(ctx, n, []*Script{s})
		})
	}
	return nil
}
