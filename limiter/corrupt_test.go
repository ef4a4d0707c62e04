package limiter_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/limitertest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/limiter"
	"github.com/redis/go-redis/v9"
)

// corruptValues are, per algorithm, values a limit's key may be found holding that the limiter
// never writes: garbage, partial values, numbers no limit could have written, in the text formats
// (v1, v2) and the binary one (v3: a tag byte, then big-endian integers; docs/algorithms.md).
var corruptValues = map[limiter.Algorithm][]string{
	limiter.FixedWindow: {"", "garbage", "\xff\x00", "-1:3", "1e5:3", " 12:3", "12:3 ", "12", "12:", ":3", "v2:", "v2:123",
		"v2:123:", "v2::5", "v2:1:2:3", "v3:1:2", "v2:99999999999999999999:1", "v2:1:99999999999999999999",
		"\xf3", "\xf3" + zeros(13), "\xf3" + zeros(15), // the tag and a wrong length
		"\xf3" + ones(7) + zeros(7), // a window ending centuries ahead
		"\xf3" + zeros(7) + ones(7), // a count past 2^53
		"\xb3" + zeros(14),          // another algorithm's tag
	},
	limiter.SlidingWindow: {"", "garbage", "1:2", "1:2:", "1:2:3:", "v2:1:2:3", "v2:1:2:3:", "v2:1:0:3:4",
		"v2:1:999999999999999:3:4", "v2:99999999999999999:1000:1:1", "v2:1:1000:99999999999999:0", "1.5:2:3",
		"\xc3" + zeros(24), "\xc3" + zeros(26), // the tag and a wrong length
		"\xc3" + zeros(25),                                              // a window of 0 ms
		"\xc3" + zeros(6) + ones(5) + zeros(14),                         // a window longer than MaxPeriod
		"\xc3" + ones(6) + "\x00\x00\x00\xea\x60" + zeros(14),           // a window starting centuries ahead
		"\xc3" + zeros(6) + "\x00\x00\x00\xea\x60" + ones(7) + zeros(7), // counts past 2^53 with the window
		"\xb3" + zeros(25),                                              // another algorithm's tag
	},
	limiter.TokenBucket: {"", "garbage", "-5", "1.5", "12:34", "v2:1:2:3", "v2:1:2:3:", "v2:1:2:0:1", "v2:1:2:1:0",
		"v2:99999999999999999999:2:1:1", "v2:1:99999999999999999:1:1", "v2:x:2:1:1",
		"\xb3" + zeros(27), "\xb3" + zeros(29), // the tag and a wrong length
		"\xb3" + zeros(14) + zeros(6) + "\x01" + zeros(7),                   // r = 1, p = 0
		"\xb3" + zeros(14) + zeros(7) + zeros(6) + "\x01",                   // r = 0, p = 1
		"\xb3" + ones(7) + zeros(7) + zeros(6) + "\x01" + zeros(6) + "\x01", // a debt past 2^53
		"\xb3" + zeros(7) + ones(7) + zeros(6) + "\x01" + zeros(6) + "\x01", // written centuries ahead
		"\xf3" + zeros(28), // another algorithm's tag
	},
}

// zeros and ones are n bytes 0x00 and 0xff.
func zeros(n int) string { return strings.Repeat("\x00", n) }
func ones(n int) string  { return strings.Repeat("\xff", n) }

