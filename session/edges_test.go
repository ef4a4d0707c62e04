package session_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// counted returns a store under prefix over a client of its own to b's servers, and the count of
// commands that client sends.
func counted(t *testing.T, b *redistest.Backend, prefix string, opts ...session.Option) (*session.Store, *redistest.Calls) {
	t.Helper()
	c := ownClient(t, b)
	n := &redistest.Calls{}
	c.AddHook(n)
	st, err := session.NewStore(c, append([]session.Option{session.WithKeyPrefix(prefix)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return st, n
}

// Item 1, the issue's own steps: within the grace window a session loaded through the old token
// reads, and every write through it is refused before Redis is asked (but Destroy, a sign-out:
// TestDestroyThroughOldTokenWithinGrace); after the window nothing of the old token remains.
func TestSessionOldTokenIsReadOnly(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, prefix := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithRotationGrace(3*time.Second))
		cst, sent := counted(t, b, prefix, session.WithRotationGrace(3*time.Second),
			session.ClockAt(&now))
		s := sessiontest.Stored(t, st, "a", "1")
		if err := st.Login(ctx, s, "victim"); err != nil {
			t.Fatal(err)
		}
		old := s.Token()
		if err := st.Rotate(ctx, s); err != nil {
			t.Fatal(err)
		}
		for name, op := range map[string]func(o *session.Session) error{
			"Save":   func(o *session.Session) error { o.Put("evil", 1); return cst.Save(ctx, o) },
			"Rotate": func(o *session.Session) error { return cst.Rotate(ctx, o) },
			"Login":  func(o *session.Session) error { return cst.Login(ctx, o, "attacker") },
			"DestroyOthers": func(o *session.Session) error {
				_, err := cst.DestroyOthers(ctx, o)
				return err
			},
			"SetDeadline+Save": func(o *session.Session) error {
				o.SetDeadline(time.UnixMilli(now.Load()).Add(time.Hour))
				return cst.Save(ctx, o)
			},
		} {
			o, err := cst.Load(ctx, old)
			if err != nil {
				t.Fatalf("%s: load through the old token within the window: %v", name, err)
			}
			if !o.ReadOnly() || o.GetString("a") != "1" || o.Metadata().Key != s.Key() || o.Token() != old {
				t.Errorf("%s: loaded through the old token: read-only %v, a = %q, key %v", name, o.ReadOnly(), o.GetString("a"), o.Metadata().Key)
			}
			before := sent.N.Load()
			if err := op(o); !errors.Is(err, session.ErrReadOnly) {
				t.Errorf("%s through the old token: err = %v, want ErrReadOnly", name, err)
			}
			if n := sent.N.Load() - before; n != 0 {
				t.Errorf("%s through the old token sent %d commands to Redis, want none", name, n)
			}
		}
		got := sessiontest.MustLoad(t, st, s.Token())
		if got.Has("evil") || got.UserID() != "victim" || got.ReadOnly() {
			t.Errorf("the rightful session after the attempts: evil %v, user %q", got.Has("evil"), got.UserID())
		}
		// After the window, the old token is dead, and the rightful one lives on.
		now.Store(start + 3_000)
		if _, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("old token after the window: err = %v, want ErrNotFound", err)
		}
		sessiontest.MustLoad(t, st, s.Token())
		if list, _ := st.ListByUser(ctx, "victim"); len(list) != 1 {
			t.Errorf("the user has %d sessions, want 1", len(list))
		}
		if list, _ := st.ListByUser(ctx, "attacker"); len(list) != 0 {
			t.Errorf("the attacker has %d sessions, want 0", len(list))
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// Item 4: a signed-in session whose deadline moves past the store's lifetime stays in the user's
// index, so that it is listed and ended with the user's others, until its own deadline.
func TestSessionIndexFollowsDeadline(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithLifetime(time.Second))
		for _, how := range []string{"SetLifetime", "SetDeadline"} {
			user := "remembered-" + how
			s := sessiontest.Stored(t, st, "a", "1")
			if err := st.Login(ctx, s, user); err != nil {
				t.Fatal(err)
			}
			r := sessiontest.MustLoad(t, st, s.Token())
			if how == "SetLifetime" {
				r.SetLifetime(0, 4*time.Second) // from creation
			} else {
				r.SetDeadline(r.Metadata().LastSeen.Add(4 * time.Second))
			}
			if err := st.Save(ctx, r); err != nil {
				t.Fatal(err)
			}
			if d := r.Deadline().Sub(sessiontest.MustLoad(t, st, s.Token()).Deadline()); d != 0 {
				t.Errorf("%s: Deadline() differs from the stored deadline by %v", how, d)
			}
			// Past the store's lifetime, by the server's clock (keys expire by it).
			time.Sleep(1500 * time.Millisecond)
			if _, err := st.Load(ctx, s.Token()); err != nil {
				t.Fatalf("%s: the session past the store's lifetime: %v", how, err)
			}
			if list, err := st.ListByUser(ctx, user); err != nil || len(list) != 1 {
				t.Errorf("%s: ListByUser = %d sessions, %v; want 1", how, len(list), err)
			}
			if n, err := st.DestroyAllForUser(ctx, user); err != nil || n != 1 {
				t.Errorf("%s: DestroyAllForUser = %d, %v; want 1", how, n, err)
			}
			if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: after DestroyAllForUser: %v", how, err)
			}
		}
		// Shortening works too: a deadline already past ends the session at the save.
		s := sessiontest.Stored(t, st, "a", "1")
		st.Login(ctx, s, "shortened")
		r := sessiontest.MustLoad(t, st, s.Token())
		r.SetDeadline(time.Now().Add(-time.Second))
		if err := st.Save(ctx, r); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("save with a deadline in the past: %v, want ErrNotFound", err)
		}
		if list, _ := st.ListByUser(ctx, "shortened"); len(list) != 0 {
			t.Errorf("a session ended by its new deadline is still listed")
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// Item 5: step-up checks are judged at this request's time, not at the previous visit's.
func TestSessionAuthenticatedWithinAtThisRequest(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, _ := sessiontest.NewStore(t, b, session.ClockAt(&now))
		s, _ := st.New()
		if err := st.Login(ctx, s, "stepup"); err != nil {
			t.Fatal(err)
		}
		if !s.AuthenticatedWithin(time.Millisecond) || !s.Metadata().LastSeen.Equal(time.UnixMilli(start)) {
			t.Errorf("right after Login: within 1ms %v, last seen %v", s.AuthenticatedWithin(time.Millisecond), s.Metadata().LastSeen)
		}
		for _, step := range []struct {
			at         int64 // ms after sign-in
			within2s   bool
			within500s bool
		}{
			{500, true, true}, {1_999, true, true}, {2_000, false, true}, {2_500, false, true},
		} {
			now.Store(start + step.at)
			r := sessiontest.MustLoad(t, st, s.Token())
			if got := r.AuthenticatedWithin(2 * time.Second); got != step.within2s {
				t.Errorf("%dms after Login: AuthenticatedWithin(2s) = %v, want %v", step.at, got, step.within2s)
			}
			if got := r.AuthenticatedWithin(500 * time.Second); got != step.within500s {
				t.Errorf("%dms after Login: AuthenticatedWithin(500s) = %v", step.at, got)
			}
			if got := r.Metadata().LastSeen; !got.Equal(time.UnixMilli(start + step.at)) {
				t.Errorf("%dms after Login: LastSeen = +%v, want this load's time", step.at, got.Sub(time.UnixMilli(start)))
			}
		}
		// A rotation keeps the sign-in time, and is judged at its own time.
		now.Store(start + 3_000)
		r := sessiontest.MustLoad(t, st, s.Token())
		if err := st.Rotate(ctx, r); err != nil {
			t.Fatal(err)
		}
		if r.AuthenticatedWithin(2*time.Second) || !r.AuthenticatedWithin(4*time.Second) {
			t.Errorf("after Rotate at +3s: within 2s %v, within 4s %v", r.AuthenticatedWithin(2*time.Second), r.AuthenticatedWithin(4*time.Second))
		}
		// The list reports when each session was last seen by the store, to the second.
		now.Store(start + 5_000)
		sessiontest.MustLoad(t, st, r.Token())
		list, err := st.ListByUser(ctx, "stepup")
		if err != nil || len(list) != 1 || list[0].LastSeen.Before(time.UnixMilli(start+5_000)) {
			t.Errorf("ListByUser: %+v, %v; want last seen at +5s", list, err)
		}
	})
}

