package session_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// raceTries is how many times each race below is tried: 1,000, or 10,000 with GATEHOUSE_LONG set
// (the long mode other long tests share).
func raceTries() int {
	if os.Getenv("GATEHOUSE_LONG") != "" {
		return 10_000
	}
	return 1_000
}

// raceWorkers is how many tries run at once: enough that the tries' steps interleave on Redis.
const raceWorkers = 16

// tryAll runs try(0) .. try(n-1) on raceWorkers goroutines and returns how many reported a broken
// guarantee (false). Unexpected errors are reported by try itself, with t.Errorf.
func tryAll(n int, try func(i int) bool) int {
	var next, broken atomic.Int64
	var wg sync.WaitGroup
	for range raceWorkers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if !try(i) {
					broken.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(broken.Load())
}

// interposer runs a function just before a script's EVALSHA goes out, when one of the call's first
// two keys is one it was armed with: the way to put another operation between the steps of an
// operation (between its reading an index and its script, between a copy and its seal), every
// time. Each arming fires once.
type interposer struct {
	passThrough
	sha   string
	mu    sync.Mutex
	armed map[string]func()
}

func (h *interposer) arm(key string, fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed[key] = fn
}

func (h *interposer) take(key string) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn := h.armed[key]
	delete(h.armed, key)
	return fn
}

func (h *interposer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// EVALSHA sha numkeys key...
		if args := cmd.Args(); len(args) > 3 && cmd.Name() == "evalsha" && args[1] == h.sha {
			n, _ := args[2].(int)
			for i := 3; i < 3+min(n, 2) && i < len(args); i++ {
				if k, ok := args[i].(string); ok {
					if fn := h.take(k); fn != nil {
						fn()
					}
				}
			}
		}
		return next(ctx, cmd)
	}
}

// interposed returns a store over a client of its own to b's servers, under prefix, whose calls
// of the script name go through the returned interposer.
func interposed(t *testing.T, b *redistest.Backend, prefix, name string, opts ...session.Option) (*session.Store, *interposer) {
	t.Helper()
	sc, ok := script.Lookup(name)
	if !ok {
		t.Fatalf("no script %s", name)
	}
	h := &interposer{sha: sc.SHA1(), armed: map[string]func(){}}
	return hookedStore(t, b, prefix, h, opts...), h
}

