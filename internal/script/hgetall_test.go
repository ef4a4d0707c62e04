package script_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/redis/go-redis/v9"
)

// hashScript returns a script, unique to this test, that counts its calls in field n of the hash
// KEYS[1], sets field f to ARGV[1], and answers {1, ARGV[1]}; or, when ARGV[1] is "corrupt", an
// error reply; or, when it is "int", 42.
func hashScript(prefix string) *script.Script {
	return script.New("test_hash", `
if ARGV[1] == 'corrupt' then return redis.error_reply('GATEHOUSE corrupt test') end
if ARGV[1] == 'int' then return 42 end
redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'f', ARGV[1])
redis.call('PEXPIRE', KEYS[1], 60000)
return {1, ARGV[1]}
-- `+prefix)
}

// RunHGetAll reads the hash as it was before the script ran, recovers from NOSCRIPT without
// running the script twice, passes an error reply on, and refuses keys in two slots; over RESP3
// (HGETALL answers a map) and RESP2 (an array) alike.
func TestRunHGetAll(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		clients := map[string]redis.UniversalClient{"resp3": b.Client}
		if c, ok := b.Client.(*redis.Client); ok {
			o := *c.Options()
			o.Protocol = 2
			resp2 := redis.NewClient(&o)
			t.Cleanup(func() { resp2.Close() })
			clients["resp2"] = resp2
		}
		for name, c := range clients {
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				prefix := redistest.Prefix(t)
				s := hashScript(prefix)
				key := prefix + "{h}"
				for i := 1; i <= 3; i++ {
					redistest.FlushScripts(ctx, t, b.Client)
					v := fmt.Sprint("v", i)
					hash, reply, err := s.RunHGetAll(ctx, c, []string{key, prefix + "{h}:other"}, v)
					if err != nil {
						t.Fatalf("call %d after SCRIPT FLUSH: %v", i, err)
					}
					if r, ok := reply.([]any); !ok || len(r) != 2 || r[0] != int64(1) || r[1] != v {
						t.Errorf("call %d: reply %#v, want [1 %s]", i, reply, v)
					}
					// The read comes first: the hash the previous calls left.
					if want := fmt.Sprint("v", i-1); i > 1 && (hash["f"] != want || hash["n"] != fmt.Sprint(i-1)) || i == 1 && len(hash) != 0 {
						t.Errorf("call %d: hash %v, want what %d calls left (each run once)", i, hash, i-1)
					}
				}
				if _, reply, err := s.RunHGetAll(ctx, c, []string{key}, "int"); err != nil || reply != int64(42) {
					t.Errorf("an integer reply: %#v, %v; want 42", reply, err)
				}
				_, _, err := s.RunHGetAll(ctx, c, []string{key}, "corrupt")
				if err == nil || !strings.Contains(err.Error(), "GATEHOUSE corrupt test") {
					t.Errorf("an error reply: err = %v, want it passed on", err)
				}
				_, _, err = s.RunHGetAll(ctx, c, []string{prefix + "{a}", prefix + "{b}"}, "x")
				if !errors.Is(err, script.ErrCrossSlot) {
					t.Errorf("keys in two slots: err = %v, want ErrCrossSlot", err)
				}
			})
		}
	})
}
