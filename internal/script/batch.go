package script

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Call is one script call of a batch.
type Call struct {
	Script *Script
	Keys   []string
	Args   []any
}

// Result is the outcome of one Call of a batch: the reply, or an error.
type Result struct {
	Val any
	Err error
}

// RunBatch runs calls in one pipeline and returns one Result per call, in order. The calls are
// independent: one call's error, wrapped with its script's name, does not fail the others.
//
// Calls answered NOSCRIPT are recovered together: each missing script is loaded once on each node
// that needs it, and just those calls are sent again in a second pipeline. A call with keys in
// different slots gets ErrCrossSlot and is not sent. On a Cluster the pipeline is split by node.
func RunBatch(ctx context.Context, c redis.UniversalClient, calls []Call) []Result {
	results := make([]Result, len(calls))
	todo := make([]int, 0, len(calls))
	for i, call := range calls {
		switch {
		case call.Script == nil:
			results[i].Err = errors.New("gatehouse: batch call without a script")
		default:
			if err := checkSlots(call.Keys); err != nil {
				results[i].Err = call.Script.wrap(err)
				continue
			}
			todo = append(todo, i)
		}
	}
	retry := runPipeline(ctx, c, calls, todo, results)
	if len(retry) == 0 {
		return results
	}
	retry = loadMissing(ctx, c, calls, retry, results)
	if len(retry) > 0 {
		runPipeline(ctx, c, calls, retry, results)
	}
	return results
}

// runPipeline sends calls[idx] as one pipeline of EVALSHA, fills their results, and returns the
// indexes that came back NOSCRIPT (their results are filled too, in case they are not retried).
func runPipeline(ctx context.Context, c redis.UniversalClient, calls []Call, idx []int, results []Result) (noscript []int) {
	if len(idx) == 0 {
		return nil
	}
	cmds := make([]*redis.Cmd, len(idx))
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range idx {
			cmds[j] = p.EvalSha(ctx, calls[i].Script.sha, calls[i].Keys, calls[i].Args...)
		}
		return nil
	})
	failPipeline(cmds, err)
	refreshed := false
	for j, i := range idx {
		v, err := cmds[j].Result()
		if err != nil {
			if isNoScript(err) {
				noscript = append(noscript, i)
			} else if !refreshed {
				refreshed = refreshRoutes(c, err)
			}
			results[i] = Result{Err: calls[i].Script.wrap(err)}
			continue
		}
		results[i] = Result{Val: v}
	}
	return noscript
}

// loadMissing loads each script of calls[idx] once on each node those calls are sent to, and returns
// the indexes whose script is now loaded. A call whose load failed gets that error as its result.
func loadMissing(ctx context.Context, c redis.UniversalClient, calls []Call, idx []int, results []Result) []int {
	type target struct {
		node   string
		script *Script
	}
	loaded := make(map[target]error)
	ready := idx[:0:0]
	for _, i := range idx {
		s := calls[i].Script
		node, err := nodeFor(ctx, c, calls[i].Keys)
		if err != nil {
			results[i].Err = s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", err))
			continue
		}
		t := target{node: nodeName(node), script: s}
		lerr, done := loaded[t]
		if !done {
			lerr = loadOn(ctx, node, []*Script{s})
			loaded[t] = lerr
		}
		if lerr != nil {
			results[i].Err = s.wrap(fmt.Errorf("recovering from NOSCRIPT: %w", lerr))
			continue
		}
		ready = append(ready, i)
	}
	return ready
}

// argEvalSha is the command's name, boxed once.
var argEvalSha any = "evalsha"

// Cmd returns the EVALSHA command of one call of s, for Exec. args[:3] are left for Cmd, which
// fills them with EVALSHA, the digest and numkeys; the call's numkeys keys follow, then its ARGV.
// The command keeps args until it has been sent.
func (s *Script) Cmd(ctx context.Context, args []any, numkeys int) *redis.Cmd {
	args[0], args[1], args[2] = argEvalSha, s.shaArg, numkeys
	return redis.NewCmd(ctx, args...)
}

// StringCmd returns the EVALSHA command of one call of s whose reply is a string (the packed
// replies of a batch script), for Exec. args is laid out as for Cmd.
func (s *Script) StringCmd(ctx context.Context, args []any, numkeys int) *redis.StringCmd {
	args[0], args[1], args[2] = argEvalSha, s.shaArg, numkeys
	cmd := redis.NewStringCmd(ctx, args...)
	if numkeys > 0 {
		cmd.SetFirstKeyPos(3) // as go-redis' EvalSha: routes the command by its first key
	}
	return cmd
}

