package session_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

var errRefused = errors.New("refused by a hook")

// refusingHook is a circuit breaker's hook: while closed it refuses every command and pipeline
// without sending it.
type refusingHook struct{ closed atomic.Bool }

func (h *refusingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *refusingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.closed.Load() {
			return errRefused
		}
		return next(ctx, cmd)
	}
}

func (h *refusingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.closed.Load() {
			return errRefused
		}
		return next(ctx, cmds)
	}
}

// A load refused by a client hook (a circuit breaker) fails with the hook's error, as a save does:
// a load is a pipeline, whose error may reach none of its commands, and reading that as an empty
// answer made the session look corrupt, which the middleware answers by replacing it.
func TestLoadRefusedByHook(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		s := sessiontest.Stored(t, st, "a", "1")
		h := &refusingHook{}
		hs := hookedStore(t, b, prefix, h)
		if _, err := hs.Load(ctx, s.Token()); err != nil {
			t.Fatal(err)
		}
		h.closed.Store(true)
		_, err := hs.Load(ctx, s.Token())
		if !errors.Is(err, errRefused) || errors.Is(err, session.ErrCorrupt) {
			t.Errorf("Load refused by the hook: %v; want the hook's error, not ErrCorrupt", err)
		}
		h.closed.Store(false)
		if _, err := hs.Load(ctx, s.Token()); err != nil {
			t.Errorf("Load once the hook lets it through: %v", err)
		}
	})
}