// hookedStore returns a store over a client of its own to b's servers, under prefix, with hook.
func hookedStore(t *testing.T, b *redistest.Backend, prefix string, hook redis.Hook, opts ...session.Option) *session.Store {
	t.Helper()
	c := ownClient(t, b)
	c.AddHook(hook)
	st, err := session.NewStore(c, append([]session.Option{session.WithKeyPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// ownClient returns a client of its own to b's servers, closed at the end of the test.
func ownClient(t *testing.T, b *redistest.Backend) redis.UniversalClient {
	t.Helper()
	var c redis.UniversalClient
	switch bc := b.Client.(type) {
	case *redis.ClusterClient:
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: bc.Options().Addrs, DisableIdentity: true})
	case *redis.Client:
		c = redis.NewClient(&redis.Options{Addr: bc.Options().Addr, DisableIdentity: true})
	default:
		t.Fatalf("unexpected client %T", b.Client)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// passThrough is the part of a redis.Hook that a hook of single commands leaves alone.
type passThrough struct{}

func (passThrough) DialHook(next redis.DialHook) redis.DialHook { return next }
func (passThrough) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// indexKeyOf returns the key of the index of a session key's slot bucket.
func indexKeyOf(k session.Key) string {
	s := string(k)
	return s[:strings.Index(s, "}:s:")+1] + ":ix"
}

// newStored creates and saves a session holding the given string attributes; safe to call from
// any goroutine.
func newStored(st *session.Store, attrs ...string) (*session.Session, error) {
	s, err := st.New()
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		if err := s.Put(attrs[i], attrs[i+1]); err != nil {
			return nil, err
		}
	}
	return s, st.Save(context.Background(), s)
}

// newSignedIn is newStored, then signed in as user.
func newSignedIn(st *session.Store, user string, attrs ...string) (*session.Session, error) {
	s, err := newStored(st, attrs...)
	if err != nil {
		return nil, err
	}
	return s, st.Login(context.Background(), s, user)
}

// Item 1: within the grace window, the old token can read and nothing more, while the rightful
// client keeps using (and rotating) the session. The attacker's Save, Rotate, Login and
// DestroyOthers through the old token all fail with ErrReadOnly; nothing of theirs lands, no token
// of theirs works, and the rightful client keeps the session.
func TestSessionRaceOldTokenWithinGrace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b, session.WithRotationGrace(time.Minute))
		n := raceTries()
		var landed atomic.Int64 // tries where the attacker's operation took effect
		broken := tryAll(n, func(i int) bool {
			user := fmt.Sprintf("victim-%d", i)
			s, err := newSignedIn(st, user, "a", "1")
			if err != nil {
				t.Error(err)
				return true
			}
			old := s.Token()
			var mine session.Token
			var attackErr error
			var attacker *session.Session
			rotated := make(chan struct{})
			sessiontest.Together(func() { // the rightful client: rotate, then save, and for odd tries rotate again
				legit, err := st.Load(ctx, old)
				if err == nil {
					defer func() { mine = legit.Token() }()
				}
				if err != nil {
					t.Errorf("rightful load: %v", err)
					close(rotated)
					return
				}
				if err := st.Rotate(ctx, legit); err != nil {
					t.Errorf("rightful rotate: %v", err)
				}
				close(rotated)
				legit.Put("mine", "yes")
				if err := st.Save(ctx, legit); err != nil {
					t.Errorf("rightful save: %v", err)
				}
				if i%2 == 1 {
					if err := st.Rotate(ctx, legit); err != nil {
						t.Errorf("rightful second rotate: %v", err)
					}
				}
			}, func() { // the attacker, holding the old token
				<-rotated
				o, err := st.Load(ctx, old)
				if err != nil {
					attackErr = err // only after the second rotation: the pointer leads to a pointer
					return
				}
				attacker = o
				switch i % 4 {
				case 0:
					o.Put("evil", "1")
					attackErr = st.Save(ctx, o)
				case 1:
					attackErr = st.Rotate(ctx, o)
				case 2:
					attackErr = st.Login(ctx, o, "attacker")
				case 3: // (Destroy through the old token ends the session: TestDestroyThroughOldTokenWithinGrace)
					_, attackErr = st.DestroyOthers(ctx, o)
				}
			})
			refused := errors.Is(attackErr, session.ErrReadOnly) || (i%2 == 1 && attacker == nil && errors.Is(attackErr, session.ErrNotFound))
			took := false
			got, err := st.Load(ctx, mine)
			if err != nil || got.Has("evil") || got.GetString("mine") != "yes" || got.UserID() != user {
				took = true
			}
			if attacker != nil && attacker.Token() != old {
				if _, err := st.Load(ctx, attacker.Token()); err == nil {
					took = true // the attacker obtained a working token
				}
			}
			if took {
				landed.Add(1)
			}
			if (took || !refused) && i < 3 {
				t.Logf("try %d: attacker %v, rightful session: %v", i, attackErr, err)
			}
			return refused && !took
		})
		if broken > 0 {
			t.Errorf("old token within grace: %d of %d tries not refused with ErrReadOnly, %d took effect (wrote, took over or destroyed)", broken, n, landed.Load())
		}
	})
}

