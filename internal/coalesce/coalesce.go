// Package coalesce makes many rate-limit decisions in one script call. Decisions that concurrent
// callers send to one Redis node are gathered into one call of the algorithm's batch script
// (scripts/<algorithm>_batch.lua), which makes each of them with the code the single-call script
// runs, independently: one decision's error (corrupt state, a key of another type, a refused
// write) is its own, and the others are made as if it were not there.
//
// # When a call is sent
//
// A node has at most a window of calls under way: MaxInFlight, or by default one adapted to the
// node's distance (Options.MaxInFlight). A caller that finds room sends at once, in its
// own goroutine: its decision, with any that are queued. So a lone caller pays nothing: its
// decision goes out alone, one EVALSHA, with no wait. A caller that finds the node busy queues;
// when a call returns, the caller that sent it hands the next call to the oldest queued caller,
// who sends the queued decisions (at most MaxBatch, oldest first, its own among them). Decisions
// that arrive while a call is under way ride the next one: the busier the node, the larger the
// calls. There is no timer, and no goroutine of the package's own: every call is sent by a caller
// whose decision it carries, so nothing is left running when callers stop or the client closes.
//
// A call of one decision (a lone caller's, or one slot's on a Cluster) is a call of the algorithm's
// own script, the very EVALSHA sent without the package; a call of several is one call of the
// batch script.
//
// # Where decisions go
//
// On a single server (or a Sentinel failover client), every decision goes to one queue and a call
// may hold keys of any slot: a standalone server has no slots. On a Ring, each shard has a queue.
// On a Cluster each master has a queue, and a call holds the decisions of one hash slot, as every
// script call must: a batch for a master is one pipeline of one call per slot, which go-redis
// sends to the master in one round trip, following MOVED and ASK. A call refused with TRYAGAIN (a
// slot split between two nodes while it migrates: refused before it ran) is sent again as one call
// per decision, each of which goes where its keys are.
//
// # Cancellation
//
// A caller whose context ends while its decision is queued leaves the queue: nothing is sent for
// it. One whose decision is already in a call gets its context's error at once, and the decision
// is made or not as the call goes, as for a single call whose context ends while it is under way.
// The caller that sends a call waits for it, with the latest deadline of the decisions it carries
// (none when one of them has none, leaving the client's read timeout), so that no caller's
// context ends the decisions of others.
package coalesce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

// DefaultMaxBatch is the default of Options.MaxBatch.
const DefaultMaxBatch = 64

// maxArgs bounds the keys and arguments of one call, well below what Redis' Lua takes: a decision
// that would pass it goes in the next call.
const maxArgs = 4096

// Options tune a Batcher. The zero value means the defaults.
type Options struct {
	// MaxBatch is the most decisions one script call carries (default DefaultMaxBatch). A call
	// holds the server while it runs: about 5 to 10 µs per decision.
	MaxBatch int
	// MaxInFlight is the most calls under way per node. Zero (the default) adapts it to the
	// node's distance: one call per 250 µs of the shortest round trip of a lone decision seen in
	// the last 10 to 20 seconds, from 2 (a node on loopback or in the same rack) up to 16 (4 ms
	// away and more). Batches trade a wait for fewer calls; that pays where the calls' CPU is the
	// cost, near the node, and not where the distance is.
	MaxInFlight int
	// MaxCost, when above 0, bounds the work of one call where a decision's work grows with its
	// cost (the sliding log adds cost members to each limit's sorted set): the decisions of a call
	// weigh at most MaxCost together, each weighing its cost (the first of its arguments) times
	// its limits. A decision that weighs more goes in a call of its own.
	MaxCost int64
}

// Stats counts what a Batcher sent.
type Stats struct {
	Decisions int64 // decisions sent
	Calls     int64 // script calls sent (NOSCRIPT recoveries not counted)
	Trips     int64 // round trips: a call alone, or a pipeline of calls (one per slot, on a Cluster)
	Queued    int64 // decisions that waited for a call under way
	Failed    int64 // decisions sent in a call that failed as a whole (its error, not a reply)
}

