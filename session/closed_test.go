package session_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// Every operation of a store whose client the program closed returns redis.ErrClosed wrapped with
// the operation ("session: <op>: ..."), as any other error, and not as ErrUnavailable: Redis did not
// fail.
func TestSessionClosedClient(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		c := ownClient(t, b)
		cs, err := session.NewStore(c, session.WithKeyPrefix(prefix), session.WithMaxSessionsPerUser(3))
		if err != nil {
			t.Fatal(err)
		}
		stored := func() *session.Session { return sessiontest.Stored(t, st, "a", "1") }
		signedIn := func() *session.Session {
			s := stored()
			if err := st.Login(ctx, s, "closed-user"); err != nil {
				t.Fatal(err)
			}
			return s
		}
		fresh := func() *session.Session {
			s, err := st.New()
			if err != nil {
				t.Fatal(err)
			}
			s.Put("a", "1")
			return s
		}
		loaded, saved, rotated, moved, newLogin, destroyed, others := stored(), stored(), signedIn(), stored(), fresh(), stored(), signedIn()
		saved.Put("b", "2")
		c.Close()
		for _, op := range []struct {
			name string
			err  error
		}{
			{"load", func() error { _, err := cs.Load(ctx, loaded.Token()); return err }()},
			{"save", cs.Save(ctx, saved)},
			{"create", cs.Save(ctx, fresh())},
			{"rotate", cs.Rotate(ctx, rotated)},
			{"login", cs.Login(ctx, moved, "closed-user")},
			{"create", cs.Login(ctx, newLogin, "closed-user")},
			{"destroy", cs.Destroy(ctx, destroyed)},
			{"destroy", cs.DestroyKey(ctx, destroyed.Key())},
			{"list", func() error { _, err := cs.ListByUser(ctx, "closed-user"); return err }()},
			{"destroy", func() error { _, err := cs.DestroyAllForUser(ctx, "closed-user"); return err }()},
			{"destroy", func() error { _, err := cs.DestroyOthers(ctx, others); return err }()},
		} {
			switch {
			case !errors.Is(op.err, redis.ErrClosed):
				t.Errorf("%s: %v; want redis.ErrClosed", op.name, op.err)
			case errors.Is(op.err, session.ErrUnavailable):
				t.Errorf("%s: %v matches ErrUnavailable: the program closed its client, Redis did not fail", op.name, op.err)
			case !strings.HasPrefix(op.err.Error(), "session: "+op.name):
				t.Errorf("%s: %q; want it wrapped as session: %s: ...", op.name, op.err, op.name)
			}
		}
	})
}
