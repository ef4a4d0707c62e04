package coalesce

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

// The token bucket's script and batch script.
var (
	bucket, _      = script.Lookup("token_bucket")
	bucketBatch, _ = script.Lookup("token_bucket_batch")
)

// take is the token bucket's ARGV for a decision taking one token of a bucket of burst tokens that
// gains one a day: nothing refills during a test.
func take(burst int64) []any {
	return []any{int64(1), "0", int64(0), burst, int64(1), int64(86_400_000_000)}
}

// takeAll is take for a decision of two limits of one bucket each.
func takeAll(burst int64) []any {
	return append(take(burst), burst, int64(1), int64(86_400_000_000))
}

// answer reads a token bucket reply: whether admitted, and the first limit's remaining tokens.
func answer(t *testing.T, r []int64) (bool, int64) {
	t.Helper()
	if len(r) < 5 {
		t.Fatalf("reply %v, want {allowed, allowed_1, remaining_1, retry_1, reset_1, ...}", r)
	}
	return r[0] == 1, r[2]
}

// gates makes the calls b sends wait, in the order they are sent, each until its gate is opened;
// sending[i] receives when call i is waiting at its gate. Calls past the gates go at once.
type gates struct {
	open    []chan struct{}
	sending []chan int
	n       atomic.Int32
}

func hold(b *Batcher, calls int) *gates {
	g := &gates{}
	for range calls {
		g.open = append(g.open, make(chan struct{}))
		g.sending = append(g.sending, make(chan int, 1))
	}
	b.beforeSend = func(n int) {
		if i := int(g.n.Add(1)) - 1; i < len(g.open) {
			g.sending[i] <- n
			<-g.open[i]
		}
	}
	return g
}

// eventually waits for cond, failing the test if it does not hold within a minute (a hang, not a
// slow machine).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
	}
}

// result is what one Do returned.
type result struct {
	val []int64
	err error
}

// start runs Do in a goroutine; the channel receives its result.
func start(ctx context.Context, b *Batcher, keys []string, args []any) chan result {
	ch := make(chan result, 1)
	go func() {
		v, err := b.Do(ctx, keys, args, nil)
		ch <- result{v, err}
	}()
	return ch
}

// returned waits for the result of a caller that must return while a call is held, failing the
// test if it waits for the call (the bound turns that deadlock into a failure).
func returned(t *testing.T, ch chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the caller did not return while the call was held")
		return result{}
	}
}

// queued starts Do in a goroutine and waits until its decision is queued.
func queued(t *testing.T, ctx context.Context, b *Batcher, keys []string, args []any) chan result {
	t.Helper()
	before := b.Stats().Queued
	ch := start(ctx, b, keys, args)
	eventually(t, "a decision to queue", func() bool { return b.Stats().Queued > before })
	return ch
}

// onOneNode returns n keys, each in a slot of its own, all served by the node that serves first
// (on a single server, any keys).
func onOneNode(t *testing.T, c redis.UniversalClient, prefix, first string, n int) []string {
	t.Helper()
	var keys []string
	cc, ok := c.(*redis.ClusterClient)
	var node *redis.Client
	if ok {
		var err error
		if node, err = cc.MasterForKey(context.Background(), first); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("%s{k%d}", prefix, i)
		if ok {
			if m, err := cc.MasterForKey(context.Background(), k); err != nil || m != node {
				continue
			}
		}
		keys = append(keys, k)
	}
	return keys
}

// Decisions that arrive while a call is under way go together in the next call: one call (one
// per slot, on a Cluster) in one round trip. Each is answered as a call of its own would be.
func TestQueuedDecisionsShareTheNextCall(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		b := New(be.Client, bucket, bucketBatch, Options{MaxInFlight: 1})
		g := hold(b, 1)
		first := prefix + "{first}"
		held := start(ctx, b, []string{first}, take(10))
		<-g.sending[0]
		keys := onOneNode(t, be.Client, prefix, first, 16)
		var chs []chan result
		for _, k := range keys {
			chs = append(chs, queued(t, ctx, b, []string{k}, take(10)))
		}
		close(g.open[0])
		for i, ch := range append(chs, held) {
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			if ok, left := answer(t, r.val); !ok || left != 9 {
				t.Errorf("decision %d: allowed %v with %d left, want allowed with 9", i, ok, left)
			}
		}
		want := Stats{Decisions: 17, Calls: 2, Trips: 2, Queued: 16}
		if be.IsCluster() {
			want.Calls = 17 // one call per slot, in one round trip
		}
		if got := b.Stats(); got != want {
			t.Errorf("stats %+v, want %+v", got, want)
		}
	})
}

