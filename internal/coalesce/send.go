package coalesce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
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
	reqs   []*waiter // while building a call: a decision of each distinct request
	of     []int     // the request of each decision (an index in reqs)
}

var batches = sync.Pool{New: func() any { return new(batch) }}

func (bt *batch) reset() {
	clear(bt.ws)
	clear(bt.sorted)
	clear(bt.chunks)
	clear(bt.args)
	clear(bt.cmds)
	clear(bt.reqs)
	bt.ws, bt.sorted, bt.chunks, bt.args, bt.cmds = bt.ws[:0], bt.sorted[:0], bt.chunks[:0], bt.args[:0], bt.cmds[:0]
	bt.reqs, bt.of = bt.reqs[:0], bt.of[:0]
}

// send decides every waiter of bt, filling its val or err. It reports whether it took one round
// trip that answered every call (refused or not: a reply), as a measure of the node's distance.
func (b *Batcher) send(ctx context.Context, bt *batch) bool {
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
	first := bt.cmds[0]
	script.Exec(ctx, b.client, bt.cmds, b.single, b.batch)
	replied := bt.cmds[0] == first // else sent again after NOSCRIPT: more than one round trip
	b.decisions.Add(int64(len(ws)))
	b.calls.Add(int64(len(bt.cmds)))
	b.trips.Add(1)

	var again []*waiter
	for i, cmd := range bt.cmds {
		again = b.answer(cmd, bt.chunks[i], again)
		if err := cmd.Err(); err != nil && !isReply(err) {
			replied = false
		}
	}
	if len(again) == 0 {
		return replied
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
	return false
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

// split appends to chunks the waiters of each call: at most MaxBatch decisions, maxArgs keys and
// arguments and MaxCost of work each, of one slot when calls are per slot.
func (b *Batcher) split(chunks [][]*waiter, ws []*waiter) [][]*waiter {
	for len(ws) > 0 {
		n, size, work := 1, ws[0].size(), ws[0].work()
		for n < len(ws) && n < b.opt.MaxBatch && size+ws[n].size() <= maxArgs && (!b.perSlot || ws[n].slot == ws[0].slot) &&
			(b.opt.MaxCost <= 0 || work+ws[n].work() <= b.opt.MaxCost) {
			size += ws[n].size()
			work += ws[n].work()
			n++
		}
		chunks = append(chunks, ws[:n:n])
		ws = ws[n:]
	}
	return chunks
}

// size is how many keys and arguments w's decision takes in a call.
func (w *waiter) size() int { return len(w.keys) + 1 + len(w.args) }

// work is what w's decision weighs against Options.MaxCost: its cost (its first argument) times
// its limits. A cost that is not an integer above 0 weighs as 1.
func (w *waiter) work() int64 {
	cost := int64(1)
	if len(w.args) > 0 {
		switch c := w.args[0].(type) {
		case int64:
			cost = c
		case int:
			cost = int64(c)
		}
	}
	return max(cost, 1) * int64(len(w.keys))
}

// build makes one EVALSHA per chunk, in bt.cmds: for one decision, the call of the algorithm's
// script; for several, the call of the batch script (scripts/lib/batch.lua): its KEYS every
// decision's keys; its ARGV the distinct requests the decisions make (each its number of keys,
// then the single script's arguments), then per decision the request it makes.
func (bt *batch) build(ctx context.Context, b *Batcher) {
	need := 0
	for _, ch := range bt.chunks {
		need += 4
		for _, w := range ch {
			need += w.size() + 1
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
		if len(ch) == 1 {
			bt.args = append(bt.args, ch[0].args...)
			args := bt.args[start:len(bt.args):len(bt.args)]
			bt.cmds = append(bt.cmds, b.single.IntsCmd(ctx, args, nkeys))
			continue
		}
		count := len(bt.args)
		bt.args = append(bt.args, nil)
		bt.reqs, bt.of = bt.reqs[:0], bt.of[:0]
		for _, w := range ch {
			r := w.request(bt.reqs)
			if r == len(bt.reqs) {
				bt.reqs = append(bt.reqs, w)
				bt.args = append(bt.args, int64(len(w.keys)))
				bt.args = append(bt.args, w.args...)
			}
			bt.of = append(bt.of, r)
		}
		bt.args[count] = int64(len(bt.reqs))
		for _, r := range bt.of {
			bt.args = append(bt.args, int64(r+1)) // small integers box without allocating
		}
		args := bt.args[start:len(bt.args):len(bt.args)]
		bt.cmds = append(bt.cmds, b.batch.StringCmd(ctx, args, nkeys))
	}
}

// maxRequests bounds the distinct requests a call's decisions are compared with: past it, a
// decision unlike the first ones is sent as a request of its own, so that building a call stays
// linear in its decisions.
const maxRequests = 16

// request returns the index in reqs of a decision that makes the same request as w (as many keys,
// the same arguments), or len(reqs) when none among the first maxRequests does.
func (w *waiter) request(reqs []*waiter) int {
	for i, o := range reqs[:min(len(reqs), maxRequests)] {
		if len(o.keys) == len(w.keys) && sameArgs(o.args, w.args) {
			return i
		}
	}
	return len(reqs)
}

// sameArgs reports whether a and b are the same arguments: integers and strings, compared by
// value. An argument of any other type is never the same, so that no comparison can panic.
func sameArgs(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	for i, x := range a {
		switch x := x.(type) {
		case int64:
			if y, ok := b[i].(int64); !ok || x != y {
				return false
			}
		case int:
			if y, ok := b[i].(int); !ok || x != y {
				return false
			}
		case string:
			if y, ok := b[i].(string); !ok || x != y {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// answer gives each waiter of ws its answer from cmd: its reply or error. A call of several
// decisions refused with TRYAGAIN leaves them unanswered, appended to again.
func (b *Batcher) answer(cmd redis.Cmder, ws []*waiter, again []*waiter) []*waiter {
	if len(ws) == 1 { // the algorithm's script: its reply, or its error, is the decision's
		ints, err := cmd.(*redis.IntSliceCmd).Result()
		if err != nil {
			if !isReply(err) && !errors.Is(err, script.ErrBadReply) {
				b.failed.Add(1) // no reply: the call failed
			}
			ws[0].err = wrap(b.single, err)
			return again
		}
		ws[0].ints = ints
		return again
	}
	v, err := cmd.(*redis.StringCmd).Result()
	if err != nil {
		if b.perSlot && redis.HasErrorPrefix(err, "TRYAGAIN") {
			return append(again, ws...)
		}
		if !isReply(err) && !errors.Is(err, script.ErrBadReply) {
			b.failed.Add(int64(len(ws))) // no reply: the call failed
		}
		err = wrap(b.batch, err)
		for _, w := range ws {
			w.err = err
		}
		return again
	}
	if err := unpack(v, ws); err != nil {
		err = wrap(b.batch, err)
		for _, w := range ws {
			w.ints, w.err = nil, err
		}
	}
	return again
}

// unpack gives each waiter of ws its part of a batch script's reply (lib/batch.lua): per decision,
// byte 0, a big-endian 16-bit count n and n big-endian doubles, each an integer, which become
// w.ints; or byte 1, a 16-bit length and the decision's error reply, which becomes w.err. A
// decision whose values are not all integers gets an error wrapping script.ErrBadReply; unpack
// returns one when the reply is not made of ws' parts.
func unpack(reply string, ws []*waiter) error {
	if strings.HasPrefix(reply, "t") {
		return unpackText(reply[1:], ws)
	}
	vals := make([]int64, 0, len(reply)/8) // the integers of every decision: one allocation per call
	s := reply
	for i, w := range ws {
		if len(s) < 3 {
			return fmt.Errorf("%w: the batch reply ends at decision %d of %d", script.ErrBadReply, i+1, len(ws))
		}
		tag, n := s[0], int(s[1])<<8|int(s[2])
		s = s[3:]
		switch {
		case tag == 0 && len(s) >= 8*n:
			from := len(vals)
			for j := 0; j < n && w.err == nil; j++ {
				v, ok := integer(s[8*j:])
				if !ok { // this decision's reply alone is wrong
					w.err = fmt.Errorf("%w: value %d of decision %d is no integer", script.ErrBadReply, j+1, i+1)
				}
				vals = append(vals, v)
			}
			if w.err == nil {
				w.ints = vals[from:len(vals):len(vals)]
			}
			s = s[8*n:]
		case tag == 1 && len(s) >= n:
			w.err = replyError(s[:n])
			s = s[n:]
		default:
			return fmt.Errorf("%w: decision %d of %d is malformed", script.ErrBadReply, i+1, len(ws))
		}
	}
	if len(s) > 0 {
		return fmt.Errorf("%w: %d bytes after %d decisions", script.ErrBadReply, len(s), len(ws))
	}
	return nil
}

// unpackText is unpack for the text a server whose Lua lacks the struct library answers (a
// stand-in such as miniredis; lib/batch.lua): per decision, "i", integers separated by commas,
// and ";"; or "e", the message's length, ":" and the message.
func unpackText(s string, ws []*waiter) error {
	var vals []int64
	for i, w := range ws {
		bad := func() error {
			return fmt.Errorf("%w: decision %d of %d is malformed", script.ErrBadReply, i+1, len(ws))
		}
		if s == "" {
			return bad()
		}
		switch s[0] {
		case 'i':
			end := strings.IndexByte(s, ';')
			if end < 0 {
				return bad()
			}
			from := len(vals)
			for f := range strings.SplitSeq(s[1:end], ",") {
				if end == 1 {
					break // "i;": no integers
				}
				v, err := strconv.ParseInt(f, 10, 64)
				if err != nil {
					return bad()
				}
				vals = append(vals, v)
			}
			w.ints = vals[from:len(vals):len(vals)]
			s = s[end+1:]
		case 'e':
			colon := strings.IndexByte(s, ':')
			if colon < 0 {
				return bad()
			}
			n, err := strconv.Atoi(s[1:colon])
			if err != nil || n < 0 || len(s) < colon+1+n {
				return bad()
			}
			w.err = replyError(s[colon+1 : colon+1+n])
			s = s[colon+1+n:]
		default:
			return bad()
		}
	}
	if s != "" {
		return fmt.Errorf("%w: %d bytes after %d decisions", script.ErrBadReply, len(s), len(ws))
	}
	return nil
}

// integer reads the big-endian double at the start of b as an integer, if it is one that a double
// holds exactly.
func integer(b string) (int64, bool) {
	u := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	f := math.Float64frombits(u)
	if f != math.Trunc(f) || f > 1<<53 || f < -(1<<53) {
		return 0, false // NaN, infinities and fractions too
	}
	return int64(f), true
}

// replyError is a decision's error reply in a batch reply: a redis.Error, as go-redis gives an
// error reply, so that it is read as any other.
type replyError string

func (e replyError) Error() string { return string(e) }

// RedisError marks e as an error reply from Redis (redis.Error).
func (replyError) RedisError() {}

// isReply reports whether err is an error reply from Redis.
func isReply(err error) bool {
	var reply redis.Error
	return errors.As(err, &reply)
}
