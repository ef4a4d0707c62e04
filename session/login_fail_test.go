package session_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

var errDown = errors.New("redis gone (a test's hook)")

// stepFailer lets a client's calls through until the at-th one since it was armed; from then on
// every call fails with errDown, as when Redis goes away or the program closes its client in the
// middle of an operation. With after, the at-th call is sent and its reply lost: it ran on the
// server. sent names the calls that reached the server, scripts by name.
type stepFailer struct {
	mu    sync.Mutex
	at, n int
	after bool
	down  bool
	names map[string]string // script SHA1 -> name
	sent  []string
}

func newStepFailer() *stepFailer {
	h := &stepFailer{names: map[string]string{}}
	for _, name := range []string{"session_touch", "session_create", "session_seal", "session_activate", "session_rotate", "session_user"} {
		if s, ok := script.Lookup(name); ok {
			h.names[s.SHA1()] = name
		}
	}
	return h
}

// arm makes the at-th call from now fail, and every one after it.
func (h *stepFailer) arm(at int, after bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.at, h.n, h.after, h.down, h.sent = at, 0, after, false, nil
}

// disarm lets every call through again, and reports whether the armed failure happened.
func (h *stepFailer) disarm() (fired bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fired = h.down
	h.at, h.down = 0, false
	return fired
}

// step counts a call of cmds; it reports whether to send it, and the error to return in place of
// its own (nil: its own).
func (h *stepFailer) step(cmds []redis.Cmder) (send bool, fail error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return false, errDown
	}
	if len(cmds) == 1 && cmds[0].Name() == "hello" {
		return true, nil // a new connection's handshake: not a step of the operation
	}
	if h.at > 0 {
		h.n++
		if h.n == h.at {
			h.down = true
			if !h.after {
				return false, errDown
			}
			fail = errDown
		}
	}
	for _, c := range cmds {
		name := c.Name()
		if args := c.Args(); name == "evalsha" && len(args) > 1 {
			if sha, ok := args[1].(string); ok && h.names[sha] != "" {
				name = h.names[sha]
			}
		}
		h.sent = append(h.sent, name)
	}
	return true, fail
}

func (h *stepFailer) wasSent(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Contains(h.sent, name)
}

func (h *stepFailer) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *stepFailer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		send, fail := h.step([]redis.Cmder{cmd})
		if send {
			if err := next(ctx, cmd); err != nil && fail == nil {
				return err
			}
		}
		if fail != nil || !send {
			cmd.SetErr(errDown)
			return errDown
		}
		return nil
	}
}

func (h *stepFailer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		send, fail := h.step(cmds)
		if send {
			if err := next(ctx, cmds); err != nil && fail == nil {
				return err
			}
		}
		if fail != nil || !send {
			for _, c := range cmds {
				c.SetErr(errDown)
			}
			return errDown
		}
		return nil
	}
}

// A sign-in that moves an anonymous session to the user's slot makes several calls (a read, the
// copy, the seal of the old key, the copy made live). Redis goes away at each of them in turn,
// before the call is sent and after it ran (its reply lost), and the sign-in fails. Then, with
// Redis back:
//
//   - ListByUser lists no session that no client holds: only the user's other device, and the
//     signed-in session when the client holds its token (Login moved the session to it);
//   - the cap (1) counts nothing the failed sign-in left: the other device's session is still
//     live, unless the user is now signed in on this one;
//   - nothing is lost: while the seal did not run, the old session is as it was; after it ran, the
//     user is signed in, with the session's data, or signed out (the old token names nothing) but
//     never listed;
//   - every key left has an expiry.
//
// Before the copy was created pending, a failure at the seal or after left the copy signed in,
// listed and counted (pushing out the other device) under a token nobody held.
func TestLoginFailureLeavesNoPhantom(t *testing.T) {
	for _, grace := range []bool{false, true} {
		for _, kind := range []string{"stored", "new", "again", "rotate"} {
			t.Run(fmt.Sprintf("grace=%t/%s", grace, kind), func(t *testing.T) {
				redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
					loginFailureLeavesNoPhantom(t, b, grace, kind)
				})
			})
		}
	}
}