// Item 2: "sign out everywhere" racing rotations of the user's sessions. When DestroyAllForUser (or
// DestroyOthers) returns, none of the user's sessions that existed when it was called is usable,
// under any token it was rotated to. Half the tries run the two freely at once; the other half
// force the worst order: the rotation lands between the index read and the script.
func TestSessionRaceDestroyAllVersusRotate(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		forced, h := interposed(t, b, prefix, "session_user")
		n := raceTries()
		broken := tryAll(n, func(i int) bool {
			user := fmt.Sprintf("everywhere-%d", i)
			s, err1 := newSignedIn(st, user, "a", "1")
			keep, err2 := newSignedIn(st, user, "k", "1") // kept by DestroyOthers
			if err := errors.Join(err1, err2); err != nil {
				t.Error(err)
				return true
			}
			others := i%4 >= 2
			var toks []session.Token
			var mu sync.Mutex
			rotate := func() {
				tok := s.Token()
				for range 2 {
					r, err := st.Load(ctx, tok)
					if err != nil {
						return // destroyed already
					}
					if err := st.Rotate(ctx, r); err != nil {
						return
					}
					tok = r.Token()
					mu.Lock()
					toks = append(toks, tok)
					mu.Unlock()
				}
			}
			destroy := func(st *session.Store) {
				var err error
				if others {
					_, err = st.DestroyOthers(ctx, keep)
				} else {
					_, err = st.DestroyAllForUser(ctx, user)
				}
				if err != nil {
					t.Errorf("destroy: %v", err)
				}
			}
			if i%2 == 0 {
				sessiontest.Together(rotate, func() { destroy(st) })
			} else {
				h.arm(indexKeyOf(s.Key()), rotate) // between the index read and the script
				destroy(forced)
			}
			ok := true
			for _, tok := range append(toks, s.Token()) {
				if _, err := st.Load(ctx, tok); !errors.Is(err, session.ErrNotFound) {
					ok = false
				}
			}
			if _, err := st.Load(ctx, keep.Token()); (err == nil) != others {
				t.Errorf("try %d: the kept session: %v (DestroyOthers %v)", i, err, others)
			}
			return ok
		})
		if broken > 0 {
			t.Errorf("sign out everywhere: a rotated session survived in %d of %d tries", broken, n)
		}
	})
}

// Item 3: Login carries over every save that completed before it, from any request. Two requests
// load one session; A puts "cart" and saves; B signs in. A third of the tries run A's save before
// B's Login starts; a third run them at once; a third force A's save between Login's copy of the
// record and its sealing of the original. A sign-in that moves slots (an anonymous session) and one
// that stays (a signed-in session rotated, or signed in again) are both tried.
func TestSessionRaceLoginKeepsCompletedSave(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		forced, h := interposed(t, b, prefix, "session_seal")
		n := raceTries()
		broken := tryAll(n, func(i int) bool {
			user := fmt.Sprintf("shopper-%d", i)
			anonymous := i%6 < 3
			var s *session.Session
			var err error
			if anonymous {
				s, err = newStored(st, "init", "1") // Login moves it to the user's slot
			} else {
				s, err = newSignedIn(st, user, "init", "1") // Login stays in the slot
			}
			if err != nil {
				t.Error(err)
				return true
			}
			rA, err1 := st.Load(ctx, s.Token())
			rB, err2 := st.Load(ctx, s.Token())
			if err := errors.Join(err1, err2); err != nil {
				t.Error(err)
				return true
			}
			var saveErr, loginErr error
			save := func() {
				rA.Put("cart", fmt.Sprint(i))
				saveErr = st.Save(ctx, rA)
			}
			login := func(st *session.Store) func() {
				return func() {
					if i%6 == 5 {
						loginErr = st.Rotate(ctx, rB)
					} else {
						loginErr = st.Login(ctx, rB, user)
					}
				}
			}
			switch i % 3 {
			case 0:
				save()
				login(st)()
			case 1:
				sessiontest.Together(save, login(st))
			case 2:
				if !anonymous { // one script: there is no step to put the save between
					sessiontest.Together(save, login(st))
					break
				}
				h.arm(string(s.Key()), save)
				login(forced)()
				if h.take(string(s.Key())) != nil {
					t.Errorf("try %d: the save was not put between the copy and the seal", i)
				}
			}
			if loginErr != nil {
				t.Errorf("try %d: login: %v", i, loginErr)
				return true
			}
			got, err := st.Load(ctx, rB.Token())
			if err != nil {
				t.Errorf("try %d: the signed-in session: %v", i, err)
				return true
			}
			if saveErr == nil && got.GetString("cart") != fmt.Sprint(i) {
				if i < 6 {
					t.Logf("try %d: the save completed (nil error) and the signed-in session lacks it", i)
				}
				return false
			}
			return got.GetString("init") == "1"
		})
		if broken > 0 {
			t.Errorf("sign-in dropped a completed save in %d of %d tries", broken, n)
		}
	})
}

