package limiter

import (
	"context"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// A coalesced call of the sliding log adds at most MaxSlidingLogRate members, as one decision may:
// 32 concurrent decisions of cost 6,000 are never sent together (each goes as the algorithm's own
// script call), while decisions of cost 1 from the same callers share batch calls.
func TestCoalescedSlidingLogBoundsMembersPerCall(t *testing.T) {
	_, c := redistest.Private(t)
	calls := &redistest.Calls{}
	c.AddHook(calls)
	l, err := New(c, SlidingLog)
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
	if n := calls.Evals(batch); n != 0 {
		t.Errorf("%d batch calls for decisions of cost 6000: a call added more than %d members", n, MaxSlidingLogRate)
	}
	run(1)
	if n := calls.Evals(batch); n == 0 {
		t.Error("no batch call for 128 concurrent decisions of cost 1: the test made no batches to bound")
	}
}