// loginFailureLeavesNoPhantom fails each call of a sign-in in turn: of a stored anonymous session
// (kind "stored", which moves slots), of one never stored ("new"), of a session signed in already
// signing in again ("again": it stays in its slot), or of a Rotate of a signed-in session
// ("rotate"). Under a cap of 1 for the first two (a sign-in ends the other device), of 2 for the
// others (the user keeps both).
func loginFailureLeavesNoPhantom(t *testing.T, b *redistest.Backend, grace bool, kind string) {
	ctx := context.Background()
	stored, sameSlot := kind != "new", kind == "again" || kind == "rotate"
	limit := 1
	if sameSlot {
		limit = 2
	}
	opts := []session.Option{session.WithMaxSessionsPerUser(limit)}
	if grace {
		opts = append(opts, session.WithRotationGrace(time.Minute))
	}
	st, prefix := sessiontest.NewStore(t, b, opts...)
	h := newStepFailer()
	hs := hookedStore(t, b, prefix, h, opts...)
	cases := 0
	for at := 1; ; at++ {
		done := false
		for _, after := range []bool{false, true} {
			user := fmt.Sprintf("user-%d-%t", at, after)
			other := sessiontest.Stored(t, st, "device", "other")
			if err := st.Login(ctx, other, user); err != nil {
				t.Fatal(err)
			}
			if err := st.Save(ctx, other); err != nil {
				t.Fatal(err)
			}
			s := anonymous(t, st, stored)
			if sameSlot {
				if err := st.Login(ctx, s, user); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Put("b", "2"); err != nil { // this request's change, carried by a sign-in
				t.Fatal(err)
			}
			oldTok := s.Token()
			h.arm(at, after)
			var err error
			if kind == "rotate" {
				err = hs.Rotate(ctx, s)
			} else {
				err = hs.Login(ctx, s, user)
			}
			fired := h.disarm()
			if err == nil && !fired {
				done = true // the sign-in made fewer calls than at: every step was tried
				break
			}
			cases++
			what := fmt.Sprintf("Redis gone at call %d (sent: %v; after it ran: %t), Login: %v", at, h.sent, after, err)
			sealed := h.wasSent("session_seal") || h.wasSent("session_rotate") // the old token retired
			wantUser := ""
			if sameSlot {
				wantUser = user
			}

			// Where the client stands: the token s holds now.
			var signedIn bool
			if s.Token() == oldTok {
				got, lerr := st.Load(ctx, oldTok)
				switch {
				case !stored && errors.Is(lerr, session.ErrNotFound):
					// Never stored, and still not: the session is as it was.
				case lerr == nil && got.UserID() == wantUser && got.GetString("a") == "1" && !got.ReadOnly():
					signedIn = sameSlot // the session as it was, signed in already
				case lerr == nil && got.ReadOnly() && grace && sealed:
					// Through the grace pointer: read-only, for the grace window; signed out after.
				case errors.Is(lerr, session.ErrNotFound) && sealed:
					// Signed out: the seal ran, the copy never became live.
				default:
					t.Errorf("%s: the old token loads %v, %v; want the session as it was (or, after the seal ran, nothing)", what, got, lerr)
				}
				if err == nil {
					t.Errorf("%s: Login succeeded and left the old token", what)
				}
			} else {
				got, lerr := st.Load(ctx, s.Token())
				switch {
				case lerr == nil && got.UserID() == user && got.GetString("a") == "1" && got.GetString("b") == "2":
					signedIn = true
				case errors.Is(lerr, session.ErrNotFound) && err != nil:
					// Signed out: the copy did not become live; the old token names nothing, and
					// the copy expires soon (pending), not at the idle timeout of 30 minutes.
					if ttl := b.Client.PTTL(ctx, string(s.Key())).Val(); ttl > 2*time.Minute {
						t.Errorf("%s: the copy that never became live expires in %v", what, ttl)
					}
					if _, oerr := st.Load(ctx, oldTok); !errors.Is(oerr, session.ErrNotFound) && !grace {
						t.Errorf("%s: signed out, and the old token loads: %v", what, oerr)
					}
				default:
					t.Errorf("%s: the new token loads %v, %v; want the signed-in session with its data", what, got, lerr)
				}
			}

			list, lerr := st.ListByUser(ctx, user)
			if lerr != nil {
				t.Fatal(lerr)
			}
			for _, m := range list {
				if m.Key != other.Key() && !(signedIn && m.Key == s.Key()) {
					t.Errorf("%s: ListByUser lists %s, which no client holds (%d listed)", what, m.Key, len(list))
				}
			}
			_, oerr := st.Load(ctx, other.Token())
			switch {
			case signedIn && !sameSlot && !errors.Is(oerr, session.ErrNotFound):
				t.Errorf("%s: signed in under a cap of 1, and the other device's session loads: %v", what, oerr)
			case (!signedIn || sameSlot) && oerr != nil:
				t.Errorf("%s: the sign-in failed, and the other device's session was ended: %v", what, oerr)
			}
		}
		if done {
			break
		}
		if at > 30 {
			t.Fatal("the sign-in never got through")
		}
	}
	t.Logf("%d failures tried", cases)
	if cases < 6 {
		t.Errorf("%d failures tried; the sign-in makes more calls", cases)
	}
	redistest.AssertKeysExpire(t, b, prefix)
}

// retryAfterSignOut sends the call that makes a signed-in session live (the first after which its
// key is in the user's index and not pending) twice, as go-redis does when the first reply is lost, and runs between
// the two a sign out everywhere of the user.
type retryAfterSignOut struct {
	passThrough
	shas     map[string]bool
	idx      string
	rdb      redis.UniversalClient
	signOut  func() (int, error)
	mu       sync.Mutex
	fired    bool
	signedOf int
	err      error
}

func (h *retryAfterSignOut) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if cmd.Name() != "evalsha" || len(args) < 4 {
			return next(ctx, cmd)
		}
		sha, _ := args[1].(string)
		key, _ := args[3].(string)
		h.mu.Lock()
		armed := !h.fired && h.shas[sha]
		h.mu.Unlock()
		err := next(ctx, cmd)
		if !armed || err != nil || h.rdb.ZScore(ctx, h.idx, key).Err() != nil || h.rdb.HExists(ctx, key, "_pn").Val() {
			return err // not the call that made the session live (indexed, and not pending)
		}
		h.mu.Lock()
		h.fired = true
		h.mu.Unlock()
		n, serr := h.signOut()
		h.mu.Lock()
		h.signedOf, h.err = n, serr
		h.mu.Unlock()
		return next(ctx, cmd) // the retry, after the first reply was lost
	}
}