// recordSize sums, over the stored record's fields, the name's and the value's lengths: what the
// size cap counts.
func recordSize(ctx context.Context, t *testing.T, b *redistest.Backend, k session.Key) int {
	t.Helper()
	n := 0
	for f, v := range b.Client.HGetAll(ctx, string(k)).Val() {
		n += len(f) + len(v)
	}
	return n
}

// Item 7: the size cap counts names, values and metadata, in Go before sending and in the scripts.
func TestSessionSizeCapCountsEverything(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		cst, sent := counted(t, b, prefix)

		// 2,000 names of 200 bytes with tiny values: about 400 KB, refused before Redis is asked.
		s := sessiontest.Stored(t, st, "a", "1")
		r := sessiontest.MustLoad(t, cst, s.Token())
		for i := range 2000 {
			r.Put(fmt.Sprintf("%0200d", i), 1)
		}
		before := sent.N.Load()
		if err := cst.Save(ctx, r); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("2,000 long names: err = %v, want ErrTooLarge", err)
		}
		if n := sent.N.Load() - before; n != 0 {
			t.Errorf("the oversize save sent %d commands; Go should refuse it", n)
		}
		if n := len(sessiontest.MustLoad(t, st, s.Token()).Names()); n != 1 {
			t.Errorf("after the refused save: %d attributes", n)
		}
		fresh, _ := cst.New()
		for i := range 2000 {
			fresh.Put(fmt.Sprintf("%0200d", i), 1)
		}
		if err := cst.Save(ctx, fresh); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("a new session of 2,000 long names: err = %v, want ErrTooLarge", err)
		}
		if err := cst.Login(ctx, fresh, "big"); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("Login of a new session of 2,000 long names: err = %v, want ErrTooLarge", err)
		}

		// Two requests each within the cap in their own view; together over it: the script refuses
		// the second, counting what is stored.
		s = sessiontest.Stored(t, st, "a", "1")
		r1, r2 := sessiontest.MustLoad(t, st, s.Token()), sessiontest.MustLoad(t, st, s.Token())
		r1.Put("x", strings.Repeat("x", 9000))
		r2.Put("y", strings.Repeat("y", 9000))
		if err := st.Save(ctx, r1); err != nil {
			t.Fatal(err)
		}
		if err := st.Save(ctx, r2); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("the second 9,000-byte attribute: err = %v, want ErrTooLarge from the script", err)
		}
		if got := sessiontest.MustLoad(t, st, s.Token()); got.Has("y") || !got.Has("x") {
			t.Errorf("after the refusal: names %v", got.Names())
		}

		// Exactly what counts: the script's count is the sum over the stored fields, and the cap is
		// inclusive. The next save writes a:k = "vv", _s = now and _v = version + 1.
		s = sessiontest.Stored(t, st, "a", "1")
		now := time.Now().UnixMilli()
		k := string(s.Key())
		h := b.Client.HGetAll(ctx, k).Val()
		ver, _ := strconv.Atoi(h["_v"])
		verLen := 0
		if _, ok := h["_v"]; ok {
			verLen = 2 + len(h["_v"])
		}
		want := recordSize(ctx, t, b, s.Key()) + len("a:k") + 2 - len(h["_s"]) + len(strconv.FormatInt(now, 10)) - verLen + 2 + len(strconv.Itoa(ver+1))
		save, _ := script.Lookup("session_save")
		v, err := save.Run(ctx, b.Client, []string{k}, now, h["_g"], want-1, 1, 0, "a:k", "vv")
		if arr, _ := v.([]any); err != nil || len(arr) != 2 || arr[0] != int64(3) || arr[1] != int64(want) {
			t.Errorf("save under a cap one byte short: %v, %v; want {3, %d}", v, err, want)
		}
		v, err = save.Run(ctx, b.Client, []string{k}, now, h["_g"], want, 1, 0, "a:k", "vv")
		if err != nil || v != int64(1) {
			t.Errorf("save under a cap of exactly its size: %v, %v; want 1", v, err)
		}
		if got := recordSize(ctx, t, b, s.Key()); got != want {
			t.Errorf("stored record: %d bytes, the script counted %d", got, want)
		}
	})
}

