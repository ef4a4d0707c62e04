package session_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
)

// A save that removes more attributes than Lua's unpack takes at once (about 8,000) succeeds: a
// session with many small attributes (under a large size cap) can be emptied in one save.
func TestProbeSaveRemovesManyAttributes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		st, _ := sessiontest.NewStore(t, b, session.WithMaxSize(1<<20))
		ctx := context.Background()
		const n = 9000
		s, _ := st.New()
		for i := range n {
			s.Put(fmt.Sprintf("k%d", i), 1)
		}
		if err := st.Save(ctx, s); err != nil {
			t.Fatalf("saving %d attributes: %v", n, err)
		}
		s = sessiontest.MustLoad(t, st, s.Token())
		for i := range n { // as deltas of a stored session
			s.Put(fmt.Sprintf("k%d", i), 2)
		}
		if err := st.Save(ctx, s); err != nil {
			t.Fatalf("changing %d attributes in one save: %v", n, err)
		}
		if err := st.Rotate(ctx, s); err != nil {
			t.Fatalf("rotating a session of %d attributes: %v", n, err)
		}
		if err := st.Login(ctx, s, "many"); err != nil {
			t.Fatalf("signing in a session of %d attributes: %v", n, err)
		}
		s = sessiontest.MustLoad(t, st, s.Token())
		if got := s.GetInt("k8999"); got != 2 || len(s.Names()) != n {
			t.Fatalf("after sign-in: %d attributes, k8999 = %d", len(s.Names()), got)
		}
		for _, name := range s.Names() {
			s.Remove(name)
		}
		if err := st.Save(ctx, s); err != nil {
			t.Fatalf("removing %d attributes in one save: %v", n, err)
		}
		if got := len(sessiontest.MustLoad(t, st, s.Token()).Names()); got != 0 {
			t.Errorf("%d attributes left after removing all", got)
		}
	})
}
