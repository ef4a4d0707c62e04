package limiter

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// A coalesced call of the sliding log adds at most MaxSlidingLogRate members, as one decision may:
// 32 concurrent decisions of cost 6,000 are never sent together (each goes as the algorithm's own
// script call), while decisions of cost 1 from the same callers share batch calls.
func TestCoalescedSlidingLogBoundsMembersPerCall(t *testing.T) {
	_, c := redistest.Private(t)
	calls := &shaCounter{}
	c.AddHook(calls)
	l, err := New(c, SlidingLog, WithCoalescing())
	if err != nil {
		t.Fatal(err)
	}
	batch := l.alg.batch.SHA1()
	ctx := context.Background()
	run := func(cost int64) {
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				for i := range 4 {
					id := string(rune('A'+g)) + string(rune('a'+i))
					if _, err := l.AllowN(ctx, id, PerHour(MaxSlidingLogRate), cost); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
	}
	run(6000)
	if n := calls.count(batch); n != 0 {
		t.Errorf("%d batch calls for decisions of cost 6000: a call added more than %d members", n, MaxSlidingLogRate)
	}
	run(1)
	if n := calls.count(batch); n == 0 {
		t.Error("no batch call for 128 concurrent decisions of cost 1: the test made no batches to bound")
	}
}

// shaCounter is a go-redis hook counting the EVALSHA commands a client sends, by digest.
type shaCounter struct {
	mu sync.Mutex
	n  map[string]*atomic.Int64
}

func (h *shaCounter) count(sha string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.n[sha]; ok {
		return c.Load()
	}
	return 0
}

func (h *shaCounter) add(cmd redis.Cmder) {
	args := cmd.Args()
	if len(args) < 2 || cmd.Name() != "evalsha" {
		return
	}
	sha, _ := args[1].(string)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]*atomic.Int64{}
	}
	if h.n[sha] == nil {
		h.n[sha] = new(atomic.Int64)
	}
	h.n[sha].Add(1)
}

func (h *shaCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *shaCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd)
		return next(ctx, cmd)
	}
}

func (h *shaCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.add(cmd)
		}
		return next(ctx, cmds)
	}
}