// Item 7, a setting changed while sessions exist: after the cap is lowered, a session over it can
// still be read and trimmed, and only saves that would grow it are refused.
func TestSessionSizeCapLowered(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		big, prefix := sessiontest.NewStore(t, b, session.WithMaxSize(64<<10))
		small, err := session.NewStore(b.Client, session.WithKeyPrefix(prefix), session.WithMaxSize(16<<10))
		if err != nil {
			t.Fatal(err)
		}
		s := sessiontest.Stored(t, big, "blob", strings.Repeat("b", 30_000), "n", "12")
		r := sessiontest.MustLoad(t, small, s.Token())
		r.Put("more", "x")
		if err := small.Save(ctx, r); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("growing a session over the lowered cap: %v, want ErrTooLarge", err)
		}
		r = sessiontest.MustLoad(t, small, s.Token())
		r.Put("n", "34") // same size
		if err := small.Save(ctx, r); err != nil {
			t.Errorf("a save that does not grow a session over the lowered cap: %v", err)
		}
		r = sessiontest.MustLoad(t, small, s.Token())
		r.Remove("blob")
		r.Put("note", "trimmed")
		if err := small.Save(ctx, r); err != nil {
			t.Errorf("trimming a session over the lowered cap: %v", err)
		}
		if got := sessiontest.MustLoad(t, small, s.Token()); got.Has("blob") || got.GetString("n") != "34" {
			t.Errorf("after trimming: %v", got.Names())
		}
		if _, err := session.NewStore(b.Client, session.WithMaxSize(session.MinMaxSize-1)); err == nil {
			t.Error("NewStore accepted a size cap with no room for the metadata")
		}
	})
}