// Decisions alike share one request in a call's arguments (lib/batch.lua): in one call of 40
// decisions making 22 distinct requests (costs, bursts, peeking, one or two limits, more than
// maxRequests of them), on keys that repeat, each decision's reply is exactly what the same
// decision, made alone and in the same order, gets on keys of its own.
func TestRequestsAreShared(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		p := redistest.Prefix(t)
		const now = int64(1_700_000_000_000_000) // µs: every decision at one instant, so replies compare exactly
		type decision struct {
			key  string
			args []any
		}
		var ds []decision
		for i := range 40 {
			cost, burst, flags := int64(1+i%3), int64(10), "0"
			if i%5 == 0 {
				flags = "1" // peek
			}
			if i >= 30 {
				burst = int64(100 + i) // a request of its own each
			}
			args := []any{cost, flags, now, burst, int64(1), int64(86_400_000_000)}
			if i%7 == 0 {
				args = append(args, burst*2, int64(1), int64(86_400_000_000))
			}
			ds = append(ds, decision{fmt.Sprintf("k%d", i%6), args})
		}
		keysOf := func(prefix string, d decision) []string {
			if len(d.args) > 6 {
				return []string{prefix + d.key, prefix + d.key + ":2"}
			}
			return []string{prefix + d.key}
		}

		alone := New(be.Client, bucket, bucketBatch, Options{MaxInFlight: 1})
		var want [][]int64
		for _, d := range ds {
			v, err := alone.Do(ctx, keysOf(p+"{alone}:", d), d.args, nil)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, v)
		}

		b := New(be.Client, bucket, bucketBatch, Options{MaxInFlight: 1})
		g := hold(b, 1)
		held := start(ctx, b, []string{p + "{shared}:first"}, take(10))
		<-g.sending[0]
		var chs []chan result
		for _, d := range ds {
			chs = append(chs, queued(t, ctx, b, keysOf(p+"{shared}:", d), d.args))
		}
		close(g.open[0])
		<-held
		for i, ch := range chs {
			r := <-ch
			if r.err != nil || !slices.Equal(r.val, want[i]) {
				t.Errorf("decision %d (%v): %v, %v; alone it got %v", i, ds[i].args, r.val, r.err, want[i])
			}
		}
		if s := b.Stats(); s.Calls != 2 {
			t.Errorf("stats %+v: want the 40 decisions in one call", s)
		}
	})
}

// In one call, a decision on a key of another type, one on a key holding what no limit writes,
// and one whose second limit is corrupt each get their own error, with nothing written for them;
// the others are decided as if they were not there, two decisions on one key seeing each other.
func TestBadDecisionsAreTheirOwn(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		p := redistest.Prefix(t) + "{one}:" // one slot: one call on a Cluster too
		if err := be.Client.HSet(ctx, p+"hash", "v", "x").Err(); err != nil {
			t.Fatal(err)
		}
		if err := be.Client.Set(ctx, p+"garbage", "v2:not-a-state", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		b := New(be.Client, bucket, bucketBatch, Options{MaxInFlight: 1})
		g := hold(b, 1)
		held := start(ctx, b, []string{p + "first"}, take(10))
		<-g.sending[0]
		calls := []struct {
			keys []string
			args []any
			err  string // the error's text, or "" for a reply: allowed with left tokens
			left int64
		}{
			{[]string{p + "a"}, take(10), "", 9},
			{[]string{p + "hash"}, take(10), "WRONGTYPE", 0},
			{[]string{p + "b"}, take(10), "", 9},
			{[]string{p + "garbage"}, take(10), "CORRUPTSTATE 1", 0},
			{[]string{p + "a"}, take(10), "", 8},
			{[]string{p + "untouched", p + "garbage"}, takeAll(10), "CORRUPTSTATE 2", 0},
			{[]string{p + "b", p + "c"}, takeAll(10), "", 8},
		}
		var chs []chan result
		for _, c := range calls {
			chs = append(chs, queued(t, ctx, b, c.keys, c.args))
		}
		close(g.open[0])
		<-held
		for i, c := range calls {
			r := <-chs[i]
			switch {
			case c.err != "":
				var reply redis.Error
				if !errors.As(r.err, &reply) || !strings.HasPrefix(reply.Error(), c.err) {
					t.Errorf("decision %d: %v, %v; want the error reply %s", i, r.val, r.err, c.err)
				}
			case r.err != nil:
				t.Errorf("decision %d: %v", i, r.err)
			default:
				if ok, left := answer(t, r.val); !ok || left != c.left {
					t.Errorf("decision %d: allowed %v with %d left, want allowed with %d", i, ok, left, c.left)
				}
			}
		}
		if s := b.Stats(); s.Calls != 2 || s.Decisions != 8 {
			t.Errorf("stats %+v: want the 7 queued decisions in one call", s)
		}
		if v, err := be.Client.Get(ctx, p+"garbage").Result(); err != nil || v != "v2:not-a-state" {
			t.Errorf("the corrupt key holds %q, %v", v, err)
		}
		if n, err := be.Client.Exists(ctx, p+"untouched").Result(); err != nil || n != 0 {
			t.Errorf("a decision that failed wrote its other limit: %d, %v", n, err)
		}
	})
}