// A sign-in's last call, retried by the client after its reply was lost, with a sign out
// everywhere of the user in between: the retry must not make the session live again. Before, that
// call was session_create, whose answer to a retry finding no key was to create it: the session
// the user had just been signed out of came back, live and listed, after DestroyAllForUser had
// returned. Tried for a session never stored and for one that moves slots.
func TestLoginRetryAfterSignOutEverywhere(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		for _, stored := range []bool{false, true} {
			st, prefix := sessiontest.NewStore(t, b)
			user := fmt.Sprintf("retried-%t", stored)
			probe := sessiontest.Stored(t, st, "p", "1")
			if err := st.Login(ctx, probe, user); err != nil {
				t.Fatal(err)
			}
			h := &retryAfterSignOut{shas: map[string]bool{}, idx: indexKeyOf(probe.Key()), rdb: b.Client,
				signOut: func() (int, error) { return st.DestroyAllForUser(ctx, user) }}
			for _, name := range []string{"session_create", "session_activate"} {
				if s, ok := script.Lookup(name); ok {
					h.shas[s.SHA1()] = true
				}
			}
			hs := hookedStore(t, b, prefix, h)
			s := anonymous(t, st, stored)
			err := hs.Login(ctx, s, user)
			if !h.fired || h.err != nil {
				t.Fatalf("stored %t: the sign out everywhere did not run between the two calls: %v", stored, h.err)
			}
			if h.signedOf < 2 {
				t.Errorf("stored %t: DestroyAllForUser ended %d sessions; want the probe and the one signing in", stored, h.signedOf)
			}
			list, lerr := st.ListByUser(ctx, user)
			if lerr != nil {
				t.Fatal(lerr)
			}
			_, loadErr := st.Load(ctx, s.Token())
			if len(list) != 0 || loadErr == nil {
				t.Errorf("stored %t: after sign out everywhere, the retried sign-in (Login: %v) left %d sessions listed, its token loads: %v",
					stored, err, len(list), loadErr)
			}
			if err == nil {
				t.Errorf("stored %t: Login succeeded, and the session it signed in was signed out", stored)
			}
		}
	})
}

