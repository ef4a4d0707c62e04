package session

import (
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// fuzzStore is a Store whose client is never reached: these targets exercise decoding only.
func fuzzStore(t testing.TB, opts ...Option) *Store {
	st, err := NewStore(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// A stored record of any content, as a load reads it, is read or refused with
// ErrCorrupt: no panic, and a record that is read has what every session needs.
func FuzzFill(f *testing.F) {
	f.Add(int64(1700000000000), "_g\x001\x00_d\x001700000060000\x00_i\x0060000\x00a:cart\x00[\"book\"]")
	f.Add(int64(0), "_g\x00\x00_d\x00x")
	f.Add(int64(-1), "_u\x00alice\x00_c\x00-5\x00_a\x009223372036854775807")
	f.Add(int64(1), "odd")
	st := fuzzStore(f)
	f.Fuzz(func(t *testing.T, now int64, fields string) {
		rec := map[string]string{}
		if fields != "" {
			p := strings.Split(fields, "\x00")
			for i := 0; i+1 < len(p); i += 2 {
				rec[p[i]] = p[i+1]
			}
		}
		s := st.blank("", "k")
		err := s.fill(now, rec)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error without ErrCorrupt: %v", err)
			}
			return
		}
		if s.gen == "" || s.meta.Deadline.IsZero() || s.meta.IdleTimeout == 0 {
			t.Fatalf("read a record lacking generation, deadline or idle timeout: %+v", s.meta)
		}
	})
}

// Attribute values of any bytes (corrupt, or written by another codec) never panic the typed
// getters: they read as absent-or-zero, and Get reports ErrCorrupt.
func FuzzGetters(f *testing.F) {
	for _, v := range []string{`"text"`, `42`, `true`, `{"a":1}`, "\x92\x01\x02", "\xff", ""} {
		f.Add([]byte(v))
	}
	stores := []*Store{fuzzStore(f), fuzzStore(f, WithCodec(Msgpack))}
	f.Fuzz(func(t *testing.T, v []byte) {
		for _, st := range stores {
			s := st.blank("", "k")
			s.values["x"] = string(v)
			_ = s.GetString("x")
			_ = s.GetInt("x")
			_ = s.GetBool("x")
			var anything any
			if _, err := s.Get("x", &anything); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get error without ErrCorrupt: %v", err)
			}
			var m map[string][]int
			if _, err := s.Get("x", &m); err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Get error without ErrCorrupt: %v", err)
			}
		}
	})
}

// Any string is a well-formed token or not, and only well-formed ones map to a storage key.
func FuzzToken(f *testing.F) {
	st := fuzzStore(f)
	good, err := st.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(good.Token()))
	f.Add("AAAA" + strings.Repeat("B", 43))
	f.Add("short")
	f.Add(strings.Repeat("é", 24))
	f.Fuzz(func(t *testing.T, s string) {
		tok := Token(s)
		if !tok.valid() {
			return
		}
		k := st.keyOf(tok)
		tag, ok := st.tagOfKey(k)
		if !ok || tag != tok.tag() {
			t.Fatalf("token %q: key %q has tag %q (ok %v), want %q", s, k, tag, ok, tok.tag())
		}
	})
}