// A reply of the wrong shape is an error wrapping script.ErrBadReply, and Redis having answered,
// no call counts as failed. A lone call's reply that is no array of integers is its decision's
// error. In a batch reply (lib/batch.lua's packed string), a decision whose values are not
// integers fails alone, and the others get their replies or their error replies; a reply that is
// not made of one part per decision fails every decision of the call.
func TestBadReplies(t *testing.T) {
	be := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	p := redistest.Prefix(t) + "{one}:"
	pack := func(lua string) string { return "return " + lua + " -- " + p }
	single := script.New("test_single", pack("'x'"))
	parts := "struct.pack('>BHd', 0, 1, 1.5) .. struct.pack('>BH', 1, 3) .. 'OOM' .. struct.pack('>BHddddd', 0, 5, 1, 2, 300, -4, 5)"
	b := New(be.Client, single, script.New("test_batch", pack(parts)), Options{MaxInFlight: 1})
	if v, err := b.Do(ctx, []string{p + "lone"}, take(10), nil); !errors.Is(err, script.ErrBadReply) {
		t.Errorf("lone call: %v, %v; want ErrBadReply", v, err)
	}
	rs := batchOf3(t, ctx, b, p)
	if !errors.Is(rs[0].err, script.ErrBadReply) {
		t.Errorf("decision 0 (1.5): %v, %v; want ErrBadReply", rs[0].val, rs[0].err)
	}
	if !redis.HasErrorPrefix(rs[1].err, "OOM") {
		t.Errorf("decision 1: %v, %v; want its error reply OOM", rs[1].val, rs[1].err)
	}
	if want := []int64{1, 2, 300, -4, 5}; rs[2].err != nil || !slices.Equal(rs[2].val, want) {
		t.Errorf("decision 2: %v, %v; want %v", rs[2].val, rs[2].err, want)
	}
	if s := b.Stats(); s.Failed != 0 {
		t.Errorf("stats %+v: Redis answered every call, none failed", s)
	}
	// The text a server whose Lua lacks the struct library answers (lib/batch.lua).
	text := New(be.Client, single, script.New("test_batch", pack(`"ti1,-2,300;e3:OOMi1,2,300,-4,5;"`)), Options{MaxInFlight: 1})
	rs = batchOf3(t, ctx, text, p)
	if want := []int64{1, -2, 300}; rs[0].err != nil || !slices.Equal(rs[0].val, want) {
		t.Errorf("text, decision 0: %v, %v; want %v", rs[0].val, rs[0].err, want)
	}
	if !redis.HasErrorPrefix(rs[1].err, "OOM") {
		t.Errorf("text, decision 1: %v, %v; want its error reply OOM", rs[1].val, rs[1].err)
	}
	if want := []int64{1, 2, 300, -4, 5}; rs[2].err != nil || !slices.Equal(rs[2].val, want) {
		t.Errorf("text, decision 2: %v, %v; want %v", rs[2].val, rs[2].err, want)
	}
	// A part of no integers reads as none in text, as in the packed form.
	empty := New(be.Client, single, script.New("test_batch", pack(`"ti;i1;i2;"`)), Options{MaxInFlight: 1})
	if rs := batchOf3(t, ctx, empty, p); rs[0].err != nil || len(rs[0].val) != 0 || !slices.Equal(rs[2].val, []int64{2}) {
		t.Errorf("text with an empty part: %+v; want no integers, then [1] and [2]", rs)
	}
	for _, body := range []string{
		`"ti1;i1.5;i2;"`,               // not an integer
		`"ti1;e9:OOM;i2;"`,             // a message shorter than its length
		`"ti1;i2;"`,                    // two parts for three decisions
		`"ti1;i2;i3;x"`,                // bytes after the last part
		`"ti1;x2;i3;"`,                 // no such part
		`"ti1;i2;i3"`,                  // a part without its end
		"{1, 2, 3}",                    // an array
		"struct.pack('>BHd', 0, 1, 1)", // one part for three decisions
		parts + " .. 'x'",              // bytes after the last part
		"struct.pack('>BHd', 7, 1, 1) .. struct.pack('>BHd', 0, 1, 1) .. struct.pack('>BHd', 0, 1, 1)", // no such part
		"struct.pack('>BHd', 0, 1, 1) .. struct.pack('>BHd', 0, 1, 1) .. struct.pack('>BHd', 0, 2, 1)", // a part longer than the reply
	} {
		b := New(be.Client, single, script.New("test_batch", pack(body)), Options{MaxInFlight: 1})
		for i, r := range batchOf3(t, ctx, b, p) {
			if !errors.Is(r.err, script.ErrBadReply) {
				t.Errorf("%s: decision %d: %v, %v; want ErrBadReply", body, i, r.val, r.err)
			}
		}
		if s := b.Stats(); s.Failed != 0 {
			t.Errorf("%s: stats %+v: Redis answered every call, none failed", body, s)
		}
	}
}