// Item 8: Destroy, then Put in the same request, starts a new session under a new token.
func TestSessionPutAfterDestroyStartsAnew(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b)
		s := sessiontest.Stored(t, st, "cart", "3 apples")
		if err := st.Login(ctx, s, "leaver"); err != nil {
			t.Fatal(err)
		}
		s.SetClient("192.0.2.1", "test-agent")
		old := s.Token()
		if err := st.Destroy(ctx, s); err != nil {
			t.Fatal(err)
		}
		if s.Has("cart") || s.UserID() != "" {
			t.Errorf("after Destroy: names %v, user %q; want an empty, signed-out session", s.Names(), s.UserID())
		}
		if err := s.AddFlash("You are signed out."); err != nil {
			t.Fatal(err)
		}
		if !s.IsNew() || s.Token() == old {
			t.Fatalf("Put after Destroy: new %v, same token %v", s.IsNew(), s.Token() == old)
		}
		if err := st.Save(ctx, s); err != nil {
			t.Fatalf("saving the session started after Destroy: %v", err)
		}
		if _, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("the destroyed token: %v", err)
		}
		got := sessiontest.MustLoad(t, st, s.Token())
		if f := got.Flashes(); len(f) != 1 || f[0] != "You are signed out." || got.UserID() != "" || got.Has("cart") {
			t.Errorf("the new session: flashes %q, user %q, names %v", f, got.UserID(), got.Names())
		}
		if m := got.Metadata(); m.IP != "192.0.2.1" || m.UserAgent != "test-agent" {
			t.Errorf("the new session lost the client's address and agent: %+v", m)
		}
		if list, _ := st.ListByUser(ctx, "leaver"); len(list) != 0 {
			t.Errorf("the signed-out user still has %d sessions", len(list))
		}
	})
}

