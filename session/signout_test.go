package session_test

// Sign-out against rotation: Destroy by a request that read the session before another request
// rotated it ends the session the token led to; and the call that retires the old token in a
// rotation or sign-in is safe to send again after its reply was lost.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// rotation names a way another request moves the session to a new token: by Rotate, by a Login
// that moves it to the user's slot (an anonymous session), by a Login that stays in the slot (a
// signed-in session signing in again), or two of these in a row.
type rotation struct {
	name     string
	signedIn bool // the session is signed in before the rotation
	steps    []string
}

var rotations = []rotation{
	{"rotate", true, []string{"rotate"}},
	{"rotate anonymous", false, []string{"rotate"}},
	{"login across slots", false, []string{"login"}},
	{"login in the slot", true, []string{"login"}},
	{"rotate twice", true, []string{"rotate", "rotate"}},
	{"login across, then rotate", false, []string{"login", "rotate"}},
}

// rotateBy applies the rotation's steps to s, signing in as user.
func rotateBy(ctx context.Context, st *session.Store, s *session.Session, r rotation, user string) error {
	for _, step := range r.steps {
		var err error
		if step == "rotate" {
			err = st.Rotate(ctx, s)
		} else {
			err = st.Login(ctx, s, user)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
	}
	return nil
}

// before returns a stored session holding a = "1", signed in as user when the rotation r starts
// from a signed-in session.
func before(t *testing.T, st *session.Store, r rotation, user string) *session.Session {
	t.Helper()
	s := sessiontest.Stored(t, st, "a", "1")
	if r.signedIn {
		if err := st.Login(context.Background(), s, user); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// signedOut reports what of the user's session is still there after a sign-out through any of
// toks: a token that loads, or a session ListByUser lists; "" when nothing.
func signedOut(ctx context.Context, st *session.Store, user string, toks ...session.Token) string {
	for _, tok := range toks {
		if _, err := st.Load(ctx, tok); !errors.Is(err, session.ErrNotFound) {
			return fmt.Sprintf("a token loads: %v", err)
		}
	}
	if list, err := st.ListByUser(ctx, user); err != nil || len(list) != 0 {
		return fmt.Sprintf("ListByUser lists %d sessions (%v)", len(list), err)
	}
	return ""
}

// Request A loads the session; request B rotates it (Rotate, or Login moving slots or not, once or
// twice); then A signs out. The session must be over under every token, and nothing listed.
// Before, Destroy deleted only the old key (a pointer, or nothing without a grace window): the
// rotated session stayed alive, listed, and B handed the browser its cookie.
func TestDestroyAfterRotationEndsTheRotatedSession(t *testing.T) {
	for _, grace := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprintf("grace=%v", grace), func(t *testing.T) {
			redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
				ctx := context.Background()
				st, prefix := sessiontest.NewStore(t, b, session.WithRotationGrace(grace))
				for i, r := range rotations {
					user := fmt.Sprintf("signout-%d", i)
					s := before(t, st, r, user)
					old := s.Token()
					a := sessiontest.MustLoad(t, st, old) // the sign-out request
					bs := sessiontest.MustLoad(t, st, old)
					if err := rotateBy(ctx, st, bs, r, user); err != nil {
						t.Fatalf("%s: %v", r.name, err)
					}
					// A third request with the old token (another tab) reads, or finds nothing: it
					// must not take away what the sign-out follows.
					if o, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) && (err != nil || !o.ReadOnly()) {
						t.Errorf("%s: the old token after the rotation: %v", r.name, err)
					}
					if err := st.Destroy(ctx, a); err != nil {
						t.Errorf("%s: Destroy: %v", r.name, err)
					}
					if left := signedOut(ctx, st, user, old, bs.Token()); left != "" {
						t.Errorf("%s: signed out after the rotation, and %s", r.name, left)
					}
					// Nothing of it can be revived: the rotating request's save, or a rotation.
					bs.Put("late", "1")
					if err := st.Save(ctx, bs); !errors.Is(err, session.ErrNotFound) {
						t.Errorf("%s: a save of the rotated session after the sign-out: %v, want ErrNotFound", r.name, err)
					}
				}
				redistest.AssertKeysExpire(t, b, prefix)
			})
		})
	}
}