// batchOf3 sends three decisions through b in one call (behind a held one) and returns their
// results.
func batchOf3(t *testing.T, ctx context.Context, b *Batcher, p string) []result {
	g := hold(b, 1)
	held := start(ctx, b, []string{p + "first"}, take(10))
	<-g.sending[0]
	var chs []chan result
	for i := range 3 {
		chs = append(chs, queued(t, ctx, b, []string{fmt.Sprint(p, i)}, take(10)))
	}
	close(g.open[0])
	<-held
	var rs []result
	for _, ch := range chs {
		rs = append(rs, <-ch)
	}
	return rs
}

// Calls carry at most MaxBatch decisions, the oldest first: ten decisions queued one after the
// other on one key behind a held call go out as calls of 4, 4 and 2, and see the bucket in their
// order.
func TestBatchesAreBoundedAndInOrder(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		key := redistest.Prefix(t) + "{fifo}"
		b := New(be.Client, bucket, bucketBatch, Options{MaxInFlight: 1, MaxBatch: 4})
		var mu sync.Mutex
		var sizes []int
		g := hold(b, 1)
		gate := b.beforeSend
		b.beforeSend = func(n int) {
			mu.Lock()
			sizes = append(sizes, n)
			mu.Unlock()
			gate(n)
		}
		held := start(ctx, b, []string{key}, take(100))
		<-g.sending[0]
		var chs []chan result
		for range 10 {
			chs = append(chs, queued(t, ctx, b, []string{key}, take(100)))
		}
		close(g.open[0])
		<-held
		for i, ch := range chs {
			r := <-ch
			if r.err != nil {
				t.Fatal(r.err)
			}
			if _, left := answer(t, r.val); left != int64(98-i) {
				t.Errorf("decision %d queued: %d left, want %d (decided in the order queued)", i, left, 98-i)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if fmt.Sprint(sizes) != "[1 4 4 2]" {
			t.Errorf("calls of %v decisions, want [1 4 4 2]", sizes)
		}
	})
}

