package session_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
)

// The user index vouches for signed-in sessions: once a session's entry is gone (the index
// evicted, here removed by hand), every operation treats the session as signed out, so that "sign
// out everywhere", which acts on the index, cannot miss a session that still works. Each case
// removes the entry at the moment that matters to one script's check.
func TestSessionIndexIsAuthoritative(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithRotationGrace(time.Minute))
		forget := func(s *session.Session) { // what an eviction of the index does to s
			t.Helper()
			if err := b.Client.ZRem(ctx, indexKeyOf(s.Key()), string(s.Key())).Err(); err != nil {
				t.Fatal(err)
			}
		}
		signedIn := func(user string) *session.Session {
			t.Helper()
			s, err := newSignedIn(st, user, "a", "1")
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		gone := func(what string, s *session.Session) {
			t.Helper()
			if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: Load = %v, want ErrNotFound", what, err)
			}
			if n := b.Client.Exists(ctx, string(s.Key())).Val(); n != 0 {
				t.Errorf("%s: the record is still stored", what)
			}
		}
		listed := func(what, user string, want int) {
			t.Helper()
			if list, err := st.ListByUser(ctx, user); err != nil || len(list) != want {
				t.Errorf("%s: ListByUser(%s) = %d sessions, %v; want %d", what, user, len(list), err, want)
			}
		}

		// Load (session_touch): the record goes with its entry.
		s := signedIn("u-load")
		forget(s)
		gone("load", s)
		listed("load", "u-load", 0)

		// Load through a rotated token within the grace window: the session it points to is
		// checked against its own entry.
		s = signedIn("u-grace")
		old := s.Token()
		if err := st.Rotate(ctx, s); err != nil {
			t.Fatal(err)
		}
		forget(s)
		if _, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("grace pointer to a signed-out session: Load = %v, want ErrNotFound", err)
		}

		// Save (session_save), plain and moving the deadline: refused, and the deadline's new
		// score does not vouch for the session again.
		for _, moveDeadline := range []bool{false, true} {
			s = signedIn("u-save")
			r := sessiontest.MustLoad(t, st, s.Token())
			forget(s)
			r.Put("b", 2)
			if moveDeadline {
				r.SetDeadline(time.Now().Add(time.Hour))
			}
			if err := st.Save(ctx, r); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("save (deadline moved %v): %v, want ErrNotFound", moveDeadline, err)
			}
			if n := b.Client.ZCard(ctx, indexKeyOf(s.Key())).Val(); n != 0 {
				t.Errorf("save (deadline moved %v): the index holds %d members again", moveDeadline, n)
			}
			gone("save", s)
		}

		// Rotate and a sign-in within the slot (session_rotate): no new token comes of it.
		for _, op := range []string{"Rotate", "Login"} {
			s = signedIn("u-rotate")
			r := sessiontest.MustLoad(t, st, s.Token())
			forget(s)
			var err error
			if op == "Rotate" {
				err = st.Rotate(ctx, r)
			} else {
				err = st.Login(ctx, r, "u-rotate")
			}
			if !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", op, err)
			}
			gone(op, s)
			if r.Token() != s.Token() {
				gone(op+", the new token", r)
			}
			listed(op, "u-rotate", 0)
		}

		// A sign-in as another user moves slots: it reads the record (session_touch), copies it
		// and retires the original (session_seal). The entry goes between the copy and the seal:
		// the copy is deleted, and the signed-out session never becomes the other user's.
		forced, h := interposed(t, b, prefix, "session_seal", session.WithRotationGrace(time.Minute))
		for _, between := range []bool{false, true} {
			s = signedIn("u-across")
			r := sessiontest.MustLoad(t, forced, s.Token())
			if between {
				h.arm(string(s.Key()), func() { forget(s) })
			} else {
				forget(s)
			}
			if err := forced.Login(ctx, r, "u-across-other"); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("sign-in as another user (entry gone before the seal: %v): %v, want ErrNotFound", between, err)
			}
			gone("sign-in as another user", s)
			listed("sign-in as another user", "u-across-other", 0)
		}

		// DestroyOthers through a signed-out session (session_user): it cannot end the user's
		// live sessions.
		s, live := signedIn("u-others"), signedIn("u-others")
		r := sessiontest.MustLoad(t, st, s.Token())
		forget(s)
		if n, err := st.DestroyOthers(ctx, r); !errors.Is(err, session.ErrNotFound) || n != 0 {
			t.Errorf("DestroyOthers through a signed-out session = %d, %v; want 0, ErrNotFound", n, err)
		}
		sessiontest.MustLoad(t, st, live.Token())
		listed("DestroyOthers", "u-others", 1)

		// An anonymous session does not need an index.
		anon := sessiontest.Stored(t, st, "a", "1")
		sessiontest.MustLoad(t, st, anon.Token())
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// WithMaxSessionsPerUser counts the sessions the index vouches for; those it lost no longer work,
// so the cap holds after an index is evicted (here deleted).
func TestSessionCapAfterIndexLost(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b, session.WithMaxSessionsPerUser(1))
		first, err := newSignedIn(st, "capped", "a", "1")
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Client.Del(ctx, indexKeyOf(first.Key())).Err(); err != nil {
			t.Fatal(err)
		}
		second, err := newSignedIn(st, "capped", "a", "2")
		if err != nil {
			t.Fatal(err)
		}
		alive := 0
		for _, s := range []*session.Session{first, second} {
			if _, err := st.Load(ctx, s.Token()); err == nil {
				alive++
			}
		}
		if alive != 1 {
			t.Errorf("%d sessions of the user load under a cap of 1, want 1", alive)
		}
		sessiontest.MustLoad(t, st, second.Token())
		if list, err := st.ListByUser(ctx, "capped"); err != nil || len(list) != 1 {
			t.Errorf("ListByUser = %d, %v; want 1", len(list), err)
		}
	})
}

