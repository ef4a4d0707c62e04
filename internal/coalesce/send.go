package coalesce

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

// batch is the waiters one caller sends (its own first), and the memory their calls are built in.
type batch struct {
	ws     []*waiter
	sorted []*waiter   // ws by slot, when calls are per slot
	chunks [][]*waiter // the waiters of each call
	args   []any
	cmds   []redis.Cmder
}

var batches = sync.Pool{New: func() any { return new(batch) }}

func (bt *batch) reset() {
	clear(bt.ws)
	clear(bt.sorted)
	clear(bt.chunks)
	clear(bt.args)
	clear(bt.cmds)
	bt.ws, bt.sorted, bt.chunks, bt.args, bt.cmds = bt.ws[:0], bt.sorted[:0], bt.chunks[:0], bt.args[:0], bt.cmds[:0]
}

// send decides every waiter of bt, filling its val or err.
func (b *Batcher) send(ctx context.Context, bt *batch) {
	if b.beforeSend != nil {
		b.beforeSend(len(bt.ws))
	}
	ctx, cancel := callContext(ctx, bt.ws)
	defer cancel()

	ws := bt.ws
	if b.perSlot {
		bt.sorted = append(bt.sorted[:0], ws...)
		slices.SortStableFunc(bt.sorted, func(x, y *waiter) int { return x.slot - y.slot })
		ws = bt.sorted
	}
	bt.chunks = b.split(bt.chunks[:0], ws)
	bt.build(ctx, b)
	script.Exec(ctx, b.client, bt.cmds, b.single, b.batch)
	b.decisions.Add(int64(len(ws)))
	b.calls.Add(int64(len(bt.cmds)))
	b.trips.Add(1)

	var again []*waiter
	for i, cmd := range bt.cmds {
		again = b.answer(cmd, bt.chunks[i], again)
	}
	if len(again) == 0 {
		return
	}
	// Calls refused with TRYAGAIN: a slot split between two nodes while it migrates. Each decision
	// again on its own, going where its keys are.
	bt.chunks = bt.chunks[:0]
	for _, w := range again {
		bt.chunks = append(bt.chunks, []*waiter{w})
	}
	bt.build(ctx, b)
	script.Exec(ctx, b.client, bt.cmds, b.single, b.batch)
	b.decisions.Add(int64(len(again)))
	b.calls.Add(int64(len(bt.cmds)))
	b.trips.Add(1)
	for i, cmd := range bt.cmds {
		b.answer(cmd, bt.chunks[i], nil)
	}
}

// callContext returns the context of a call carrying the decisions of ws, sent by the caller of
// ctx (ws[0]): ctx alone for a call of its own decision alone; otherwise ctx's values, without
// its cancellation, and with the latest deadline of the decisions, or none when one has none.
func callContext(ctx context.Context, ws []*waiter) (context.Context, context.CancelFunc) {
	if len(ws) == 1 {
		return ctx, func() {}
	}
	var latest time.Time
	for _, w := range ws {
		if !w.hasDeadline {
			return context.WithoutCancel(ctx), func() {}
		}
		if w.deadline.After(latest) {
			latest = w.deadline
		}
	}
	return context.WithDeadline(context.WithoutCancel(ctx), latest)
}

// split appends to chunks the waiters of each call: at most MaxBatch decisions and maxArgs keys
// and arguments each, of one slot when calls are per slot.
func (b *Batcher) split(chunks [][]*waiter, ws []*waiter) [][]*waiter {
	for len(ws) > 0 {
		n, size := 1, ws[0].size()
		for n < len(ws) && n < b.opt.MaxBatch && size+ws[n].size() <= maxArgs && (!b.perSlot || ws[n].slot == ws[0].slot) {
			size += ws[n].size()
			n++
		}
		chunks = append(chunks, ws[:n:n])
		ws = ws[n:]
	}
	return chunks
}

// size is how many keys and arguments w's decision takes in a call.
func (w *waiter) size() int { return len(w.keys) + 1 + len(w.args) }

// build makes one EVALSHA per chunk, in bt.cmds: for one decision, the call of the algorithm's
// script; for several, the call of the batch script, its KEYS every decision's keys, its ARGV per
// decision the number of keys, then the decision's own arguments.
func (bt *batch) build(ctx context.Context, b *Batcher) {
	need := 0
	for _, ch := range bt.chunks {
		need += 3
		for _, w := range ch {
			need += w.size()
		}
	}
	bt.args = slices.Grow(bt.args[:0], need) // no append below grows it: each command keeps its part
	bt.cmds = bt.cmds[:0]
	for _, ch := range bt.chunks {
		start := len(bt.args)
		bt.args = append(bt.args, nil, nil, nil)
		nkeys := 0
		for _, w := range ch {
			for _, k := range w.keys {
				bt.args = append(bt.args, k)
			}
			nkeys += len(w.keys)
		}
		for _, w := range ch {
			if len(ch) > 1 {
				bt.args = append(bt.args, int64(len(w.keys)))
			}
			bt.args = append(bt.args, w.args...)
		}
		args := bt.args[start:len(bt.args):len(bt.args)]
		if len(ch) == 1 {
			bt.cmds = append(bt.cmds, b.single.IntsCmd(ctx, args, nkeys))
		} else {
			bt.cmds = append(bt.cmds, b.batch.Cmd(ctx, args, nkeys))
		}
	}
}

// answer gives each waiter of ws its answer from cmd: its reply or error. A call of several
// decisions refused with TRYAGAIN leaves them unanswered, appended to again.
func (b *Batcher) answer(cmd redis.Cmder, ws []*waiter, again []*waiter) []*waiter {
	if len(ws) == 1 { // the algorithm's script: its reply, or its error, is the decision's
		ints, err := cmd.(*redis.IntSliceCmd).Result()
		if err != nil {
			if !isReply(err) && !errors.Is(err, script.ErrNotIntegers) {
				b.failed.Add(1) // no reply: the call failed
			}
			ws[0].err = wrap(b.single, err)
			return again
		}
		ws[0].ints = ints
		return again
	}
	v, err := cmd.(*redis.Cmd).Result()
	if err != nil {
		if b.perSlot && redis.HasErrorPrefix(err, "TRYAGAIN") {
			return append(again, ws...)
		}
		b.failed.Add(int64(len(ws)))
		err = wrap(b.batch, err)
		for _, w := range ws {
			w.err = err
		}
		return again
	}
	arr, ok := v.([]any)
	if !ok || len(arr) != len(ws) {
		err := wrap(b.batch, fmt.Errorf("%w: %T of %d elements for %d decisions", ErrBadReply, v, len(arr), len(ws)))
		for _, w := range ws {
			w.err = err
		}
		return again
	}
	for i, w := range ws {
		if e, ok := arr[i].(error); ok {
			w.err = wrap(b.batch, e)
			continue
		}
		w.elem = arr[i]
	}
	return again
}

// isReply reports whether err is an error reply from Redis.
func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}
