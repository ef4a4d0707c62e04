package script_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

var errRefused = errors.New("refused by a hook")

// pipelineRefuser is a circuit breaker's hook for pipelines: while closed it refuses every pipeline
// without sending it, and go-redis gives the error to no command of it.
type pipelineRefuser struct{ closed atomic.Bool }

func (h *pipelineRefuser) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineRefuser) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineRefuser) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.closed.Load() {
			return errRefused
		}
		return next(ctx, cmds)
	}
}

// A pipeline refused as a whole leaves each call of RunBatch and each command of Exec with the
// refusal, never with an empty answer that reads as a reply.
func TestPipelineRefusedByHook(t *testing.T) {
	redistest.Get(t, "standalone") // skips unless standalone servers are selected
	srv, err := redistest.StartServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true})
	defer c.Close()
	h := &pipelineRefuser{}
	c.AddHook(h)
	ctx := context.Background()
	s := incrScript(redistest.Prefix(t))
	if err := s.Load(ctx, c); err != nil {
		t.Fatal(err)
	}
	h.closed.Store(true)
	for i, r := range script.RunBatch(ctx, c, []script.Call{
		{Script: s, Keys: []string{"{a}"}, Args: []any{1}},
		{Script: s, Keys: []string{"{b}"}, Args: []any{1}},
	}) {
		if !errors.Is(r.Err, errRefused) {
			t.Errorf("RunBatch call %d: (%v, %v), want the hook's refusal", i, r.Val, r.Err)
		}
	}
	cmds := []redis.Cmder{
		s.Cmd(ctx, []any{nil, nil, nil, "{a}", 1}, 1),
		s.Cmd(ctx, []any{nil, nil, nil, "{b}", 1}, 1),
	}
	script.Exec(ctx, c, cmds, s)
	for i, cmd := range cmds {
		if !errors.Is(cmd.Err(), errRefused) {
			t.Errorf("Exec command %d: %v, want the hook's refusal", i, cmd.Err())
		}
	}
	h.closed.Store(false)
	if r := script.RunBatch(ctx, c, []script.Call{{Script: s, Keys: []string{"{a}"}, Args: []any{1}}}); r[0].Err != nil || r[0].Val != int64(1) {
		t.Errorf("RunBatch once the hook lets it through: (%v, %v), want (1, nil)", r[0].Val, r[0].Err)
	}
}