// Batcher gathers the decisions of one batch script, made through one client. It is safe for
// concurrent use.
type Batcher struct {
	client  redis.UniversalClient
	single  *script.Script // the algorithm's script: a call of one decision
	batch   *script.Script // its batch script: a call of several
	opt     Options
	cluster *redis.ClusterClient // nil unless the client is a Cluster
	ring    *redis.Ring          // nil unless the client is a Ring
	perSlot bool                 // one call per slot: a Cluster, or a client of a kind unknown here
	one     *queue               // the queue of a client that is neither a Cluster nor a Ring
	nodes   sync.Map             // *redis.Client (a master or a shard) -> *queue

	decisions, calls, trips, queued, failed atomic.Int64

	beforeSend func(n int) // tests: called by a caller about to send n decisions
}

// New returns a Batcher that sends decisions through client: a call of one decision as a call of
// single, the algorithm's script, exactly as without the Batcher (so a lone caller's call is the
// same EVALSHA), and a call of several as one call of batch, the algorithm's batch script.
func New(client redis.UniversalClient, single, batch *script.Script, opt Options) *Batcher {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = DefaultMaxBatch
	}
	opt.MaxInFlight = max(opt.MaxInFlight, 0)
	b := &Batcher{client: client, single: single, batch: batch, opt: opt}
	switch c := client.(type) {
	case *redis.ClusterClient:
		b.cluster, b.perSlot = c, true
	case *redis.Ring:
		b.ring = c
	case *redis.Client:
		b.one = b.newQueue()
	default:
		b.one, b.perSlot = b.newQueue(), true
	}
	return b
}

func (b *Batcher) newQueue() *queue {
	q := &queue{b: b, window: b.opt.MaxInFlight}
	if q.window == 0 {
		q.window = minWindow
	}
	return q
}

// Stats returns what b sent so far.
func (b *Batcher) Stats() Stats {
	return Stats{Decisions: b.decisions.Load(), Calls: b.calls.Load(), Trips: b.trips.Load(), Queued: b.queued.Load(),
		Failed: b.failed.Load()}
}

// Do makes one decision: keys, in one slot, and args, the ARGV the algorithm's script takes for
// it. It appends the decision's reply, the array of integers that script answers, to dst and
// returns it; or it returns an error, wrapped with the name of the script that carried the
// decision, as that script's call would (the decision's error reply, such as CORRUPTSTATE, is a
// redis.Error; a call that failed gives its error to each of its decisions; a reply that is not
// an array of integers wraps script.ErrBadReply). Keys of several slots are refused with
// script.ErrCrossSlot, nothing sent.
func (b *Batcher) Do(ctx context.Context, keys []string, args []any, dst []int64) ([]int64, error) {
	if len(keys) == 0 {
		return nil, wrap(b.single, errors.New("a decision without keys"))
	}
	slot, err := script.SlotOf(keys)
	if err != nil {
		return nil, wrap(b.single, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	q := b.one
	if q == nil {
		if q, err = b.queueFor(ctx, keys[0]); err != nil {
			return nil, wrap(b.single, err)
		}
	}
	w := waiters.Get().(*waiter)
	w.keys, w.args, w.slot = append(w.keys, keys...), append(w.args, args...), slot
	w.deadline, w.hasDeadline = ctx.Deadline()
	if err := q.do(ctx, w); err != nil {
		return nil, err // w belongs to the call that carries it, or is back in the pool
	}
	// w's answer: the reply of a call of its decision alone, or its part of a batch reply.
	if err = w.err; err == nil {
		dst = append(dst, w.ints...)
	} else {
		dst = nil
	}
	w.reset()
	waiters.Put(w)
	return dst, err
}

// queueFor returns the queue of the node that serves key: its master on a Cluster, its shard on
// a Ring.
func (b *Batcher) queueFor(ctx context.Context, key string) (*queue, error) {
	var node *redis.Client
	var err error
	if b.cluster != nil {
		node, err = b.cluster.MasterForKey(ctx, key)
	} else {
		node, err = b.ring.GetShardClientForKey(key)
	}
	if err != nil {
		return nil, fmt.Errorf("routing: %w", err)
	}
	if q, ok := b.nodes.Load(node); ok {
		return q.(*queue), nil
	}
	q, _ := b.nodes.LoadOrStore(node, b.newQueue())
	return q.(*queue), nil
}

// wrap wraps err with the name of the script s, as the script runtime does.
func wrap(s *script.Script, err error) error {
	return fmt.Errorf("gatehouse: script %s: %w", s.Name(), err)
}