// Item 10: remember-me chosen at sign-in, kept across rotations.
func TestSessionRememberMe(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithIdleTimeout(time.Minute), session.WithLifetime(time.Hour))
		for _, anonymous := range []bool{true, false} {
			var s *session.Session
			if anonymous {
				s = sessiontest.Stored(t, st, "a", "1") // moves slots
			} else {
				s, _ = st.New()
				s.Put("a", "1")
			}
			if err := st.Login(ctx, s, "rm", session.RememberMe(24*time.Hour, 30*24*time.Hour)); err != nil {
				t.Fatal(err)
			}
			m := s.Metadata()
			if m.IdleTimeout != 24*time.Hour || m.Deadline.Sub(m.AuthenticatedAt) != 30*24*time.Hour {
				t.Errorf("anonymous %v: remembered: idle %v, lifetime %v", anonymous, m.IdleTimeout, m.Deadline.Sub(m.AuthenticatedAt))
			}
			if ttl := b.Client.PTTL(ctx, string(s.Key())).Val(); ttl < 23*time.Hour {
				t.Errorf("anonymous %v: PTTL %v, want about 24h", anonymous, ttl)
			}
			if p := b.Client.HGet(ctx, string(s.Key()), "_p").Val(); p != "1" {
				t.Errorf("anonymous %v: _p = %q, want 1", anonymous, p)
			}
			r := sessiontest.MustLoad(t, st, s.Token())
			if err := st.Rotate(ctx, r); err != nil {
				t.Fatal(err)
			}
			if got := sessiontest.MustLoad(t, st, r.Token()).Metadata(); got.IdleTimeout != 24*time.Hour || !got.Deadline.Equal(m.Deadline) {
				t.Errorf("anonymous %v: after Rotate: idle %v, deadline moved by %v", anonymous, got.IdleTimeout, got.Deadline.Sub(m.Deadline))
			}
			if p := b.Client.HGet(ctx, string(r.Key()), "_p").Val(); p != "1" {
				t.Errorf("anonymous %v: after Rotate _p = %q, want 1", anonymous, p)
			}
			// Signing in again without the option keeps the cookie's persistence; UntilBrowserCloses
			// turns it off.
			if err := st.Login(ctx, r, "rm", session.UntilBrowserCloses()); err != nil {
				t.Fatal(err)
			}
			if p := b.Client.HGet(ctx, string(r.Key()), "_p").Val(); p != "0" {
				t.Errorf("anonymous %v: after UntilBrowserCloses _p = %q, want 0", anonymous, p)
			}
			if m := r.Metadata(); m.Deadline.Sub(m.AuthenticatedAt) != time.Hour {
				t.Errorf("anonymous %v: a sign-in without RememberMe: lifetime %v, want the store's", anonymous, m.Deadline.Sub(m.AuthenticatedAt))
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// Item 10: typed getters return the zero value when the attribute is absent or of another type.
func TestSessionTypedGetters(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, codec := range []session.Codec{session.JSON, session.Msgpack} {
			st, _ := sessiontest.NewStore(t, b, session.WithCodec(codec))
			at := time.Date(2026, 11, 23, 10, 0, 0, 123_000_000, time.UTC)
			s, _ := st.New()
			s.Put("bytes", []byte{0, 1, 2, 255})
			s.Put("time", at)
			s.Put("i64", int64(1)<<60)
			s.Put("f64", 2.5)
			s.Put("word", "hello")
			s.Put("yes", true)
			if err := st.Save(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			r := sessiontest.MustLoad(t, st, s.Token())
			if got := r.GetBytes("bytes"); string(got) != "\x00\x01\x02\xff" {
				t.Errorf("GetBytes = %v", got)
			}
			if got := r.GetTime("time"); !got.Equal(at) {
				t.Errorf("GetTime = %v, want %v", got, at)
			}
			if got := r.GetInt64("i64"); got != 1<<60 {
				t.Errorf("GetInt64 = %d", got)
			}
			if got := r.GetFloat64("f64"); got != 2.5 {
				t.Errorf("GetFloat64 = %v", got)
			}
			if got := r.GetFloat64("i64"); got != float64(int64(1)<<60) {
				t.Errorf("GetFloat64 of an integer = %v", got)
			}
			// Absent, or of another type: the zero value.
			if r.GetBytes("absent") != nil || r.GetBytes("yes") != nil || r.GetBytes("f64") != nil {
				t.Errorf("%T: GetBytes of absent, a bool, a float: %v %v %v", codec, r.GetBytes("absent"), r.GetBytes("yes"), r.GetBytes("f64"))
			}
			if !r.GetTime("absent").IsZero() || !r.GetTime("word").IsZero() || !r.GetTime("yes").IsZero() {
				t.Errorf("%T: GetTime of absent, a word, a bool: %v %v %v", codec, r.GetTime("absent"), r.GetTime("word"), r.GetTime("yes"))
			}
			if r.GetInt64("absent") != 0 || r.GetInt64("word") != 0 || r.GetFloat64("absent") != 0 || r.GetFloat64("word") != 0 {
				t.Errorf("%T: numbers of absent or a word: %d %d %v %v", codec, r.GetInt64("absent"), r.GetInt64("word"), r.GetFloat64("absent"), r.GetFloat64("word"))
			}
			if r.GetInt64("f64") != 0 {
				t.Errorf("%T: GetInt64 of 2.5 = %d, want 0", codec, r.GetInt64("f64"))
			}
		}
	})
}

// Item 10: flash messages, in order, shown once; two requests adding at once both land.
func TestSessionFlashes(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b)
		s := sessiontest.Stored(t, st, "a", "1")
		r1, r2 := sessiontest.MustLoad(t, st, s.Token()), sessiontest.MustLoad(t, st, s.Token())
		r1.AddFlash("saved")
		r1.AddFlash("and mailed")
		r2.AddFlash("from the other tab")
		if err := errors.Join(st.Save(ctx, r1), st.Save(ctx, r2)); err != nil {
			t.Fatal(err)
		}
		r := sessiontest.MustLoad(t, st, s.Token())
		if names := r.Names(); len(names) != 1 || names[0] != "a" {
			t.Errorf("Names() = %v, want the flashes left out", names)
		}
		got := r.Flashes()
		if len(got) != 3 || got[0] != "saved" || got[1] != "and mailed" || got[2] != "from the other tab" {
			t.Errorf("Flashes() = %q, want the three in the order they were added", got)
		}
		if again := r.Flashes(); again != nil {
			t.Errorf("second Flashes() = %q, want nil", again)
		}
		// A flash added by another request while this one shows them stays for the next.
		other := sessiontest.MustLoad(t, st, s.Token())
		other.AddFlash("late")
		if err := errors.Join(st.Save(ctx, r), st.Save(ctx, other)); err != nil {
			t.Fatal(err)
		}
		if got := sessiontest.MustLoad(t, st, s.Token()).Flashes(); len(got) != 1 || got[0] != "late" {
			t.Errorf("next request's Flashes() = %q, want [late]", got)
		}
	})
}