// split keeps a call within MaxBatch decisions, maxArgs keys and arguments, and, per slot, one
// slot; a decision larger than maxArgs goes alone.
func TestSplit(t *testing.T) {
	w := func(slot, limits int) *waiter {
		return &waiter{slot: slot, keys: make([]string, limits), args: make([]any, 3+3*limits)}
	}
	cost := func(cost int64, limits int) *waiter {
		return &waiter{slot: 1, keys: make([]string, limits), args: append([]any{cost}, make([]any, 2+2*limits)...)}
	}
	big := (maxArgs - 4) / 4 // limits of a decision of exactly maxArgs
	for _, tt := range []struct {
		name    string
		perSlot bool
		ws      []*waiter
		want    string
	}{
		{"one slot", true, []*waiter{w(1, 1), w(1, 1), w(1, 1)}, "[3]"},
		{"by slot", true, []*waiter{w(1, 1), w(1, 1), w(2, 1), w(3, 1), w(3, 1)}, "[2 1 2]"},
		{"any slot", false, []*waiter{w(1, 1), w(2, 1), w(3, 1)}, "[3]"},
		{"max batch", false, []*waiter{w(1, 1), w(1, 1), w(1, 1), w(1, 1), w(1, 1)}, "[2 2 1]"},
		{"max args", false, []*waiter{w(1, big/2+1), w(1, big/2+1), w(1, 1)}, "[1 2]"},
		{"up to max args", false, []*waiter{w(1, big/2), w(1, big/2), w(1, 1)}, "[2 1]"},
		{"too large alone", false, []*waiter{w(1, 1), w(1, 2*big), w(1, 1)}, "[1 1 1]"},
		{"exactly max args", false, []*waiter{w(1, big)}, "[1]"},
		{"max cost", false, []*waiter{cost(600, 1), cost(400, 1), cost(1, 1), cost(500, 2), cost(1, 1)}, "[2 1 1 1]"},
		{"cost above max alone", false, []*waiter{cost(1, 1), cost(5000, 1), cost(1, 1), cost(1, 1)}, "[1 1 2]"},
		{"no max cost", false, []*waiter{cost(600, 1), cost(5000, 3), cost(1, 1)}, "[3]"},
	} {
		b := &Batcher{opt: Options{MaxBatch: 64}, perSlot: tt.perSlot}
		switch tt.name {
		case "max batch":
			b.opt.MaxBatch = 2
		case "max cost", "cost above max alone":
			b.opt.MaxCost = 1000
		}
		var sizes []int
		for _, c := range b.split(nil, tt.ws) {
			sizes = append(sizes, len(c))
		}
		if got := fmt.Sprint(sizes); got != tt.want {
			t.Errorf("%s: calls of %v decisions, want %v", tt.name, got, tt.want)
		}
	}
}

// A caller alone sends its decision at once, never waiting for another call, in one EVALSHA of
// the algorithm's own script: the very call made without the Batcher (the batch script is never
// loaded, so never called).
func TestLoneCallerSendsAtOnce(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		redistest.FlushScripts(ctx, t, be.Client)
		if err := bucket.Load(ctx, be.Client); err != nil {
			t.Fatal(err)
		}
		b := New(be.Client, bucket, bucketBatch, Options{})
		before := redistest.CommandCalls(ctx, t, be)
		const n = 50
		for i := range n {
			v, err := b.Do(ctx, []string{fmt.Sprintf("%s{k%d}", prefix, i%5)}, take(100), nil)
			if err != nil {
				t.Fatal(err)
			}
			if ok, left := answer(t, v); !ok || left != int64(99-i/5) {
				t.Fatalf("decision %d: allowed %v, %d left", i, ok, left)
			}
		}
		d := redistest.Delta(before, redistest.CommandCalls(ctx, t, be), "evalsha.calls", "evalsha.failed_calls")
		if d["evalsha.calls"] != n || d["evalsha.failed_calls"] != 0 {
			t.Errorf("%d decisions made %v", n, d)
		}
		if got, want := b.Stats(), (Stats{Decisions: n, Calls: n, Trips: n}); got != want {
			t.Errorf("stats %+v, want %+v (no decision queued)", got, want)
		}
		masters, err := be.Masters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range masters {
			if ok, err := m.ScriptExists(ctx, bucketBatch.SHA1()).Result(); err != nil || ok[0] {
				t.Errorf("%s: the batch script is loaded (%v, %v): a lone decision went through it", m.Options().Addr, ok, err)
			}
		}
	})
}

