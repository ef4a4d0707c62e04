package script_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

// intsScript returns a script, unique to the test, that adds ARGV[1] to KEYS[1] (with a TTL) and
// replies {the sum, ARGV[2], -ARGV[2], 2^40}: integers past 255, negative and past 2^32, as the
// limiter's scripts reply.
func intsScript(prefix string) *script.Script {
	return script.New("test_ints", `
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], 60000)
return {n, tonumber(ARGV[2]), -tonumber(ARGV[2]), 2^40}
-- `+prefix)
}

// runInts calls RunInts with the command built as its callers build it: one slice, the first
// 3 + len(keys) left for RunInts.
func runInts(ctx context.Context, s *script.Script, via script.Via, c redis.UniversalClient, keys []string, argv ...any) ([]int64, error) {
	args := append(make([]any, 3+len(keys)), argv...)
	return s.RunInts(ctx, via, c, keys, args)
}

// RunInts decodes an array of integers, recovers from NOSCRIPT through the client and through an
// asynchronous auto-pipeliner, refuses keys of two slots without sending anything, and returns an
// error reply as the redis.Error it is.
func TestRunInts(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		s := intsScript(prefix)
		ap, err := b.Client.(interface {
			AsyncAutoPipeline() (*redis.AutoPipeliner, error)
		}).AsyncAutoPipeline()
		if err != nil {
			t.Fatal(err)
		}
		defer ap.Close()
		key := prefix + "{k}"
		for i, via := range []script.Via{b.Client, ap, b.Client, ap} {
			redistest.FlushScripts(ctx, t, b.Client)
			got, err := runInts(ctx, s, via, b.Client, []string{key}, 2, 300)
			want := []int64{int64(2 * (i + 1)), 300, -300, 1 << 40}
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("call %d (through %T) after SCRIPT FLUSH = %v, %v; want %v", i, via, got, err, want)
			}
		}

		before := redistest.CommandCalls(ctx, t, b)
		if _, err := runInts(ctx, s, b.Client, b.Client, []string{prefix + "{a}", prefix + "{b}"}, 1, 1); !errors.Is(err, script.ErrCrossSlot) {
			t.Errorf("keys in two slots: err = %v, want ErrCrossSlot", err)
		}
		if got := redistest.Delta(before, redistest.CommandCalls(ctx, t, b), "evalsha.calls")["evalsha.calls"]; got != 0 {
			t.Errorf("server counted %d EVALSHA for a call refused for its slots, want 0", got)
		}

		fail := script.New("test_fail", "return redis.error_reply('BADARG nope') -- "+prefix)
		_, err = runInts(ctx, fail, b.Client, b.Client, []string{key})
		var reply redis.Error
		if !errors.As(err, &reply) || reply.Error() != "BADARG nope" || errors.Is(err, script.ErrBadReply) {
			t.Errorf("an error reply: err = %v, want the redis.Error BADARG nope", err)
		}
	})
}

// A reply that is not an array of integers is an error wrapping ErrBadReply (Redis answered: no
// route refresh, no failure of the server), and the client's next calls read their own replies:
// the connection that held the rest of the bad reply is not reused.
func TestRunIntsRefusesOtherReplies(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		prefix := redistest.Prefix(t)
		good := intsScript(prefix)
		key := prefix + "{k}"
		sum := int64(0)
		for _, body := range []string{
			"return 'x'",                      // a string
			"return 7",                        // an integer alone
			"return redis.status_reply('OK')", // a status
			"return {1, 'x', 3}",              // an element that is no number
			"return {1, {2, 3}, 4}",           // a nested array
			"return {1, redis.status_reply('OK'), 3}",
		} {
			bad := script.New("test_bad", body+" -- "+prefix)
			_, err := runInts(ctx, bad, b.Client, b.Client, []string{key})
			if !errors.Is(err, script.ErrBadReply) {
				t.Errorf("%s: err = %v, want ErrBadReply", body, err)
			}
			for range 3 { // on every connection of the pool the bad reply could have been left on
				sum++
				got, err := runInts(ctx, good, b.Client, b.Client, []string{key}, 1, 1000)
				if want := []int64{sum, 1000, -1000, 1 << 40}; err != nil || !slices.Equal(got, want) {
					t.Fatalf("after %s: %v, %v; want %v", body, got, err, want)
				}
			}
		}
	})
}
