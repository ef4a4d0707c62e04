package session_test

import (
	"context"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// benchStore returns a store on the standalone server, with a stored session of about 1.5 KB in
// four attributes, signed in.
func benchStore(b *testing.B) (*session.Store, *session.Session) {
	be := redistest.Get(b, redistest.Names()[0])
	if _, ok := be.Client.(*redis.Client); !ok {
		b.Skip("benchmarked on a standalone server")
	}
	ctx := context.Background()
	if err := gatehouse.Preload(ctx, be.Client); err != nil {
		b.Fatal(err)
	}
	st, err := session.NewStore(be.Client, session.WithKeyPrefix(redistest.Prefix(b)))
	if err != nil {
		b.Fatal(err)
	}
	s, _ := st.New()
	for _, k := range []string{"user", "roles", "prefs", "cart"} {
		s.Put(k, strings.Repeat(k[:1], 370))
	}
	if err := st.Login(ctx, s, "bench-user"); err != nil {
		b.Fatal(err)
	}
	return st, s
}

// Load of a 1.5 KB signed-in session: one script call. Reports the allocations of a load.
func BenchmarkSessionLoad(b *testing.B) {
	st, s := benchStore(b)
	ctx, tok := context.Background(), s.Token()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := st.Load(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// Save of one changed attribute of a 1.5 KB signed-in session.
func BenchmarkSessionSave(b *testing.B) {
	st, s := benchStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Put("visits", 12345); err != nil {
			b.Fatal(err)
		}
		if err := st.Save(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}

// Destroy of a stored 1.5 KB signed-in session that was not rotated: one script call
// (session_destroy; it follows the old key's pointer only after a rotation).
func BenchmarkSessionDestroy(b *testing.B) {
	st, _ := benchStore(b)
	ctx := context.Background()
	sessions := make([]*session.Session, b.N)
	for i := range sessions {
		s, _ := st.New()
		for _, k := range []string{"user", "roles", "prefs", "cart"} {
			s.Put(k, strings.Repeat(k[:1], 370))
		}
		if err := st.Login(ctx, s, "bench-user"); err != nil {
			b.Fatal(err)
		}
		sessions[i] = s
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, s := range sessions {
		if err := st.Destroy(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
}