// Item 6: concurrent sign-ins cannot break the cap on sessions per user, and the sessions ended
// are the oldest by sign-in. Each try signs one user in 8 times at once under a cap of 3 (half
// from new sessions, half moving stored anonymous ones); one sign-in in each try is forced to have
// another land between its reading the index and its script.
func TestSessionRaceCapUnderConcurrentSignIns(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		const cap, signIns = 3, 8
		st, prefix := sessiontest.NewStore(t, b, session.WithMaxSessionsPerUser(cap))
		forced, h := interposed(t, b, prefix, "session_activate", session.WithMaxSessionsPerUser(cap))
		n := raceTries()
		broken := tryAll(n, func(i int) bool {
			user := fmt.Sprintf("capped-%d", i)
			sessions := make([]*session.Session, signIns+2)
			fns := make([]func(), 0, signIns)
			for j := range signIns {
				fns = append(fns, func() {
					var s *session.Session
					var err error
					if j%2 == 0 {
						s, err = st.New()
						if err == nil {
							err = s.Put("j", j)
						}
					} else {
						s, err = newStored(st, "j", fmt.Sprint(j))
					}
					if err == nil {
						err = st.Login(ctx, s, user)
					}
					if err != nil {
						t.Errorf("try %d: sign-in %d: %v", i, j, err)
					}
					sessions[j] = s
				})
			}
			sessiontest.Together(fns...)
			live := 0
			for _, s := range sessions[:signIns] {
				if s == nil {
					return true // reported above
				}
				if _, err := st.Load(ctx, s.Token()); err == nil {
					live++
				}
			}
			if live > cap {
				if i < 3 {
					t.Logf("try %d: %d live sessions after %d sign-ins at once, cap %d", i, live, signIns, cap)
				}
				return false
			}
			// A ninth sign-in, overtaken by a tenth between its index read and its script.
			ninth, _ := st.New()
			ninth.Put("j", "ninth")
			first, err := newSignedIn(st, user, "j", "probe") // to know the user's index key
			if err != nil {
				t.Error(err)
				return true
			}
			sessions[signIns] = first
			h.arm(indexKeyOf(first.Key()), func() {
				tenth, _ := st.New()
				tenth.Put("j", "tenth")
				if err := st.Login(ctx, tenth, user); err != nil {
					t.Errorf("try %d: tenth sign-in: %v", i, err)
				}
			})
			if err := forced.Login(ctx, ninth, user); err != nil {
				t.Errorf("try %d: ninth sign-in: %v", i, err)
			}
			sessions[signIns+1] = ninth
			var alive, dead []session.Metadata
			for _, s := range sessions {
				if s == nil {
					return true // reported above
				}
				if _, err := st.Load(ctx, s.Token()); err == nil {
					alive = append(alive, s.Metadata())
				} else {
					dead = append(dead, s.Metadata())
				}
			}
			list, err := st.ListByUser(ctx, user)
			if err != nil {
				t.Error(err)
			}
			ok := len(list) <= cap && len(alive) <= cap
			for _, d := range dead {
				for _, a := range alive {
					if d.AuthenticatedAt.After(a.AuthenticatedAt) {
						ok = false // a newer sign-in was ended while an older one lives
					}
				}
			}
			if !ok && i < 3 {
				t.Logf("try %d: %d live sessions, %d listed, cap %d", i, len(alive), len(list), cap)
			}
			return ok
		})
		if broken > 0 {
			t.Errorf("the cap of %d sessions per user broke in %d of %d tries", cap, broken, n)
		}
	})
}