// Records written before the version and persistence fields existed, with the index they had,
// still load, save, rotate, sign in, list and end.
func TestSessionOldRecords(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithMaxSessionsPerUser(5))
		now := time.Now().UnixMilli()
		// old writes a record with the fields and index the previous release wrote.
		old := func(user string) session.Token {
			s, _ := st.New() // a token of the right shape; its key is computed by the store
			s.Put("tmp", 1)
			if user != "" {
				st.Login(ctx, s, user)
			} else {
				st.Save(ctx, s)
			}
			k := string(s.Key())
			b.Client.Del(ctx, k)
			fields := []any{"_c", now, "_s", now, "_d", now + 3_600_000, "_i", 1_800_000, "_g", "1", "a:cart", `"book"`}
			if user != "" {
				fields = append(fields, "_a", now, "_u", user)
			}
			b.Client.HSet(ctx, k, fields...)
			b.Client.PExpire(ctx, k, 30*time.Minute)
			return s.Token()
		}
		for _, anonymous := range []bool{true, false} {
			user := "old-user"
			tok := old(map[bool]string{true: "", false: user}[anonymous])
			r, r2 := sessiontest.MustLoad(t, st, tok), sessiontest.MustLoad(t, st, tok)
			if r.GetString("cart") != "book" {
				t.Fatalf("anonymous %v: old record: cart %q", anonymous, r.GetString("cart"))
			}
			r.Put("visits", 1)
			if err := st.Save(ctx, r); err != nil {
				t.Fatalf("anonymous %v: saving an old record: %v", anonymous, err)
			}
			// A second request read it before that save (no version then): its sign-in still
			// carries the save.
			if err := st.Login(ctx, r2, user); err != nil {
				t.Fatalf("anonymous %v: signing in an old record: %v", anonymous, err)
			}
			got := sessiontest.MustLoad(t, st, r2.Token())
			if got.GetInt("visits") != 1 || got.GetString("cart") != "book" || got.UserID() != user {
				t.Errorf("anonymous %v: after sign-in: visits %d, cart %q, user %q", anonymous, got.GetInt("visits"), got.GetString("cart"), got.UserID())
			}
			if err := st.Rotate(ctx, got); err != nil {
				t.Errorf("anonymous %v: rotating: %v", anonymous, err)
			}
		}
		// Signed in straight from an old record, never saved since: no version to compare but 0.
		r := sessiontest.MustLoad(t, st, old(""))
		if err := st.Login(ctx, r, "old-user"); err != nil {
			t.Fatalf("signing in an old record never saved since: %v", err)
		}
		if got := sessiontest.MustLoad(t, st, r.Token()); got.GetString("cart") != "book" {
			t.Errorf("signed in from an old record: cart %q", got.GetString("cart"))
		}
		if list, err := st.ListByUser(ctx, "old-user"); err != nil || len(list) != 3 {
			t.Errorf("ListByUser = %d, %v; want 3", len(list), err)
		}
		if n, err := st.DestroyAllForUser(ctx, "old-user"); err != nil || n != 3 {
			t.Errorf("DestroyAllForUser = %d, %v; want 3", n, err)
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// WithTimeout bounds an operation on a Redis that does not answer (CLIENT PAUSE) to a timeout
// error, and needs a client that applies context deadlines.
func TestSessionStoreTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a private Redis")
	}
	srv, err := redistest.StartServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	deaf := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true})
	defer deaf.Close()
	if _, err := session.NewStore(deaf, session.WithTimeout(time.Second)); err == nil {
		t.Error("WithTimeout accepted for a client that ignores context deadlines")
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, ContextTimeoutEnabled: true, MaxRetries: -1})
	defer rdb.Close()
	st, err := session.NewStore(rdb, session.WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := st.New()
	s.Put("a", 1)
	if err := st.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := deaf.Do(ctx, "CLIENT", "PAUSE", 5000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	defer deaf.Do(ctx, "CLIENT", "UNPAUSE")
	if _, err := st.Load(ctx, s.Token()); !redistest.IsTimeout(err) {
		t.Errorf("Load with Redis paused: err = %v, want a timeout", err)
	}
	if _, err := st.ListByUser(ctx, "anyone"); !redistest.IsTimeout(err) {
		t.Errorf("ListByUser with Redis paused: err = %v, want a timeout", err)
	}
}

// Item 6: "oldest" is by sign-in; sessions signed in within the same millisecond go in key order.
func TestSessionCapOrderBySignIn(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, _ := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithMaxSessionsPerUser(2))
		login := func(s *session.Session, user string, at int64) {
			t.Helper()
			now.Store(start + at)
			if err := st.Login(ctx, s, user); err != nil {
				t.Fatal(err)
			}
		}
		alive := func(what string, s *session.Session, want bool) {
			t.Helper()
			if _, err := st.Load(ctx, s.Token()); (err == nil) != want {
				t.Errorf("%s: load err %v, want alive %v", what, err, want)
			}
		}
		// By sign-in, not by creation: created first but signed in after a, early is newer.
		now.Store(start - 5_000)
		early := sessiontest.Stored(t, st, "a", "early")
		a, _ := st.New()
		login(a, "order", 0)
		login(early, "order", 1_000)
		c, _ := st.New()
		login(c, "order", 2_000)
		alive("signed in first (created later)", a, false)
		alive("signed in second (created first)", early, true)
		alive("signed in last", c, true)

		// Signed in within the same millisecond: the smaller key goes first.
		b1, _ := st.New()
		b2, _ := st.New()
		login(b1, "ties", 3_000)
		login(b2, "ties", 3_000)
		b3, _ := st.New()
		login(b3, "ties", 3_500)
		lo, hi := b1, b2
		if lo.Key() > hi.Key() {
			lo, hi = hi, lo
		}
		alive("the smaller key of a tie", lo, false)
		alive("the larger key of a tie", hi, true)
		alive("the last", b3, true)
	})
}