// The sign-out comes after the grace window ended (the old key is a tombstone now), with a read
// of the old token in between, which finds nothing: the rotated session is ended all the same.
func TestDestroyAfterGraceWindowEndsTheRotatedSession(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		now.Store(time.Now().UnixMilli())
		st, prefix := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithRotationGrace(2*time.Second))
		for i, r := range rotations {
			user := fmt.Sprintf("past-grace-%d", i)
			s := before(t, st, r, user)
			old := s.Token()
			a := sessiontest.MustLoad(t, st, old)
			if err := rotateBy(ctx, st, s, r, user); err != nil {
				t.Fatal(err)
			}
			now.Add(2_000) // the window ends
			if _, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: the old token after the window: %v", r.name, err)
			}
			if err := st.Destroy(ctx, a); err != nil {
				t.Errorf("%s: Destroy: %v", r.name, err)
			}
			if left := signedOut(ctx, st, user, old, s.Token()); left != "" {
				t.Errorf("%s: signed out after the window, and %s", r.name, left)
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// The ordering the other way round still holds: a sign-out that lands before the rotation makes
// the rotation fail with ErrNotFound, and nothing is left.
func TestDestroyBeforeRotation(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b, session.WithRotationGrace(time.Minute))
		for i, r := range rotations[:4] {
			user := fmt.Sprintf("before-%d", i)
			s := before(t, st, r, user)
			a, bs := sessiontest.MustLoad(t, st, s.Token()), sessiontest.MustLoad(t, st, s.Token())
			if err := st.Destroy(ctx, a); err != nil {
				t.Fatal(err)
			}
			if err := rotateBy(ctx, st, bs, r, user); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s after Destroy: %v, want ErrNotFound", r.name, err)
			}
			if left := signedOut(ctx, st, user, s.Token(), bs.Token()); left != "" {
				t.Errorf("%s: %s", r.name, left)
			}
		}
	})
}

// A sign-out request that arrives with the old token within the grace window (its session loaded
// read-only through the pointer) ends the session the token was rotated to: sign-out is the one
// write the old token may make. Before, Destroy refused it with ErrReadOnly, and the user could
// not sign out.
func TestDestroyThroughOldTokenWithinGrace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithRotationGrace(time.Minute))
		for i, r := range rotations {
			user := fmt.Sprintf("grace-signout-%d", i)
			s := before(t, st, r, user)
			old := s.Token()
			if err := rotateBy(ctx, st, s, r, user); err != nil {
				t.Fatal(err)
			}
			o, err := st.Load(ctx, old)
			if len(r.steps) > 1 {
				// Through two pointers: the old token reads nothing, and a sign-out by the request
				// that read it before the rotations is TestDestroyAfterRotationEndsTheRotatedSession.
				if !errors.Is(err, session.ErrNotFound) {
					t.Errorf("%s: the old token after two rotations: %v", r.name, err)
				}
				continue
			}
			if err != nil || !o.ReadOnly() {
				t.Fatalf("%s: the old token within the window: %v", r.name, err)
			}
			if err := st.Destroy(ctx, o); err != nil {
				t.Errorf("%s: Destroy through the old token: %v, want the session ended", r.name, err)
			}
			if o.ReadOnly() || len(o.Names()) != 0 {
				t.Errorf("%s: after Destroy the session is read-only %v, %d attributes", r.name, o.ReadOnly(), len(o.Names()))
			}
			if left := signedOut(ctx, st, user, old, s.Token()); left != "" {
				t.Errorf("%s: signed out through the old token, and %s", r.name, left)
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// Destroy and a rotation by two requests that both loaded the session, at once, raceTries()
// times, with and without a grace window: whatever the order, the session is over under every
// token afterwards. Before, every try whose rotation landed first left it alive (344 and 368 of
// 1,000, standalone and cluster).
func TestDestroyRacingRotation(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		stores := []*session.Store{}
		for _, grace := range []time.Duration{0, time.Minute} {
			st, _ := sessiontest.NewStore(t, b, session.WithRotationGrace(grace))
			stores = append(stores, st)
		}
		n := raceTries()
		var rotatedFirst atomic.Int64
		alive := tryAll(n, func(i int) bool {
			st, r := stores[i%2], rotations[(i/2)%len(rotations)]
			user := fmt.Sprintf("racing-%d", i)
			s, err := newStored(st, "a", "1")
			if err == nil && r.signedIn {
				err = st.Login(ctx, s, user)
			}
			if err != nil {
				t.Error(err)
				return true
			}
			a, err1 := st.Load(ctx, s.Token())
			bs, err2 := st.Load(ctx, s.Token())
			if err := errors.Join(err1, err2); err != nil {
				t.Error(err)
				return true
			}
			var derr, rerr error
			sessiontest.Together(func() { derr = st.Destroy(ctx, a) }, func() { rerr = rotateBy(ctx, st, bs, r, user) })
			if derr != nil {
				t.Errorf("try %d: Destroy: %v", i, derr)
			}
			if rerr == nil {
				rotatedFirst.Add(1)
			} else if !errors.Is(rerr, session.ErrNotFound) && !errors.Is(rerr, session.ErrConflict) {
				t.Errorf("try %d: %s: %v", i, r.name, rerr)
			}
			if left := signedOut(ctx, st, user, s.Token(), bs.Token()); left != "" {
				if i < 3 {
					t.Logf("try %d (%s): %s", i, r.name, left)
				}
				return false
			}
			return true
		})
		t.Logf("%d of %d rotations completed (the rest found the session destroyed)", rotatedFirst.Load(), n)
		if alive > 0 {
			t.Errorf("a sign-out racing a rotation left the session alive in %d of %d tries", alive, n)
		}
	})
}