// A caller whose context ends while its decision is queued returns at once, while the call ahead
// of it is still under way, and nothing is sent for it.
func TestCancelWhileQueued(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		b := New(be.Client, bucket, bucketBatch, Options{MaxInFlight: 1})
		g := hold(b, 1)
		held := start(ctx, b, []string{prefix + "{a}"}, take(10))
		<-g.sending[0]
		cctx, cancel := context.WithCancel(ctx)
		gone := queued(t, cctx, b, []string{prefix + "{gone}"}, take(10))
		cancel()
		if r := returned(t, gone); !errors.Is(r.err, context.Canceled) {
			t.Errorf("canceled while queued: %v, %v", r.val, r.err)
		}
		close(g.open[0])
		if r := <-held; r.err != nil {
			t.Fatal(r.err)
		}
		if n, err := be.Client.Exists(ctx, prefix+"{gone}").Result(); err != nil || n != 0 {
			t.Errorf("the canceled decision was made: %d, %v", n, err)
		}
		if s := b.Stats(); s.Decisions != 1 || s.Calls != 1 {
			t.Errorf("stats %+v, want the held decision alone sent", s)
		}
		stillWorks(t, b, prefix+"{after}")
	})
}

// stillWorks fails the test unless a decision through b is answered: a batcher left with a call
// it thinks under way would queue it for ever (the bound only turns that hang into a failure).
func stillWorks(t *testing.T, b *Batcher, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.Do(ctx, []string{key}, take(10), nil); err != nil {
		t.Errorf("a decision after: %v", err)
	}
}

// A caller whose context ends while its decision is in a call returns at once, while the call is
// under way; the call goes on for the others, and the decision is made (as a single call whose
// context ends after it was sent may be).
func TestCancelWhileInACall(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t) + "{one}:"
		b := New(be.Client, bucket, bucketBatch, Options{MaxInFlight: 1})
		g := hold(b, 2)
		held := start(ctx, b, []string{prefix + "first"}, take(10))
		<-g.sending[0]
		sender := queued(t, ctx, b, []string{prefix + "sender"}, take(10))
		cctx, cancel := context.WithCancel(ctx)
		gone := queued(t, cctx, b, []string{prefix + "gone"}, take(10))
		close(g.open[0]) // the first call returns; "sender" sends itself and "gone", held at gate 1
		if n := <-g.sending[1]; n != 2 {
			t.Fatalf("the second call carries %d decisions, want 2", n)
		}
		cancel()
		if r := returned(t, gone); !errors.Is(r.err, context.Canceled) {
			t.Errorf("canceled in a call: %v, %v", r.val, r.err)
		}
		close(g.open[1])
		for _, ch := range []chan result{held, sender} {
			if r := <-ch; r.err != nil {
				t.Fatal(r.err)
			}
		}
		if v, err := be.Client.Exists(ctx, prefix+"gone").Result(); err != nil || v != 1 {
			t.Errorf("the decision of a caller gone while its call was under way: %d, %v; want it made", v, err)
		}
		stillWorks(t, b, prefix+"after")
	})
}

// The caller that sends a call waits for it past its own deadline while another decision of the
// call has none: its context's end does not fail the others' decisions, and the call is made.
func TestCallOutlivesItsSendersDeadline(t *testing.T) {
	_, rdb := redistest.Private(t) // applies context deadlines to its connections
	ctx := context.Background()
	b := New(rdb, bucket, bucketBatch, Options{MaxInFlight: 1})
	g := hold(b, 2)
	held := start(ctx, b, []string{"{first}"}, take(10))
	<-g.sending[0]
	sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	sender := queued(t, sctx, b, []string{"{sender}"}, take(10)) // the oldest: it sends the next call
	other := queued(t, ctx, b, []string{"{other}"}, take(10))
	close(g.open[0])
	if n := <-g.sending[1]; n != 2 {
		t.Fatalf("the second call carries %d decisions, want 2", n)
	}
	<-sctx.Done() // the sender's deadline passes before its call is sent
	close(g.open[1])
	for name, ch := range map[string]chan result{"first": held, "sender": sender, "other": other} {
		r := <-ch
		if r.err != nil {
			t.Errorf("%s: %v", name, r.err)
			continue
		}
		if ok, left := answer(t, r.val); !ok || left != 9 {
			t.Errorf("%s: allowed %v with %d left", name, ok, left)
		}
	}
}

