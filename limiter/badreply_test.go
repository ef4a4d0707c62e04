package limiter

import (
	"context"
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/internal/coalesce"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
)

// A reply that is not the script's array of integers is ErrBadReply, sent alone or
// coalesced, and no failure policy stands in for it: Redis answered. (A script of the
// limiter's cannot answer so, since EVALSHA runs the very script whose digest it sends: the test
// swaps in scripts that do.)
func TestBadReply(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	for _, body := range []string{"return 'x'", "return {1, 'x', 0, 0, 0}", "return {1, {1}, 0, 0, 0}"} {
		for _, coalesced := range []bool{false, true} {
			opts := []Option{WithKeyPrefix(prefix), WithFailurePolicy(FailOpen())}
			if !coalesced {
				opts = append(opts, WithoutCoalescing())
			}
			l, err := New(b.Client, TokenBucket, opts...)
			if err != nil {
				t.Fatal(err)
			}
			alg := *l.alg
			alg.script = script.New("test_bad_single", body+" -- "+prefix)
			alg.batch = script.New("test_bad_batch", "return {"+body[len("return "):]+"} -- "+prefix)
			l.alg = &alg
			if l.batch != nil {
				l.batch = coalesce.New(b.Client, alg.script, alg.batch, coalesce.Options{})
			}
			res, err := l.Allow(ctx, "k", PerSecond(10))
			if !errors.Is(err, ErrBadReply) {
				t.Errorf("%s (coalesced %v): %+v, %v; want ErrBadReply, not the failure policy", body, coalesced, res, err)
			}
		}
	}
}
