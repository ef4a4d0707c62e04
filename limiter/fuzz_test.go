package limiter

import (
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/script"
)

// Any identifier stays inside its hash tag, so its keys' cluster slot is its own, and different
// identifiers never share a key.
func FuzzRedisKey(f *testing.F) {
	for _, s := range [][2]string{{"user:42", "user:43"}, {"{a}", "%7Ba%7D"}, {"a}b", "a%7Db"}, {"%", "%25"}, {"", "}"}, {"x{y}z", "x"}} {
		f.Add(s[0], s[1])
	}
	l := &Limiter{alg: algorithms[TokenBucket], prefix: DefaultKeyPrefix}
	lim := PerSecond(1)
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == "" || b == "" {
			return // refused with ErrInvalidKey before any key is made
		}
		ka, kb := l.redisKey(a, lim), l.redisKey(b, lim)
		if (a == b) != (ka == kb) {
			t.Fatalf("identifiers %q and %q give keys %q and %q", a, b, ka, kb)
		}
		open := strings.IndexByte(ka, '{')
		end := strings.IndexByte(ka[open+1:], '}')
		if end < 0 || !strings.HasSuffix(ka, "}:tb:1000") || open+1+end != len(ka)-len("}:tb:1000") {
			t.Fatalf("identifier %q escapes its hash tag in %q", a, ka)
		}
		if script.Slot(ka) != script.Slot(l.redisKey(a, PerHour(1))) {
			t.Fatalf("identifier %q: its keys are in different slots", a)
		}
	})
}

// A reply of any length and values is decoded or refused with ErrBadReply; it never panics.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{1, 1, 2, 3, 4}, uint8(1))
	f.Add([]byte{0, 0}, uint8(2))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, shape []byte, nLimits uint8) {
		limits := make([]Limit, nLimits%4)
		for i := range limits {
			limits[i] = PerSecond(int64(i + 1))
		}
		// Each byte makes one integer, spread over the whole range.
		ints := make([]int64, len(shape))
		for i, c := range shape {
			ints[i] = (int64(c) - 128) << (c % 56)
		}
		out := make([]Result, len(limits))
		if err := decode(ints, limits, out); err != nil && !errors.Is(err, ErrBadReply) {
			t.Fatalf("decode error without ErrBadReply: %v", err)
		}
	})
}