// userTag computes a user's slot tag as the store does without an HMAC key.
// collidingUsers returns two user IDs, prefix and a number, whose slot tags collide.
func collidingUsers(prefix string) (x, y string) {
	seen := map[string]string{}
	for i := 0; x == ""; i++ {
		id := fmt.Sprint(prefix, i)
		tag := userTag(id)
		if other, ok := seen[tag]; ok {
			x, y = other, id
		}
		seen[tag] = id
	}
	return x, y
}

func userTag(id string) string {
	sum := sha256.Sum256([]byte("gatehouse-user\x00" + id))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:4]
}

// Item 6, the rare path: a session signed in as one user is signed in as another whose sessions
// share its slot (24-bit tags collide): the move stays in the slot, in session_rotate.lua, and the
// cap holds there too.
func TestSessionCapSignInWithinSlot(t *testing.T) {
	x, y := collidingUsers("collide-")
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, _ := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithMaxSessionsPerUser(1))
		ys, _ := st.New()
		if err := st.Login(ctx, ys, y); err != nil {
			t.Fatal(err)
		}
		xs, _ := st.New()
		if err := st.Login(ctx, xs, x); err != nil {
			t.Fatal(err)
		}
		if xs.Token()[:4] != ys.Token()[:4] {
			t.Fatalf("users %q and %q: tags %s and %s, computed to collide", x, y, xs.Token()[:4], ys.Token()[:4])
		}
		now.Store(start + 1_000)
		if err := st.Login(ctx, xs, y); err != nil { // the same slot: session_rotate.lua
			t.Fatal(err)
		}
		if _, err := st.Load(ctx, ys.Token()); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s's older session under a cap of 1: %v, want ended", y, err)
		}
		if list, _ := st.ListByUser(ctx, y); len(list) != 1 || list[0].Key != xs.Key() {
			t.Errorf("%s's sessions: %+v, want only the one just signed in", y, list)
		}
		if list, _ := st.ListByUser(ctx, x); len(list) != 0 {
			t.Errorf("%s still has %d sessions", x, len(list))
		}
	})
}