// Through the middleware: a sign-out request loads the session and is held; another request of
// the same client rotates it (or signs in) and gets the new cookie; then the sign-out completes.
// The new cookie must name nothing.
func TestDestroyRacingRotationOverHTTP(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		for _, grace := range []time.Duration{0, time.Minute} {
			st, prefix := sessiontest.NewStore(t, b, session.WithRotationGrace(grace))
			srv, g := sessionServer(t, st, session.WithCookie(session.Cookie{Insecure: true}))
			for i, path := range []string{"/rotate", "/login?user=http-a", "/login?user=http-b", "/rotate"} {
				tok := newHTTPSession(t, srv)
				if i == 3 {
					_, tok = call(t, srv, "/login?user=http-c", tok) // signed in, then rotated
				}
				finish := held(t, srv, g, fmt.Sprintf("so-%d-%d", grace/time.Second, i), "/logout?x=1", tok)
				_, newTok := call(t, srv, path, tok)
				if newTok == "" || newTok == tok {
					t.Fatalf("%s sent no new token", path)
				}
				finish()
				for _, tk := range []string{tok, newTok} {
					if _, err := st.Load(ctx, session.Token(tk)); !errors.Is(err, session.ErrNotFound) {
						t.Errorf("grace %v, %s during a sign-out: a token loads after it: %v", grace, path, err)
					}
				}
			}
			for _, u := range []string{"http-a", "http-b", "http-c"} {
				if list, err := st.ListByUser(ctx, u); err != nil || len(list) != 0 {
					t.Errorf("grace %v: %s has %d sessions after signing out (%v)", grace, u, len(list), err)
				}
			}
			redistest.AssertKeysExpire(t, b, prefix)
		}
	})
}

// replyDropper lets the first call of a script run on the server and loses its reply (the caller
// gets errDown), as a connection that breaks or times out after the call was sent; every other
// call goes through.
type replyDropper struct {
	passThrough
	sha     string
	mu      sync.Mutex
	dropped int
	calls   int
}

func (h *replyDropper) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if cmd.Name() != "evalsha" || len(args) < 2 || args[1] != h.sha {
			return next(ctx, cmd)
		}
		err := next(ctx, cmd)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.calls++
		if err != nil || h.dropped > 0 {
			return err
		}
		h.dropped++
		cmd.SetErr(errReplyLost)
		return errReplyLost
	}
}

