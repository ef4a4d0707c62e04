package script_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

// incrScript returns a script, unique to this test, that adds ARGV[1] to KEYS[1] and returns the sum.
// Its source differs per test, so its SHA1 is new to the server and the first call must hit NOSCRIPT.
func incrScript(prefix string) *script.Script {
	return script.New("test_incr", `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], 60000)
return n
-- `+prefix)
}

func TestClockScript(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		s, ok := script.Lookup("clock")
		if !ok {
			t.Fatal(`Lookup("clock") found nothing`)
		}
		v, err := s.Run(ctx, b.Client, []string{redistest.Prefix(t) + "node"})
		if err != nil {
			t.Fatal(err)
		}
		us, ok := v.(int64)
		if !ok {
			t.Fatalf("clock returned %T, want int64", v)
		}
		if d := time.Since(time.UnixMicro(us)); d < -time.Minute || d > time.Minute {
			t.Errorf("server clock differs from this host's by %v", d)
		}
	})
}

// A SCRIPT FLUSH between two calls is invisible to the caller.
func TestRunRecoversFromScriptFlush(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		s := incrScript(prefix)
		key := prefix + "counter"
		for i := 1; i <= 3; i++ {
			redistest.FlushScripts(ctx, t, b.Client)
			v, err := s.Run(ctx, b.Client, []string{key}, 1)
			if err != nil {
				t.Fatalf("call %d after SCRIPT FLUSH: %v", i, err)
			}
			if v != int64(i) {
				t.Fatalf("call %d = %v, want %d", i, v, i)
			}
		}
	})
}

// A pipeline of 100 calls on a server with an empty script cache succeeds, each call run exactly
// once: a call that came back NOSCRIPT did not run, so running it again counts it once.
func TestRunBatchRecoversFromScriptFlush(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		s := incrScript(prefix)
		clock, _ := script.Lookup("clock")
		for round := 1; round <= 2; round++ {
			redistest.FlushScripts(ctx, t, b.Client)
			calls := make([]script.Call, 100)
			for i := range calls {
				key := fmt.Sprintf("%s{k%d}", prefix, i) // spread over slots and nodes
				if i%10 == 9 {
					calls[i] = script.Call{Script: clock, Keys: []string{key}}
					continue
				}
				calls[i] = script.Call{Script: s, Keys: []string{key}, Args: []any{i}}
			}
			for i, r := range script.RunBatch(ctx, b.Client, calls) {
				if r.Err != nil {
					t.Fatalf("round %d, call %d: %v", round, i, r.Err)
				}
				if i%10 == 9 {
					if _, ok := r.Val.(int64); !ok {
						t.Errorf("round %d, call %d (clock) = %T, want int64", round, i, r.Val)
					}
					continue
				}
				if want := int64(round * i); r.Val != want {
					t.Errorf("round %d, call %d = %v, want %d", round, i, r.Val, want)
				}
			}
		}
	})
}

// After Preload, a call costs the server one EVALSHA and nothing else: no NOSCRIPT, no SCRIPT LOAD,
// no EVAL.
func TestPreloadThenOneEvalsha(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		redistest.FlushScripts(ctx, t, b.Client)
		if err := script.Preload(ctx, b.Client); err != nil {
			t.Fatal(err)
		}
		clock, _ := script.Lookup("clock")
		stats := []string{"evalsha.calls", "evalsha.failed_calls", "evalsha.rejected_calls", "eval.calls", "script|load.calls"}
		for i := range 5 {
			before := redistest.CommandCalls(ctx, t, b)
			if _, err := clock.Run(ctx, b.Client, []string{fmt.Sprintf("%s{k%d}", prefix, i)}); err != nil {
				t.Fatal(err)
			}
			got := redistest.Delta(before, redistest.CommandCalls(ctx, t, b), stats...)
			want := map[string]int64{"evalsha.calls": 1, "evalsha.failed_calls": 0, "evalsha.rejected_calls": 0, "eval.calls": 0, "script|load.calls": 0}
			for _, k := range stats {
				if got[k] != want[k] {
					t.Errorf("call %d: server counted %s += %d, want %d", i, k, got[k], want[k])
				}
			}
		}
	})
}

