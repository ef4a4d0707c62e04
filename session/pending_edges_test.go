package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
)

// A rotation of a signed-in session (Rotate, or a Login of the same user again) leaves the session
// pending between its two calls: the cap does not count it. A sign-in of the same user that lands
// in that window finds room for itself; the rotated session must still count when it is made
// live, or the user ends up with more sessions than the cap. The cap ends the oldest sign-ins
// first: when that is the rotated session itself (Rotate keeps authenticated-at), it is the one
// ended, and the rotation fails with ErrNotFound, as if the sign-in had landed after it.
func TestCapHoldsAcrossPendingRotation(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		const limit = 3
		opts := []session.Option{session.WithMaxSessionsPerUser(limit)}
		st, prefix := sessiontest.NewStore(t, b, opts...)
		forced, h := interposed(t, b, prefix, "session_activate", opts...)
		for _, kind := range []string{"rotate", "again"} {
			user := "cap-rotation-" + kind
			var held []*session.Session // the user's sessions, oldest sign-in first
			for range limit {
				s := sessiontest.Stored(t, st, "a", "1")
				if err := st.Login(ctx, s, user); err != nil {
					t.Fatal(err)
				}
				held = append(held, s)
				time.Sleep(2 * time.Millisecond) // distinct authenticated-at instants (ms)
			}
			rotated := held[0]
			var late *session.Session
			h.arm(indexKeyOf(rotated.Key()), func() {
				late = sessiontest.Stored(t, st, "a", "late")
				if err := st.Login(ctx, late, user); err != nil {
					t.Errorf("%s: the sign-in while a rotation is pending: %v", kind, err)
				}
			})
			var err error
			if kind == "rotate" {
				err = forced.Rotate(ctx, rotated)
			} else {
				err = forced.Login(ctx, rotated, user)
			}
			if late == nil {
				t.Fatalf("%s: the activation was not interposed", kind)
			}
			held = append(held, late)
			list, lerr := st.ListByUser(ctx, user)
			if lerr != nil {
				t.Fatal(lerr)
			}
			var alive, dead []session.Metadata
			for _, s := range held {
				if _, err := st.Load(ctx, s.Token()); err == nil {
					alive = append(alive, s.Metadata())
				} else {
					dead = append(dead, s.Metadata())
				}
			}
			if len(list) > limit || len(alive) > limit {
				t.Errorf("%s: %d sessions listed, %d load, after a sign-in during a rotation; the cap is %d",
					kind, len(list), len(alive), limit)
			}
			for _, d := range dead {
				for _, a := range alive {
					if d.AuthenticatedAt.After(a.AuthenticatedAt) {
						t.Errorf("%s: a sign-in at %v was ended while an older one (%v) lives", kind,
							d.AuthenticatedAt.UnixMilli(), a.AuthenticatedAt.UnixMilli())
					}
				}
			}
			switch kind {
			case "rotate": // the rotated session is the oldest sign-in: the cap ends it
				if !errors.Is(err, session.ErrNotFound) {
					t.Errorf("rotate: the oldest sign-in rotated while the cap was reached: %v; want ErrNotFound", err)
				}
			case "again": // signed in again, it is newer than held[1]: that one goes
				if err != nil {
					t.Errorf("again: %v", err)
				}
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// The index vouches for every signed-in session, pending ones too: when a user's index is lost
// (evicted under an LRU policy) while a sign-in is pending, the old token's grace pointer must not
// read the pending copy as a signed-in session, which the activation then finds signed out.
func TestPendingReadThroughGraceNeedsTheIndex(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		opts := []session.Option{session.WithRotationGrace(time.Minute)}
		st, prefix := sessiontest.NewStore(t, b, opts...)
		const user = "pending-unvouched"
		probe := sessiontest.Stored(t, st, "p", "1")
		if err := st.Login(ctx, probe, user); err != nil {
			t.Fatal(err)
		}
		forced, h := interposed(t, b, prefix, "session_activate", opts...)
		s := sessiontest.Stored(t, st, "a", "1")
		oldTok := s.Token()
		ran := false
		h.arm(indexKeyOf(probe.Key()), func() {
			ran = true
			if err := b.Client.Del(ctx, indexKeyOf(probe.Key())).Err(); err != nil { // as an eviction
				t.Error(err)
			}
			if got, err := st.Load(ctx, oldTok); !errors.Is(err, session.ErrNotFound) {
				user := ""
				if got != nil {
					user = got.UserID()
				}
				t.Errorf("the old token, its copy pending and not vouched for: %v, user %q; want ErrNotFound", err, user)
			}
		})
		if err := forced.Login(ctx, s, user); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Login with the index lost before its activation: %v; want ErrNotFound", err)
		}
		if !ran {
			t.Fatal("the activation was not interposed")
		}
		if _, err := st.Load(ctx, oldTok); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("the old token after the Login failed: %v; want ErrNotFound", err)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// A Login whose last call never landed leaves s on the new token, which names a pending copy that
// never becomes live: signed out. DestroyOthers through it (a handler that signs the other
// devices out right after a sign-in) must end nothing, as through any signed-out session: else
// the user is signed out everywhere, this device included.
func TestDestroyOthersThroughPendingEndsNothing(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		h := newStepFailer()
		hs := hookedStore(t, b, prefix, h)
		const user = "others-through-pending"
		other := sessiontest.Stored(t, st, "device", "other")
		if err := st.Login(ctx, other, user); err != nil {
			t.Fatal(err)
		}
		s, err := st.New()
		if err == nil {
			err = s.Put("a", "1")
		}
		if err != nil {
			t.Fatal(err)
		}
		warm := sessiontest.Stored(t, hs, "a", "1") // the scripts loaded: each step is one call
		if err := hs.Login(ctx, warm, "someone-else"); err != nil {
			t.Fatal(err)
		}
		h.arm(2, false) // a session never stored signs in: session_create, then session_activate
		err = hs.Login(ctx, s, user)
		h.disarm()
		if err == nil || h.wasSent("session_activate") || !h.wasSent("session_create") {
			t.Fatalf("Login = %v (sent %v); want it failed before its activation was sent", err, h.sent)
		}
		if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("the token of a Login that was never made live loads: %v", err)
		}
		n, err := st.DestroyOthers(ctx, s)
		if n != 0 || !errors.Is(err, session.ErrNotFound) {
			t.Errorf("DestroyOthers through the pending session = %d, %v; want 0, ErrNotFound", n, err)
		}
		if _, err := st.Load(ctx, other.Token()); err != nil {
			t.Errorf("the user's other device after DestroyOthers through a signed-out session: %v", err)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// What a sign-in or rotation sets is carried from pending to live: the live key expires at its
// idle timeout (RememberMe's, not the pending expiry), its index score is its deadline
// (RememberMe's lifetime from the sign-in; a rotation keeps it), and no _pn is left.
func TestPendingToLiveKeepsLifetimes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		const idle, lifetime = 2 * time.Hour, 30 * 24 * time.Hour
		st, prefix := sessiontest.NewStore(t, b, session.WithMaxSessionsPerUser(5))
		for _, kind := range []string{"new", "stored", "again", "rotate"} {
			user := "lifetimes-" + kind
			s := anonymous(t, st, kind != "new")
			var want time.Time // the deadline a rotation keeps
			if kind == "again" || kind == "rotate" {
				if err := st.Login(ctx, s, user, session.RememberMe(idle, lifetime)); err != nil {
					t.Fatal(err)
				}
				want = s.Metadata().Deadline
			}
			before := time.Now()
			var err error
			if kind == "rotate" {
				err = st.Rotate(ctx, s)
			} else {
				err = st.Login(ctx, s, user, session.RememberMe(idle, lifetime))
			}
			after := time.Now()
			if err != nil {
				t.Fatalf("%s: %v", kind, err)
			}
			dl := s.Metadata().Deadline
			if kind == "rotate" {
				if !dl.Equal(want) {
					t.Errorf("rotate: deadline %v; want the one kept, %v", dl, want)
				}
			} else if dl.Before(before.Add(lifetime-time.Second)) || dl.After(after.Add(lifetime+time.Second)) {
				t.Errorf("%s: deadline %v; want now + %v", kind, dl, lifetime)
			}
			key := string(s.Key())
			ttl, err := b.Client.PTTL(ctx, key).Result()
			if err != nil || ttl > idle || ttl < idle-time.Minute {
				t.Errorf("%s: the live key expires in %v (%v); want its idle timeout, %v", kind, ttl, err, idle)
			}
			score, err := b.Client.ZScore(ctx, indexKeyOf(s.Key()), key).Result()
			if err != nil || int64(score) != dl.UnixMilli() {
				t.Errorf("%s: index score %v (%v); want the deadline %d", kind, int64(score), err, dl.UnixMilli())
			}
			if n, err := b.Client.HExists(ctx, key, "_pn").Result(); err != nil || n {
				t.Errorf("%s: _pn left on the live record (%v)", kind, err)
			}
			if got := sessiontest.MustLoad(t, st, s.Token()); !got.Metadata().Deadline.Equal(dl) || got.Metadata().IdleTimeout != idle {
				t.Errorf("%s: loaded deadline %v idle %v; want %v, %v", kind, got.Metadata().Deadline, got.Metadata().IdleTimeout, dl, idle)
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// A pending copy that expires just before its activation (a Login slower than the pending expiry)
// is not made live: the Login fails with ErrNotFound, nothing is listed, and neither token loads.
// The grace window of the old token ending while the copy is pending changes nothing for the
// sign-in.
func TestPendingExpiryAndGraceEndBeforeActivation(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		opts := []session.Option{session.WithRotationGrace(time.Minute), session.WithMaxSessionsPerUser(2)}
		st, prefix := sessiontest.NewStore(t, b, opts...)
		forced, h := interposed(t, b, prefix, "session_activate", opts...)
		for _, kind := range []string{"expired", "grace-over"} {
			user := "window-" + kind
			probe := sessiontest.Stored(t, st, "p", "1")
			if err := st.Login(ctx, probe, user); err != nil {
				t.Fatal(err)
			}
			s := sessiontest.Stored(t, st, "a", "1")
			oldTok, oldKey := s.Token(), s.Key()
			h.arm(indexKeyOf(probe.Key()), func() {
				members, err := b.Client.ZRange(ctx, indexKeyOf(probe.Key()), 0, -1).Result()
				if err != nil {
					t.Error(err)
				}
				target := string(oldKey) // the grace pointer
				if kind == "expired" {
					for _, m := range members {
						if m != string(probe.Key()) {
							target = m // the pending copy
						}
					}
				}
				if err := b.Client.PExpire(ctx, target, time.Millisecond).Err(); err != nil {
					t.Error(err)
				}
				for b.Client.Exists(ctx, target).Val() == 1 {
					time.Sleep(time.Millisecond)
				}
			})
			err := forced.Login(ctx, s, user)
			list, lerr := st.ListByUser(ctx, user)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if _, err := st.Load(ctx, oldTok); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: the old token after the sign-in: %v; want ErrNotFound", kind, err)
			}
			switch kind {
			case "expired":
				if !errors.Is(err, session.ErrNotFound) {
					t.Errorf("expired: Login = %v; want ErrNotFound", err)
				}
				if len(list) != 1 || list[0].Key != probe.Key() {
					t.Errorf("expired: %d listed; want the probe alone", len(list))
				}
				if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("expired: the copy's token loads: %v", err)
				}
			case "grace-over":
				if err != nil {
					t.Errorf("grace-over: Login = %v", err)
				}
				if len(list) != 2 {
					t.Errorf("grace-over: %d listed; want 2", len(list))
				}
				if got := sessiontest.MustLoad(t, st, s.Token()); got.UserID() != user || got.GetString("a") != "1" {
					t.Errorf("grace-over: %+v", got.Metadata())
				}
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}
