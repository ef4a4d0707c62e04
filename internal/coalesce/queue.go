package coalesce

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// waiter is one decision on its way: copies of the keys and arguments the caller gave (a call may
// be built after its caller gave up and returned), and its answer.
type waiter struct {
	keys        []string
	args        []any
	slot        int
	deadline    time.Time
	hasDeadline bool

	ints []int64 // the reply: of a call of this decision alone, or its part of a batch reply
	err  error

	// ready receives one signal: the answer is in, or (lead set) the waiter is to send the next
	// call. state says whether a caller whose context ended has left its decision to the call
	// carrying it.
	ready chan struct{}
	lead  bool
	state atomic.Int32
}

const (
	waiting int32 = iota
	abandoned
	answered
)

var waiters = sync.Pool{New: func() any { return &waiter{ready: make(chan struct{}, 1)} }}

// reset clears w for the pool: it must keep nothing of a caller's alive.
func (w *waiter) reset() {
	clear(w.keys)
	clear(w.args)
	w.keys, w.args = w.keys[:0], w.args[:0]
	w.ints, w.err, w.lead = nil, nil, false
	w.deadline, w.hasDeadline = time.Time{}, false
	w.state.Store(waiting)
}

// queue holds the decisions bound for one node.
type queue struct {
	b        *Batcher
	mu       sync.Mutex
	pending  []*waiter // pending[head:] wait to be sent, oldest first
	head     int
	inflight int // calls under way, plus a call handed to a waiter and not yet sent
	window   int // the most calls under way: Options.MaxInFlight, or adapted to the node's distance
	rtt      rttMin
}

// Adaptive window (Options.MaxInFlight 0): a node's window is one call per rttPerCall of the
// shortest round trip of a call of one decision lately seen, from minWindow to maxWindow.
const (
	minWindow  = 2
	maxWindow  = 16
	rttPerCall = 250 * time.Microsecond
	rttEpoch   = 10 * time.Second
)

// rttMin is the shortest round trip of a lone decision over the last one or two epochs: the
// distance to the node, without the work of a batch. An epoch without a sample keeps the last
// estimate, so that a node too busy for lone calls keeps its window.
type rttMin struct {
	cur, prev time.Duration // 0: no sample
	since     time.Time     // the start of cur's epoch
}

// observe records the round trip d of a call of one decision that ended at now, and returns the
// estimate.
func (r *rttMin) observe(d time.Duration, now time.Time) time.Duration {
	if now.Sub(r.since) >= rttEpoch && r.cur > 0 {
		r.prev, r.cur, r.since = r.cur, 0, now
	}
	if r.cur == 0 || d < r.cur {
		r.cur = d
	}
	if r.prev > 0 && r.prev < r.cur {
		return r.prev
	}
	return r.cur
}

// windowFor returns the window for a node at round trip rtt.
func windowFor(rtt time.Duration) int {
	return min(max(int(rtt/rttPerCall), minWindow), maxWindow)
}

// do sends w at once when the node has room for another call, else queues it until a returning
// call hands it the next one, or until a call answered it. It returns ctx's error, and nothing
// else, when the caller gave up (w is then no longer the caller's).
func (q *queue) do(ctx context.Context, w *waiter) error {
	q.mu.Lock()
	if q.inflight < q.window {
		q.inflight++
		bt := q.take(w)
		q.mu.Unlock()
		q.lead(ctx, bt)
		return nil
	}
	q.pending = append(q.pending, w)
	q.mu.Unlock()
	q.b.queued.Add(1)

	select {
	case <-w.ready:
	case <-ctx.Done():
		q.mu.Lock()
		for i := q.head; i < len(q.pending); i++ {
			if q.pending[i] == w { // not sent: leave the queue, nothing decided
				last := len(q.pending) - 1
				copy(q.pending[i:], q.pending[i+1:])
				q.pending[last] = nil
				q.pending = q.pending[:last]
				if q.head == len(q.pending) {
					q.pending, q.head = q.pending[:0], 0
				}
				q.mu.Unlock()
				w.reset()
				waiters.Put(w)
				return ctx.Err()
			}
		}
		lead := w.lead
		q.mu.Unlock()
		if !lead && w.state.CompareAndSwap(waiting, abandoned) {
			return ctx.Err() // in a call: the call recycles w when it returns
		}
		<-w.ready // answered already, or handed the next call
		if w.lead {
			q.release(0) // pass the call on to the next waiter, without this decision
			w.reset()
			waiters.Put(w)
			return ctx.Err()
		}
	}
	if w.lead {
		q.mu.Lock()
		bt := q.take(w)
		q.mu.Unlock()
		q.lead(ctx, bt)
	}
	return nil
}

// take makes a call's batch of w and up to MaxBatch - 1 queued waiters, the oldest first.
// Called with q.mu held.
func (q *queue) take(w *waiter) *batch {
	bt := batches.Get().(*batch)
	bt.ws = append(bt.ws[:0], w)
	n := min(len(q.pending)-q.head, q.b.opt.MaxBatch-1)
	bt.ws = append(bt.ws, q.pending[q.head:q.head+n]...)
	clear(q.pending[q.head : q.head+n])
	q.head += n
	if q.head == len(q.pending) {
		q.pending, q.head = q.pending[:0], 0
	}
	return bt
}

// lead sends bt, answers its waiters (the first, the caller's own, reads its answer when lead
// returns), and hands the node's call on to the oldest queued waiter, or frees it.
func (q *queue) lead(ctx context.Context, bt *batch) {
	var took time.Duration
	defer func() { q.release(took) }()
	defer func() {
		for _, w := range bt.ws[1:] {
			deliver(w)
		}
		bt.reset()
		batches.Put(bt)
	}()
	if len(bt.ws) > 1 || q.b.opt.MaxInFlight > 0 {
		q.b.send(ctx, bt)
		return
	}
	start := time.Now() // a lone decision: its round trip measures the distance to the node
	if q.b.send(ctx, bt) {
		took = time.Since(start)
	}
}

// release hands the call a caller sent, or was to send, to the oldest queued waiter, or frees it:
// also when the node has more calls under way than its window, which took, the round trip of a
// call of one decision (0 for none), may have just narrowed.
func (q *queue) release(took time.Duration) {
	q.mu.Lock()
	if took > 0 {
		q.window = windowFor(q.rtt.observe(took, time.Now()))
	}
	if q.head == len(q.pending) || q.inflight > q.window {
		q.inflight--
		q.mu.Unlock()
		return
	}
	next := q.pending[q.head]
	q.pending[q.head] = nil
	q.head++
	if q.head == len(q.pending) {
		q.pending, q.head = q.pending[:0], 0
	}
	next.lead = true // under q.mu, so that a waiter giving up sees it
	q.mu.Unlock()
	next.ready <- struct{}{}
}

// deliver wakes a waiter whose answer is in, or recycles it if its caller has gone.
func deliver(w *waiter) {
	if w.state.CompareAndSwap(waiting, answered) {
		w.ready <- struct{}{}
		return
	}
	w.reset()
	waiters.Put(w)
}
