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
	_, _ = c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for j, i := range idx {
			cmds[j] = p.EvalSha(ctx, calls[i].Script.sha, calls[i].Keys, calls[i].Args...)
		}
		return nil
	})
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