// Under load, callers give up at random moments (queued, in a call, or about to send one): each
// returns, the batcher goes on working, and every token taken was taken by an admitted decision or
// by one whose caller gave up.
func TestCancelUnderLoad(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		key := redistest.Prefix(t) + "{hot}"
		b := New(be.Client, bucket, bucketBatch, Options{MaxBatch: 4, MaxInFlight: 1})
		var admitted, canceled atomic.Int64
		var wg sync.WaitGroup
		for g := range 64 {
			wg.Go(func() {
				for i := range 20 {
					ctx, cancel := context.WithCancel(context.Background())
					if (g+i)%4 != 0 { // a quarter wait as long as it takes
						ctx, cancel = context.WithTimeout(context.Background(), time.Duration((g*7+i)%10)*400*time.Microsecond)
					}
					v, err := b.Do(ctx, []string{key}, take(1_000_000), nil)
					cancel()
					switch {
					case errors.Is(err, context.DeadlineExceeded):
						canceled.Add(1)
					case err != nil:
						t.Error(err)
					default:
						if ok, _ := answer(t, v); ok {
							admitted.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
		args := take(1_000_000)
		args[1] = "1" // peek
		v, err := b.Do(context.Background(), []string{key}, args, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, left := answer(t, v)
		taken := 1_000_000 - left
		if taken < admitted.Load() || taken > admitted.Load()+canceled.Load() {
			t.Errorf("%d tokens taken, %d decisions admitted, %d canceled", taken, admitted.Load(), canceled.Load())
		}
		// Every decision of a call that succeeded took a token, and no decision not sent did; a call
		// that failed (its deadline passed before or while it was sent) may have run or not.
		s := b.Stats()
		if sent := s.Decisions - 1; taken < sent-s.Failed || taken > sent { // the peek took none
			t.Errorf("%d tokens taken by %d decisions sent, %d of them in calls that failed", taken, sent, s.Failed)
		}
		t.Logf("%d admitted, %d canceled, %d tokens taken; %+v", admitted.Load(), canceled.Load(), taken, b.Stats())
	})
}

// After SCRIPT FLUSH, concurrent decisions recover (the script loaded again on each node that
// needs it), each made exactly once.
func TestNoScriptRecovered(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		b := New(be.Client, bucket, bucketBatch, Options{})
		redistest.FlushScripts(ctx, t, be.Client)
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				for i := range 4 {
					v, err := b.Do(ctx, []string{fmt.Sprintf("%s{k%d}", prefix, (g+i)%4)}, take(100), nil)
					if err != nil {
						t.Error(err)
						return
					}
					if ok, _ := answer(t, v); ok {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		for i := range 4 {
			args := take(100)
			args[1] = "1"
			v, err := b.Do(ctx, []string{fmt.Sprintf("%s{k%d}", prefix, i)}, args, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, left := answer(t, v); left != 68 {
				t.Errorf("key %d: %d left after 32 decisions, want 68", i, left)
			}
		}
		if admitted.Load() != 128 {
			t.Errorf("%d of 128 admitted", admitted.Load())
		}
	})
}

// Keys of several slots in one decision are refused, nothing sent.
func TestCrossSlotRefused(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be *redistest.Backend) {
		b := New(be.Client, bucket, bucketBatch, Options{})
		_, err := b.Do(context.Background(), []string{"{a}x", "{b}y"}, takeAll(10), nil)
		if !errors.Is(err, script.ErrCrossSlot) {
			t.Errorf("cross-slot keys: %v", err)
		}
		if s := b.Stats(); s != (Stats{}) {
			t.Errorf("stats %+v, want nothing sent", s)
		}
	})
}

// The client closed while 64 goroutines decide: every caller returns an error, nothing of the
// batcher is left running, and a decision after it fails at once with redis.ErrClosed.
func TestClientClosedWhileDeciding(t *testing.T) {
	_, rdb := redistest.Private(t)
	b := New(rdb, bucket, bucketBatch, Options{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 64 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if _, err := b.Do(context.Background(), []string{fmt.Sprintf("{k%d}", (g+i)%100)}, take(1_000_000), nil); err != nil {
					failed.Add(1)
					return
				}
			}
		})
	}
	eventually(t, "decisions to flow", func() bool { return b.Stats().Decisions > 1000 })
	if err := rdb.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		buf := make([]byte, 1<<20)
		t.Fatalf("callers still waiting a minute after the client closed:\n%s", buf[:runtime.Stack(buf, true)])
	}
	if failed.Load() != 64 {
		t.Errorf("%d of 64 callers returned an error", failed.Load())
	}
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	for _, frame := range []string{"coalesce.(*queue)", "coalesce.(*Batcher)"} {
		if strings.Contains(stacks, frame) {
			t.Errorf("a goroutine is still in %s:\n%s", frame, stacks)
		}
	}
	if _, err := b.Do(context.Background(), []string{"{k}"}, take(10), nil); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("after the client closed: %v, want redis.ErrClosed", err)
	}
}