// writeCorrupt puts a value of the corrupt kind into key, with an expiry like the limiter's.
func writeCorrupt(t *testing.T, ctx context.Context, c redis.UniversalClient, key, kind, value string) {
	t.Helper()
	c.Del(ctx, key)
	var err error
	switch kind {
	case "string":
		err = c.Set(ctx, key, value, time.Hour).Err()
	case "hash":
		err = c.HSet(ctx, key, "v", value).Err()
	case "list":
		err = c.RPush(ctx, key, value).Err()
	case "zset score":
		// A member whose score is not a whole number of microseconds, newer than any request.
		err = c.ZAdd(ctx, key, redis.Z{Score: float64(time.Now().UnixMicro()+10e6) + 0.5, Member: "x"}).Err()
	case "zset inf":
		err = c.ZAdd(ctx, key, redis.Z{Score: math.Inf(1), Member: "x"}).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Expire(ctx, key, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
}

// Corrupt state under a limit's key is ErrCorruptState for every algorithm, whatever the failure
// policy: never read as empty (a fresh quota), never a Redis failure the policy hides. Nothing is
// written, to this key or to the other limits of the call; Reset clears it.
func TestLimiterCorruptState(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, a := range algorithms {
			for _, send := range sendModes {
				t.Run(a.alg.String()+send.suffix, func(t *testing.T) { corruptState(t, b, a.alg, send.opts) })
			}
		}
	})
}

// corruptState checks one algorithm, its limiters made with opts.
func corruptState(t *testing.T, b *redistest.Backend, alg limiter.Algorithm, opts []limiter.Option) {
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	lim, err := limiter.New(b.Client, alg, append(opts, limiter.WithKeyPrefix(prefix))...)
	if err != nil {
		t.Fatal(err)
	}
	open, err := limiter.New(b.Client, alg, append(opts, limiter.WithKeyPrefix(prefix), limiter.WithFailurePolicy(limiter.FailOpen()), limiter.WithLogger(limitertest.Discard))...)
	if err != nil {
		t.Fatal(err)
	}
	limit, other := limiter.PerMinute(5).WithName("api"), limiter.PerHour(50).WithName("hourly")
	type state struct{ kind, value string }
	states := []state{{"hash", "x"}, {"list", "x"}}
	if alg == limiter.SlidingLog {
		states = append(states, state{"string", "garbage"}, state{"string", "5"}, state{"zset score", ""}, state{"zset inf", ""})
	}
	for _, v := range corruptValues[alg] {
		states = append(states, state{"string", v})
	}
	for _, s := range states {
		id := "corrupt"
		key := limitertest.Key(prefix, alg, id, limit)
		writeCorrupt(t, ctx, b.Client, key, s.kind, s.value)
		before := dump(t, b, prefix, id)
		calls := map[string]func() (limiter.Result, error){
			"Allow":               func() (limiter.Result, error) { return lim.Allow(ctx, id, limit) },
			"Peek":                func() (limiter.Result, error) { return lim.Peek(ctx, id, limit) },
			"AllowAll":            func() (limiter.Result, error) { return lim.AllowAll(ctx, id, 1, other, limit) },
			"Allow, fail-open":    func() (limiter.Result, error) { return open.Allow(ctx, id, limit) },
			"AllowN over the cap": func() (limiter.Result, error) { return lim.AllowN(ctx, id, limit, 6) },
		}
		if s.kind == "zset score" || s.kind == "zset inf" {
			// Scores are read only where the script reads a member: a peek, a refusal.
			delete(calls, "Allow")
			delete(calls, "AllowAll")
			delete(calls, "Allow, fail-open")
		}
		for name, call := range calls {
			r, err := call()
			if !errors.Is(err, limiter.ErrCorruptState) {
				t.Errorf("%s over a %s %q: %+v, %v; want ErrCorruptState", name, s.kind, s.value, r, err)
			}
		}
		if after := dump(t, b, prefix, id); after != before {
			t.Errorf("a %s %q: the corrupt key changed:\n%s\n%s", s.kind, s.value, before, after)
		}
		if err := lim.Reset(ctx, id, limit); err != nil {
			t.Fatal(err)
		}
		if r, err := lim.Allow(ctx, id, limit); err != nil || !r.Allowed || r.Remaining != 4 {
			t.Errorf("a %s %q, after Reset: %+v, %v; want the first request of 5", s.kind, s.value, r, err)
		}
		if err := lim.Reset(ctx, id, limit, other); err != nil {
			t.Fatal(err)
		}
	}
	redistest.AssertKeysExpire(t, b, prefix)
}
