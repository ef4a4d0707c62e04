package session_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/leaktest"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// A program closes its client while 48 goroutines use the store through it: 32 each save its own
// session again and again (three attributes at once), 16 each sign a user in, rotate and destroy
// in turn. Every call returns (within 10 seconds, a bound on a hang, not on speed) with its result
// or an error, and no goroutine is left. Then, through a client of its own:
//
//   - every save landed whole or not at all: each session holds one value in all three
//     attributes, that of its last save that succeeded or of the one that failed at the close;
//   - each user's index lists the session its goroutine was told it holds, and besides it at most
//     one session, left by a DestroyKey that failed at the close (the previous session, still
//     held), and none when that call was a sign-in or a rotation: they store the new session
//     pending and make it live last, so that one that fails leaves no session listed that its
//     caller does not hold (before, closed between its copy and its seal, a sign-in left the copy
//     listed until its idle timeout, and so did a rotation whose reply was lost).
func TestStoreCloseUnderLoad(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) { storeCloseUnderLoad(t) })
	}
}

func storeCloseUnderLoad(t *testing.T) {
	srv, _ := redistest.Private(t)
	leaks := leaktest.Take()
	ctx := context.Background()
	c := redistest.ClientFor(t, srv.Addr)
	prefix := redistest.Prefix(t)
	st, err := session.NewStore(c, session.WithKeyPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	const savers, signers, maxCalls = 32, 16, 100_000

	type saver struct {
		tok          session.Token
		ok, failed   int64 // the last value saved, and the value of the save that failed (0: none)
		failedReason error
	}
	saved := make([]saver, savers)
	sessions := make([]*session.Session, savers)
	for i := range savers {
		s, err := st.New()
		if err != nil {
			t.Fatal(err)
		}
		putAll(t, s, 1)
		if err := st.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		sessions[i], saved[i] = s, saver{tok: s.Token(), ok: 1}
	}
	type signer struct {
		user   string
		held   session.Key // the signed-in session its goroutine holds, if any
		signed session.Key // the session a sign-in that failed left it holding
		failed string      // the operation that failed at the close
	}
	signed := make([]signer, signers)

	var calls atomic.Int64
	var unexpected sync.Map
	var wg sync.WaitGroup
	for i := range savers {
		wg.Go(func() {
			s, sv := sessions[i], &saved[i]
			for v := int64(2); v < maxCalls; v++ {
				for _, name := range []string{"a", "b", "c"} {
					if err := s.Put(name, v); err != nil {
						unexpected.Store(fmt.Sprintf("Put: %v", err), true)
						return
					}
				}
				err := st.Save(ctx, s)
				calls.Add(1)
				if err != nil {
					sv.failed, sv.failedReason = v, err
					return
				}
				sv.ok = v
			}
		})
	}
	for i := range signers {
		wg.Go(func() {
			sg := &signed[i]
			sg.user = fmt.Sprintf("user-%d", i)
			for range maxCalls {
				if sg.failed = signCycle(ctx, st, sg.user, &sg.held, &sg.signed); sg.failed != "" {
					return
				}
				calls.Add(1)
			}
		})
	}
	for i := 0; i < 500 && calls.Load() < 1000; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	before := calls.Load()
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	leaktest.Await(t, &wg, 10*time.Second, "calls made as the client closed")
	unexpected.Range(func(k, _ any) bool { t.Error(k); return true })

	// Read back through a client of its own, once the server has run all the closed client sent.
	check := redistest.ClientFor(t, srv.Addr)
	redistest.WaitClients(t, check, 1)
	st2, err := session.NewStore(check, session.WithKeyPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	var failedSaves, failedLanded, phantoms int
	reasons := map[string]int{}
	for i, sv := range saved {
		if sv.failed == 0 {
			t.Errorf("saver %d: no save failed: it ran out of calls before the close", i)
			continue
		}
		failedSaves++
		reasons[closeReason(sv.failedReason)]++
		s, err := st2.Load(ctx, sv.tok)
		if err != nil {
			t.Errorf("saver %d: Load after the close: %v", i, err)
			continue
		}
		a, b, v := s.GetInt64("a"), s.GetInt64("b"), s.GetInt64("c")
		switch {
		case a != b || b != v:
			t.Errorf("saver %d: a, b, c = %d, %d, %d: a save landed in part", i, a, b, v)
		case a == sv.failed:
			failedLanded++
		case a != sv.ok:
			t.Errorf("saver %d: holds %d; its last save that succeeded wrote %d, the one that failed %d", i, a, sv.ok, sv.failed)
		}
	}
	for i, sg := range signed {
		if sg.failed == "" {
			t.Errorf("signer %d: nothing failed: it ran out of calls before the close", i)
			continue
		}
		reasons[sg.failed]++
		list, err := st2.ListByUser(ctx, sg.user)
		if err != nil {
			t.Fatal(err)
		}
		var others int
		for _, m := range list {
			if m.Key != sg.held && m.Key != sg.signed {
				others++
			}
		}
		// A rotation that failed at the close may have moved the session it holds to a key it was
		// not told of.
		missing := sg.held != "" && !slices.ContainsFunc(list, func(m session.Metadata) bool { return m.Key == sg.held })
		if missing && !strings.HasPrefix(sg.failed, "rotate") {
			t.Errorf("signer %d: the session it holds is not listed for its user (%d listed; %s failed)", i, len(list), sg.failed)
		}
		switch {
		case !strings.HasPrefix(sg.failed, "destroy") && others > 0:
			t.Errorf("signer %d: %s failed, and %d sessions are listed that no caller holds", i, sg.failed, others)
		case others > 1:
			t.Errorf("signer %d: %d sessions listed that it does not hold; at most the one of the call that failed (%s) may be", i, others, sg.failed)
		}
		phantoms += others
	}
	t.Logf("%d calls before Close, %d in all; %d saves failed at the close, %d of them landed whole; %d sessions listed that no caller holds; how calls failed: %v",
		before, calls.Load(), failedSaves, failedLanded, phantoms, reasons)
	check.Close()
	leaks.Check(t, 10*time.Second, redistest.ServerGoroutines...)
}

// putAll sets the attributes a, b and c to v.
func putAll(t *testing.T, s *session.Session, v int64) {
	t.Helper()
	for _, name := range []string{"a", "b", "c"} {
		if err := s.Put(name, v); err != nil {
			t.Fatal(err)
		}
	}
}

// signCycle creates a session, signs user in on it, rotates it and, every other time, destroys it,
// keeping in held the signed-in session it holds, and in signed the key a sign-in that failed left
// the session on. It returns the operation that failed and why, or "".
func signCycle(ctx context.Context, st *session.Store, user string, held, signed *session.Key) string {
	s, err := st.New()
	if err == nil {
		err = s.Put("x", 1)
	}
	if err != nil {
		return "New: " + err.Error()
	}
	if err := st.Save(ctx, s); err != nil {
		return "create: " + closeReason(err)
	}
	if err := st.Login(ctx, s, user); err != nil {
		*signed = s.Key() // after the old key was retired, the session stays on its new token
		return "login: " + closeReason(err)
	}
	if *held != "" {
		// One session per user at a time: the previous one ends first.
		if err := st.DestroyKey(ctx, *held); err != nil {
			*held = s.Key() // both may be listed now; the new one is held
			return "destroy: " + closeReason(err)
		}
	}
	*held = s.Key()
	if err := st.Rotate(ctx, s); err != nil {
		*signed = s.Key() // after the old key was retired, the session stays on its new token
		return "rotate: " + closeReason(err)
	}
	*held = s.Key()
	return ""
}

// closeReason names an error a call got when the client closed.
func closeReason(err error) string {
	switch {
	case errors.Is(err, redis.ErrClosed):
		return "redis.ErrClosed"
	case errors.Is(err, session.ErrUnavailable):
		return "ErrUnavailable"
	}
	return err.Error()
}