// On a Cluster whose slot is migrating, a call of two decisions of that slot, one key still on the
// old master and one not there, is refused with TRYAGAIN before it runs; each decision is then sent
// on its own and made where its key is: on the old master, and (after ASK) on the new one.
func TestTryAgainSplitsTheCall(t *testing.T) {
	_, rdb := redistest.PrivateCluster(t)
	ctx := context.Background()
	present, absent := "{mig}present", "{mig}absent"
	b := New(rdb, bucket, bucketBatch, Options{MaxInFlight: 1})
	if _, err := b.Do(ctx, []string{present}, take(10), nil); err != nil {
		t.Fatal(err)
	}
	_, to, err := redistest.StartMigration(ctx, rdb, present)
	if err != nil {
		t.Fatal(err)
	}

	g := hold(b, 1)
	first := onOneNode(t, rdb, "", present, 2)[1]
	held := start(ctx, b, []string{first}, take(10))
	<-g.sending[0]
	chPresent := queued(t, ctx, b, []string{present}, take(10))
	chAbsent := queued(t, ctx, b, []string{absent}, take(10))
	before := b.Stats()
	close(g.open[0])
	<-held
	for key, want := range map[string]int64{present: 8, absent: 9} {
		ch := map[string]chan result{present: chPresent, absent: chAbsent}[key]
		r := <-ch
		if r.err != nil {
			t.Errorf("%s: %v", key, r.err)
			continue
		}
		if ok, left := answer(t, r.val); !ok || left != want {
			t.Errorf("%s: allowed %v with %d left, want %d", key, ok, left, want)
		}
	}
	if s := b.Stats(); s.Calls-before.Calls != 4 || s.Trips-before.Trips != 3 {
		t.Errorf("stats %+v after %+v: want the held call, the refused call, then one call per decision", s, before)
	}
	var onTo *redis.IntCmd
	if _, err := to.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "ASKING")
		onTo = p.Exists(ctx, absent)
		return nil
	}); err != nil || onTo.Val() != 1 {
		t.Errorf("the absent key on the importing master: %v, %v", onTo.Val(), err)
	}
}

// Over a Ring of two servers, each shard has its queue: 32 goroutines deciding on 20 keys share
// calls, each call going to the shard of its keys, and every key counts exactly its decisions.
func TestRing(t *testing.T) {
	redistest.Get(t, "standalone") // skips unless standalone servers are selected
	addrs := map[string]string{}
	for i := range 2 {
		srv, err := redistest.StartServer()
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		addrs[fmt.Sprint("shard", i)] = srv.Addr
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: addrs, DisableIdentity: true})
	defer ring.Close()
	ctx := context.Background()
	b := New(ring, bucket, bucketBatch, Options{})
	var decided [20]atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 10 {
				k := (g*3 + i) % 20
				if _, err := b.Do(ctx, []string{fmt.Sprintf("{k%d}", k)}, take(1000), nil); err != nil {
					t.Error(err)
					return
				}
				decided[k].Add(1)
			}
		})
	}
	wg.Wait()
	shards := map[string]bool{}
	for k := range 20 {
		key := fmt.Sprintf("{k%d}", k)
		args := take(1000)
		args[1] = "1"
		v, err := b.Do(ctx, []string{key}, args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, left := answer(t, v); left != 1000-decided[k].Load() {
			t.Errorf("%s: %d left after %d decisions", key, left, decided[k].Load())
		}
		shard, err := ring.GetShardClientForKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := shard.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("%s is not on its shard: %d, %v", key, n, err)
		}
		shards[shard.Options().Addr] = true
	}
	if len(shards) != 2 {
		t.Errorf("the keys are on %d shards, want both", len(shards))
	}
	if s := b.Stats(); s.Decisions <= s.Calls {
		t.Errorf("no decision shared a call: %+v", s)
	}
}