// errReplyLost is what go-redis returns when a reply does not come back in time: a read timeout.
var errReplyLost = &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}

// The call that retires the old token (session_rotate in the slot, session_seal across slots) runs
// and its reply is lost: Rotate and Login send it again, and it answers as it did; the user ends
// signed in on the new token, with the session's data, listed once, and the old token names
// nothing (or reads, within the grace window). Before, the call found the old key retired and
// answered conflict or not found: the user was signed out.
func TestRetiringCallResentAfterLostReply(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		if err := gatehouse.Preload(ctx, b.Client); err != nil {
			t.Fatal(err)
		}
		for _, grace := range []time.Duration{0, time.Minute} {
			opts := []session.Option{session.WithRotationGrace(grace), session.WithMaxSessionsPerUser(3)}
			st, prefix := sessiontest.NewStore(t, b, opts...)
			for _, r := range rotations[:4] {
				name := "session_rotate"
				if r.name == "login across slots" {
					name = "session_seal"
				}
				sc, _ := script.Lookup(name)
				h := &replyDropper{sha: sc.SHA1()}
				hs := hookedStore(t, b, prefix, h, opts...)
				user := fmt.Sprintf("lost-%v-%s", grace, r.name)
				s := before(t, st, r, user)
				old := s.Token()
				what := fmt.Sprintf("grace %v, %s, the reply of %s lost", grace, r.name, name)
				if err := rotateBy(ctx, hs, s, r, user); err != nil {
					t.Errorf("%s: %v", what, err)
				}
				if h.dropped != 1 || h.calls != 2 {
					t.Fatalf("%s: %d replies dropped of %d calls; want the first of 2", what, h.dropped, h.calls)
				}
				if s.Token() == old {
					t.Errorf("%s: the session kept the old token", what)
				}
				got, err := st.Load(ctx, s.Token())
				if err != nil || got.GetString("a") != "1" || got.ReadOnly() {
					t.Errorf("%s: the new token loads %v, %v; want the session", what, got, err)
				} else if r.name != "rotate anonymous" && got.UserID() != user {
					t.Errorf("%s: the new token's user is %q", what, got.UserID())
				}
				if list, err := st.ListByUser(ctx, user); r.name != "rotate anonymous" && (err != nil || len(list) != 1 || list[0].Key != s.Key()) {
					t.Errorf("%s: ListByUser = %d sessions (%v); want exactly the new one", what, len(list), err)
				}
				if o, err := st.Load(ctx, old); !(errors.Is(err, session.ErrNotFound) || grace > 0 && err == nil && o.ReadOnly()) {
					t.Errorf("%s: the old token loads: %v", what, err)
				}
			}
			redistest.AssertKeysExpire(t, b, prefix)
		}
	})
}

// A retired key (the old token after a rotation, within or past the grace window) takes no
// rotation or sign-in: run with another new key, session_rotate and session_seal refuse it; past
// the window (a tombstone), as a key deleted: ErrNotFound.
func TestRetiredKeyTakesNoRotation(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		for i, r := range rotations[:4] {
			user := fmt.Sprintf("tomb-%d", i)
			s := before(t, st, r, user)
			a := sessiontest.MustLoad(t, st, s.Token())
			if err := rotateBy(ctx, st, s, r, user); err != nil {
				t.Fatal(err)
			}
			for _, again := range rotations[:4] {
				if err := rotateBy(ctx, st, a, again, user+"-x"); !errors.Is(err, session.ErrNotFound) {
					t.Errorf("%s, then %s through the stale view: %v, want ErrNotFound", r.name, again.name, err)
				}
			}
			a.Put("late", "1")
			if err := st.Save(ctx, a); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s, then a save through the stale view: %v, want ErrNotFound", r.name, err)
			}
			if got := sessiontest.MustLoad(t, st, s.Token()); got.Has("late") {
				t.Errorf("%s: the stale view's save landed", r.name)
			}
			if list, _ := st.ListByUser(ctx, user+"-x"); len(list) != 0 {
				t.Errorf("%s: the stale view signed in %d sessions", r.name, len(list))
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}