// Exec sends cmds, EVALSHA commands of the scripts made by their Cmd, IntsCmd or StringCmd, in one round
// trip: one alone, several in one pipeline (which a Cluster splits by node, following MOVED and
// ASK). Each command holds its outcome (Result); a command of IntsCmd answered with something
// other than an array of integers holds an error wrapping ErrBadReply. Commands answered
// NOSCRIPT are recovered as RunBatch recovers calls: their script (the one of scripts with the
// command's digest) is loaded once on each node that needs it, and just those commands are sent
// again, as new commands of the same type that replace them in cmds. On a Cluster the script is
// loaded on every node: a NOSCRIPT may come from a node other than the slot's master, which a
// migrating slot's ASK sent the command to. When a command fails with no reply from Redis, a
// Cluster's routes are reloaded, as Run does.
//
// Unlike Run and RunBatch, Exec does not check that a command's keys share a slot: its caller,
// internal/coalesce, groups decisions by slot on a Cluster, and sends a command whose keys span
// slots only to one server that holds them all (a single server, a failover client's master, a
// Ring's shard), where slots do not apply.
func Exec(ctx context.Context, c redis.UniversalClient, cmds []redis.Cmder, scripts ...*Script) {
	process(ctx, c, cmds)
	var again []int
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		retry := make([]redis.Cmder, 0, len(again))
		load := loader(ctx, c)
		for _, i := range again {
			if err := load(cmds[i], scripts); err != nil {
				cmds[i].SetErr(fmt.Errorf("recovering from NOSCRIPT: %w", err))
				continue
			}
			cmds[i] = resend(ctx, cmds[i])
			retry = append(retry, cmds[i])
		}
		process(ctx, c, retry)
	}
	for _, cmd := range cmds {
		if refreshRoutes(c, cmd.Err()) {
			break
		}
	}
}

// process sends cmds in one round trip: one alone, several in a pipeline. A command of IntsCmd
// that could not read its reply as integers, or of StringCmd as a string, gets an error wrapping
// ErrBadReply.
func process(ctx context.Context, c redis.UniversalClient, cmds []redis.Cmder) {
	switch len(cmds) {
	case 0:
	case 1:
		_ = c.Process(ctx, cmds[0])
	default:
		p := c.Pipeline()
		for _, cmd := range cmds {
			_ = p.Process(ctx, cmd)
		}
		_, err := p.Exec(ctx)
		failPipeline(cmds, err)
	}
	for _, cmd := range cmds {
		switch cmd.(type) {
		case *redis.IntSliceCmd, *redis.StringCmd:
			if err := cmd.Err(); err != nil {
				cmd.SetErr(shapeErr(err))
			}
		}
	}
}

// resend returns a new command of cmd's type with its arguments, to send again.
func resend(ctx context.Context, cmd redis.Cmder) redis.Cmder {
	switch cmd.(type) {
	case *redis.IntSliceCmd:
		return redis.NewIntSliceCmd(ctx, cmd.Args()...)
	case *redis.StringCmd:
		return redis.NewStringCmd(ctx, cmd.Args()...)
	}
	return redis.NewCmd(ctx, cmd.Args()...)
}

// loader returns the function Exec loads the script of a command answered NOSCRIPT with, once
// per node and script: on every node of a Cluster (a NOSCRIPT there may come from a node other
// than the slot's master, which a migrating slot's ASK sent the command to), else on the node of
// the command's first key.
func loader(ctx context.Context, c redis.UniversalClient) func(cmd redis.Cmder, scripts []*Script) error {
	type target struct {
		node   string
		script *Script
	}
	loaded := make(map[target]error)
	_, cluster := c.(*redis.ClusterClient)
	return func(cmd redis.Cmder, scripts []*Script) error {
		args := cmd.Args()
		var s *Script
		for _, sc := range scripts {
			if len(args) > 1 && args[1] == sc.shaArg {
				s = sc
			}
		}
		if s == nil {
			return errors.New("a command of no script given to Exec")
		}
		var node redis.Cmdable = c
		name := ""
		if !cluster {
			var keys []string
			if n, _ := args[2].(int); n > 0 && len(args) > 3 {
				keys = []string{fmt.Sprint(args[3])}
			}
			var err error
			if node, err = nodeFor(ctx, c, keys); err != nil {
				return err
			}
			name = nodeName(node)
		}
		t := target{name, s}
		if err, done := loaded[t]; done {
			return err
		}
		var err error
		if cluster {
			err = s.Load(ctx, c)
		} else {
			err = loadOn(ctx, node, []*Script{s})
		}
		loaded[t] = err
		return err
	}
}

// failPipeline gives err, the error of a pipeline's Exec, to each of its commands when it reached
// none of them: a hook that refused the pipeline without sending it leaves every command with no
// reply and no error, which would read as an empty answer. (When a command failed, Exec's error is
// that command's own, and the others keep their replies.)
func failPipeline[C redis.Cmder](cmds []C, err error) {
	if err == nil {
		return
	}
	for _, cmd := range cmds {
		if cmd.Err() != nil {
			return
		}
	}
	for _, cmd := range cmds {
		cmd.SetErr(err)
	}
}
