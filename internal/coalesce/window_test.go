package coalesce

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// distant makes a node look far away: every command and pipeline takes delay longer, and the
// most script calls under way at once is counted.
type distant struct {
	delay     time.Duration
	now, most atomic.Int64
}

func (d *distant) DialHook(next redis.DialHook) redis.DialHook { return next }

func (d *distant) enter() func() {
	n := d.now.Add(1)
	for {
		m := d.most.Load()
		if n <= m || d.most.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(d.delay)
	return func() { d.now.Add(-1) }
}

func (d *distant) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isCall(cmd) {
			defer d.enter()()
		} else {
			time.Sleep(d.delay) // a connection's hello, SCRIPT LOAD: far away too, and not a call
		}
		return next(ctx, cmd)
	}
}

func (d *distant) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && isCall(cmds[0]) {
			defer d.enter()()
		} else {
			time.Sleep(d.delay)
		}
		return next(ctx, cmds)
	}
}

// isCall reports whether cmd is a script call.
func isCall(cmd redis.Cmder) bool { return cmd.Name() == "evalsha" || cmd.Name() == "eval" }

// A node far away gets more calls under way than one near: with the window of a near node (two
// calls) a decision to a node 2 ms away would wait a round trip for a call to return before its
// own went out.
func TestWindowWidensWithDistance(t *testing.T) {
	_, rdb := redistest.Private(t)
	d := &distant{delay: 2 * time.Millisecond}
	rdb.AddHook(d)
	b := New(rdb, bucket, bucketBatch, Options{})
	ctx := context.Background()
	// The first call finds no script loaded: three round trips (EVALSHA, SCRIPT LOAD, EVALSHA)
	// that do not measure the distance.
	if _, err := b.Do(ctx, []string{"{lone}"}, take(10), nil); err != nil {
		t.Fatal(err)
	}
	if est := b.one.rtt; est.cur != 0 {
		t.Errorf("a call recovering from NOSCRIPT was measured: %v", est.cur)
	}
	if _, err := b.Do(ctx, []string{"{lone}"}, take(10), nil); err != nil { // the first measured
		t.Fatal(err)
	}
	decideFrom32(t, b, 20)
	if got, least := d.most.Load(), int64(windowFor(d.delay)); got < least {
		t.Errorf("at most %d calls under way at once to a node 2 ms away; want %d (its window)", got, least)
	}
	if got := d.most.Load(); got > maxWindow {
		t.Errorf("%d calls under way at once, above the widest window (%d)", got, maxWindow)
	}

	// A fixed MaxInFlight is kept, however far the node.
	d.most.Store(0)
	decideFrom32(t, New(rdb, bucket, bucketBatch, Options{MaxInFlight: 2}), 5)
	if got := d.most.Load(); got > 2 {
		t.Errorf("MaxInFlight 2: %d calls under way at once", got)
	}
}

// decideFrom32 makes n decisions from each of 32 goroutines at once through b, over 100 keys.
func decideFrom32(t *testing.T, b *Batcher, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range n {
				if _, err := b.Do(context.Background(), []string{fmt.Sprintf("{k%d}", (g*n+i)%100)}, take(1_000_000), nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// A failed call measures nothing: a node that refuses connections at once is not near.
func TestFailedCallsAreNotMeasured(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every call fails at once
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rdb.Close()
	b := New(rdb, bucket, bucketBatch, Options{})
	for range 3 {
		if _, err := b.Do(context.Background(), []string{"{k}"}, take(10), nil); err == nil {
			t.Fatal("a call to a closed port succeeded")
		}
	}
	q := b.one
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.rtt.cur != 0 || q.rtt.prev != 0 {
		t.Errorf("failed calls were measured: %+v", q.rtt)
	}
}

// The window is one call per 250 µs of the shortest recent round trip, from 2 to 16, and it
// follows the node when it comes nearer (within two epochs) or goes farther away (once the
// nearer samples are two epochs old).
func TestWindowFollowsTheShortestRecentRoundTrip(t *testing.T) {
	for rtt, want := range map[time.Duration]int{
		0: 2, 50 * time.Microsecond: 2, 700 * time.Microsecond: 2, time.Millisecond: 4,
		2 * time.Millisecond: 8, 3900 * time.Microsecond: 15, 50 * time.Millisecond: 16,
	} {
		if got := windowFor(rtt); got != want {
			t.Errorf("windowFor(%v) = %d, want %d", rtt, got, want)
		}
	}
	var r rttMin
	t0 := time.Unix(1e9, 0)
	step := func(d time.Duration, at time.Duration, want time.Duration) {
		t.Helper()
		if got := r.observe(d, t0.Add(at)); got != want {
			t.Errorf("at %v, after a round trip of %v: estimate %v, want %v", at, d, got, want)
		}
	}
	step(3*time.Millisecond, 0, 3*time.Millisecond)
	step(2*time.Millisecond, time.Second, 2*time.Millisecond)
	step(5*time.Millisecond, 2*time.Second, 2*time.Millisecond)      // not shorter: the estimate stays
	step(4*time.Millisecond, 11*time.Second, 2*time.Millisecond)     // a new epoch: the last one's still counts
	step(4*time.Millisecond, 22*time.Second, 4*time.Millisecond)     // two epochs on: the 2 ms is forgotten
	step(100*time.Microsecond, 23*time.Second, 100*time.Microsecond) // nearer: at once
}