// Keys in two slots: a clear error, and nothing reaches the server.
func TestCrossSlotRefused(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		s := incrScript(prefix)
		a, c := prefix+"{a}", prefix+"{b}"
		if script.Slot(a) == script.Slot(c) {
			t.Fatalf("test keys share slot %d; pick others", script.Slot(a))
		}
		if err := s.Load(ctx, b.Client); err != nil {
			t.Fatal(err)
		}
		before := redistest.CommandCalls(ctx, t, b)

		_, err := s.Run(ctx, b.Client, []string{a, c}, 1)
		if !errors.Is(err, script.ErrCrossSlot) {
			t.Errorf("Run with keys in two slots: err = %v, want ErrCrossSlot", err)
		}
		res := script.RunBatch(ctx, b.Client, []script.Call{
			{Script: s, Keys: []string{a, c}, Args: []any{1}},
			{Script: s, Keys: []string{a, prefix + "x{a}"}, Args: []any{1}}, // same tag, same slot
		})
		if !errors.Is(res[0].Err, script.ErrCrossSlot) {
			t.Errorf("RunBatch call with keys in two slots: err = %v, want ErrCrossSlot", res[0].Err)
		}
		if res[1].Err != nil || res[1].Val != int64(1) {
			t.Errorf("RunBatch call with one slot = (%v, %v), want (1, nil)", res[1].Val, res[1].Err)
		}
		got := redistest.Delta(before, redistest.CommandCalls(ctx, t, b), "evalsha.calls")["evalsha.calls"]
		if got != 1 {
			t.Errorf("server counted %d EVALSHA, want 1 (the refused calls must not be sent)", got)
		}
	})
}

// One call's error reply does not fail the other calls of its batch, and a script error is returned
// as the redis.Error it is, wrapped with the script's name.
func TestRunBatchIndependentErrors(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		fail := script.New("test_fail", "return redis.error_reply('BADARG nope') -- "+prefix)
		ok := incrScript(prefix)
		res := script.RunBatch(ctx, b.Client, []script.Call{
			{Script: ok, Keys: []string{prefix + "{a}"}, Args: []any{2}},
			{Script: fail, Keys: []string{prefix + "{b}"}},
			{Script: nil},
			{Script: ok, Keys: []string{prefix + "{c}"}, Args: []any{3}},
		})
		if res[0].Err != nil || res[0].Val != int64(2) {
			t.Errorf("call 0 = (%v, %v), want (2, nil)", res[0].Val, res[0].Err)
		}
		var rerr redis.Error
		if !errors.As(res[1].Err, &rerr) || rerr.Error() != "BADARG nope" {
			t.Errorf("call 1 err = %v, want the script's error reply", res[1].Err)
		}
		if res[2].Err == nil {
			t.Error("call 2 without a script: no error")
		}
		if res[3].Err != nil || res[3].Val != int64(3) {
			t.Errorf("call 3 = (%v, %v), want (3, nil)", res[3].Val, res[3].Err)
		}
	})
}

// script.Slot agrees with the server's CLUSTER KEYSLOT, hash tags included.
func TestSlotMatchesServer(t *testing.T) {
	b := redistest.Get(t, "cluster")
	ctx := context.Background()
	keys := []string{"", "a", "foo", "{user1000}.following", "{}x", "x{}{y}", "{{a}}", "a}{b}", "\xff\x00{\xfe}"}
	for i := range 200 {
		keys = append(keys, "k"+strconv.Itoa(i)+"{t"+strconv.Itoa(i%7)+"}")
	}
	for _, k := range keys {
		want, err := b.Client.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := script.Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d, server says %d", k, got, want)
		}
	}
}

// Every embedded script, as composed from its parts, compiles on every node of a real server:
// SCRIPT LOAD accepts it and returns the digest the runtime sends with EVALSHA.
func TestEveryScriptLoads(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		all := script.Scripts()
		if len(all) == 0 {
			t.Fatal("no embedded scripts")
		}
		redistest.EachNode(ctx, t, b.Client, func(ctx context.Context, n *redis.Client) error {
			for _, s := range all {
				sha, err := n.ScriptLoad(ctx, s.Source()).Result()
				if err != nil {
					t.Errorf("%s on %s: SCRIPT LOAD: %v", s.Name(), n.Options().Addr, err)
				} else if sha != s.SHA1() {
					t.Errorf("%s on %s: SCRIPT LOAD returned %s, the runtime sends %s", s.Name(), n.Options().Addr, sha, s.SHA1())
				}
			}
			return nil
		})
	})
}