// Between the seal of the old key and the activation of the copy, a request in flight with the
// old token (within the grace window) reads the session as signed in, read-only, as it does after
// the sign-in: the copy is pending, not listed, and its token does not load it; once the Login
// returns, it is listed and loads.
func TestLoginPendingReadThroughGrace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		opts := []session.Option{session.WithRotationGrace(time.Minute)}
		st, prefix := sessiontest.NewStore(t, b, opts...)
		const user = "pending-reader"
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
			got, err := st.Load(ctx, oldTok)
			if err != nil || !got.ReadOnly() || got.UserID() != user || got.GetString("a") != "1" {
				t.Errorf("the old token before the activation: %+v, %v; want the signed-in session, read-only", got, err)
			}
			if list, err := st.ListByUser(ctx, user); err != nil || len(list) != 1 || list[0].Key != probe.Key() {
				t.Errorf("before the activation ListByUser = %v, %v; want the probe only", list, err)
			}
		})
		if err := forced.Login(ctx, s, user); err != nil {
			t.Fatal(err)
		}
		if !ran {
			t.Fatal("the activation was not interposed")
		}
		if got := sessiontest.MustLoad(t, st, s.Token()); got.UserID() != user || got.ReadOnly() {
			t.Errorf("after Login: %+v", got.Metadata())
		}
		if list, err := st.ListByUser(ctx, user); err != nil || len(list) != 2 {
			t.Errorf("after Login ListByUser = %v, %v; want 2", list, err)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// anonymous returns an anonymous session holding a = "1": stored, or new (never stored).
func anonymous(t *testing.T, st *session.Store, stored bool) *session.Session {
	t.Helper()
	if stored {
		return sessiontest.Stored(t, st, "a", "1")
	}
	s, err := st.New()
	if err == nil {
		err = s.Put("a", "1")
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A sign out everywhere that lands while a sign-in or a rotation of the user is pending (between
// its first call and the one that makes the session live) ends that session too: the last call
// finds nothing, and the operation fails with ErrNotFound. Nothing of the user is left, and the
// session never is listed.
func TestSignOutEverywhereEndsPendingSessions(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		forced, h := interposed(t, b, prefix, "session_activate")
		for _, kind := range []string{"stored", "new", "again", "rotate"} {
			user := "pending-" + kind
			probe := sessiontest.Stored(t, st, "p", "1")
			if err := st.Login(ctx, probe, user); err != nil {
				t.Fatal(err)
			}
			s := anonymous(t, st, kind != "new")
			if kind == "again" || kind == "rotate" {
				if err := st.Login(ctx, s, user); err != nil {
					t.Fatal(err)
				}
			}
			ended := 0
			h.arm(indexKeyOf(probe.Key()), func() {
				list, err := st.ListByUser(ctx, user)
				if err != nil || len(list) != 1 || list[0].Key != probe.Key() {
					t.Errorf("%s: pending, ListByUser = %d sessions, %v; want the probe alone", kind, len(list), err)
				}
				if ended, err = st.DestroyAllForUser(ctx, user); err != nil {
					t.Error(err)
				}
			})
			var err error
			if kind == "rotate" {
				err = forced.Rotate(ctx, s)
			} else {
				err = forced.Login(ctx, s, user)
			}
			if !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: signed out everywhere while pending: %v; want ErrNotFound", kind, err)
			}
			if ended != 2 {
				t.Errorf("%s: DestroyAllForUser ended %d; want the probe and the pending session", kind, ended)
			}
			if _, lerr := st.Load(ctx, s.Token()); !errors.Is(lerr, session.ErrNotFound) {
				t.Errorf("%s: the session's token loads after the sign out: %v", kind, lerr)
			}
			if list, _ := st.ListByUser(ctx, user); len(list) != 0 {
				t.Errorf("%s: %d sessions listed after the sign out", kind, len(list))
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}