// swapRead sends a load's pipeline (HGETALL, then the touch's EVALSHA) in the other order, once,
// and runs between in the middle: what a Cluster's redirection between the two commands can do.
type swapRead struct {
	between func()
	swapped atomic.Int32
}

func (h *swapRead) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *swapRead) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}
func (h *swapRead) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) != 2 || cmds[0].Name() != "hgetall" || cmds[1].Name() != "evalsha" || !h.swapped.CompareAndSwap(0, 1) {
			return next(ctx, cmds)
		}
		err := next(ctx, cmds[1:])
		h.between()
		if err2 := next(ctx, cmds[:1]); err == nil {
			err = err2
		}
		return err
	}
}

// A load's touch finds the session live, then a rotation replaces the record with a pointer, then
// the read finds the pointer (the two commands ran in the other order): the load makes its round
// trip again and reads the session through the pointer, read-only, not a record lacking its
// fields (ErrCorrupt).
func TestSessionLoadReadAfterTouch(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithRotationGrace(time.Minute))
		s := sessiontest.Stored(t, st, "a", "1")
		r := sessiontest.MustLoad(t, st, s.Token())
		h := &swapRead{between: func() {
			if err := st.Rotate(ctx, r); err != nil {
				t.Error(err)
			}
		}}
		got, err := hookedStore(t, b, prefix, h, session.WithRotationGrace(time.Minute)).Load(ctx, s.Token())
		if h.swapped.Load() != 1 {
			t.Fatal("the load's pipeline was not swapped: the test does not test it")
		}
		if err != nil || !got.ReadOnly() || got.GetString("a") != "1" {
			t.Fatalf("load with the rotation between its touch and its read: %v; want the session, read-only through the pointer", err)
		}
	})
}