// Stored state of earlier releases: a session whose deadline was extended (SetLifetime) without
// its index entry following keeps working until the entry's score, the deadline it had at sign-in,
// and is then signed out; a deadline set again before that moves the entry, and the session lives
// to its new deadline.
func TestSessionExtendedBeforeIndexFollowed(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, prefix := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithLifetime(time.Hour), session.WithIdleTimeout(4*time.Hour))
		// extended signs a session in (scored start+1h) and extends its deadline to start+3h the
		// way an earlier release did: the record only.
		extended := func(user string) *session.Session {
			t.Helper()
			s, err := newSignedIn(st, user, "a", "1")
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Client.HSet(ctx, string(s.Key()), "_d", start+3*3_600_000).Err(); err != nil {
				t.Fatal(err)
			}
			return s
		}
		s := extended("old-extended")
		now.Store(start + 3_600_000 - 1)
		if got := sessiontest.MustLoad(t, st, s.Token()); got.Deadline().UnixMilli() != start+3*3_600_000 {
			t.Errorf("deadline %v, want the extended one", got.Deadline())
		}
		now.Store(start + 3_600_000)
		if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("at its index score: Load = %v, want ErrNotFound (signed out)", err)
		}
		if b.Client.Exists(ctx, string(s.Key())).Val() != 0 {
			t.Error("the signed-out record is still stored")
		}

		now.Store(start)
		s = extended("old-extended-again")
		now.Store(start + 1_800_000)
		r := sessiontest.MustLoad(t, st, s.Token())
		r.SetDeadline(time.UnixMilli(start + 3*3_600_000))
		if err := st.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		now.Store(start + 2*3_600_000)
		sessiontest.MustLoad(t, st, s.Token())
		if list, err := st.ListByUser(ctx, "old-extended-again"); err != nil || len(list) != 1 {
			t.Errorf("ListByUser = %d, %v; want 1", len(list), err)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}
