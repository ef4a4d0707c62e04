package session

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
)

// The size Go counts for a session it loaded is the size the scripts count for the stored record:
// the sum of every field's name and value lengths.
func TestSizeCountedAsTheScriptsCount(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, err := NewStore(b.Client, WithKeyPrefix(redistest.Prefix(t)))
		if err != nil {
			t.Fatal(err)
		}
		stored := func(k Key) int {
			n := 0
			for f, v := range b.Client.HGetAll(ctx, string(k)).Val() {
				n += len(f) + len(v)
			}
			return n
		}
		check := func(what string, s *Session) {
			t.Helper()
			r, err := st.Load(ctx, s.Token())
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if got, want := r.size(), stored(r.key); got != want {
				t.Errorf("%s: Go counts %d bytes, the stored record has %d", what, got, want)
			}
		}
		s, _ := st.New()
		s.Put("cart", []string{"book", "pen"})
		s.Put(strings.Repeat("n", 300), 1)
		if err := st.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		check("anonymous", s)
		r, _ := st.Load(ctx, s.Token())
		r.SetClient("2001:db8::1", strings.Repeat("agent ", 30))
		r.SetLabel("laptop")
		r.Put("more", "x")
		if err := st.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		check("saved with metadata and a version", r)
		if err := st.Login(ctx, r, "user-size", RememberMe(time.Hour, 48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		check("signed in, remembered", r)
		if err := st.Rotate(ctx, r); err != nil {
			t.Fatal(err)
		}
		check("rotated", r)
	})
}
