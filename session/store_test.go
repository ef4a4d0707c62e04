package session_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
)

func TestSessionRoundTrip(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		for _, codec := range []session.Codec{session.JSON, session.Msgpack} {
			ctx := context.Background()
			st, prefix := sessiontest.NewStore(t, b, session.WithCodec(codec))
			s := sessiontest.Stored(t, st, "name", "ada")
			s2 := sessiontest.MustLoad(t, st, s.Token())
			if got := s2.GetString("name"); got != "ada" {
				t.Errorf("GetString(name) = %q, want ada", got)
			}
			if err := s2.Put("count", 41); err != nil {
				t.Fatal(err)
			}
			s2.Put("flash", "saved!")
			if err := st.Save(ctx, s2); err != nil {
				t.Fatal(err)
			}
			s3 := sessiontest.MustLoad(t, st, s.Token())
			if s3.GetInt("count") != 41 || s3.PopString("flash") != "saved!" || s3.Has("flash") {
				t.Errorf("after save: count %d, names %v", s3.GetInt("count"), s3.Names())
			}
			st.Save(ctx, s3)
			if sessiontest.MustLoad(t, st, s.Token()).Has("flash") {
				t.Error("a popped flash message is still stored")
			}
			m := s3.Metadata()
			if m.Key != s.Key() || m.Created.IsZero() || m.Deadline.Sub(m.Created) != session.DefaultLifetime || m.IdleTimeout != session.DefaultIdleTimeout {
				t.Errorf("metadata = %+v", m)
			}
			if strings.Contains(string(s.Key()), string(s.Token()[4:])) {
				t.Error("the storage key contains the token's secret")
			}
			redistest.AssertKeysExpire(t, b, prefix)
		}
	})
}

// Touch-on-read slides the expiry to min(now + idle, deadline): never past the deadline.
func TestSessionSlidingExpiryCappedByDeadline(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, prefix := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithIdleTimeout(10*time.Second), session.WithLifetime(25*time.Second))
		s := sessiontest.Stored(t, st, "k", "v")
		for _, step := range []struct {
			at      int64 // ms after creation
			wantTTL int64 // ms
		}{
			{8_000, 10_000}, {16_000, 9_000}, {20_000, 5_000}, {24_500, 500},
		} {
			now.Store(start + step.at)
			sessiontest.MustLoad(t, st, s.Token())
			// The expiry is an instant computed from the store's clock (the injected one), read as
			// the server's clock plus PTTL.
			t0 := time.Now().UnixMilli()
			ttl := b.Client.PTTL(ctx, string(s.Key())).Val().Milliseconds()
			t1 := time.Now().UnixMilli()
			want := start + step.at + step.wantTTL
			if t0+ttl > want+1 || t1+ttl < want-1000 {
				t.Errorf("at +%dms: expires at +%d..%dms, want about +%dms (never past the deadline)",
					step.at, t0+ttl-start, t1+ttl-start, want-start)
			}
		}
		now.Store(start + 25_000)
		if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Load at the deadline: err = %v, want ErrNotFound", err)
		}
		if n := b.Client.Exists(ctx, string(s.Key())).Val(); n != 0 {
			t.Error("the session outlived its deadline in Redis")
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// A read is one round trip (HGETALL, then the touch's EVALSHA: no MULTI, which a full server
// under noeviction would refuse), and it writes no payload: no HSET of attributes, no SET, nothing
// but the expiry and, at most once a second, the last-seen time. A signed-in session's read also
// asks its user index whether it still vouches for it (ZSCORE).
func TestSessionReadCostsOneRoundTrip(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		if err := gatehouse.Preload(ctx, b.Client); err != nil {
			t.Fatal(err)
		}
		st, _ := sessiontest.NewStore(t, b)
		anon := sessiontest.Stored(t, st, "payload", strings.Repeat("x", 1500))
		in := sessiontest.Stored(t, st, "payload", strings.Repeat("x", 1500))
		if err := st.Login(ctx, in, "reader"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // so that the first read records last-seen once
		stats := []string{"multi.calls", "exec.calls", "evalsha.calls", "hgetall.calls", "hmget.calls", "pexpire.calls", "pexpireat.calls",
			"hset.calls", "zscore.calls", "set.calls", "hmset.calls", "del.calls", "eval.calls", "script|load.calls", "zadd.calls",
			"zrem.calls", "zremrangebyscore.calls", "exists.calls"}
		for _, s := range []*session.Session{anon, in} {
			signedIn := s.UserID() != ""
			before := redistest.CommandCalls(ctx, t, b)
			for range 5 {
				sessiontest.MustLoad(t, st, s.Token())
			}
			got := redistest.Delta(before, redistest.CommandCalls(ctx, t, b), stats...)
			want := map[string]int64{"evalsha.calls": 5, "hgetall.calls": 5, "hmget.calls": 5, "pexpireat.calls": 5, "hset.calls": 1}
			if signedIn {
				want["zscore.calls"] = 5
			}
			for _, k := range stats {
				if got[k] != want[k] {
					t.Errorf("5 reads (signed in %v): server counted %s += %d, want %d", signedIn, k, got[k], want[k])
				}
			}
		}
	})
}

// Two requests that read the same session and change different attributes both keep their change.
func TestSessionConcurrentSavesKeepBoth(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b)
		s := sessiontest.Stored(t, st, "a", "0", "b", "0")
		r1, r2 := sessiontest.MustLoad(t, st, s.Token()), sessiontest.MustLoad(t, st, s.Token())
		r1.Put("a", "1")
		r2.Put("b", "2")
		r2.Remove("gone")
		if err := st.Save(ctx, r1); err != nil {
			t.Fatal(err)
		}
		if err := st.Save(ctx, r2); err != nil {
			t.Fatal(err)
		}
		got := sessiontest.MustLoad(t, st, s.Token())
		if got.GetString("a") != "1" || got.GetString("b") != "2" {
			t.Errorf("after two saves: a = %q, b = %q; want 1 and 2", got.GetString("a"), got.GetString("b"))
		}
	})
}

// Destroy and Rotate cannot be undone by a request that read the session before them.
func TestSessionNoResurrection(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b)

		s := sessiontest.Stored(t, st, "a", "1")
		inflight := sessiontest.MustLoad(t, st, s.Token())
		if err := st.Destroy(ctx, sessiontest.MustLoad(t, st, s.Token())); err != nil {
			t.Fatal(err)
		}
		inflight.Put("a", "2")
		if err := st.Save(ctx, inflight); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("save after destroy: err = %v, want ErrNotFound", err)
		}
		if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("load after destroy and a late save: err = %v, want ErrNotFound", err)
		}

		s = sessiontest.Stored(t, st, "a", "1")
		old := s.Token()
		inflight = sessiontest.MustLoad(t, st, old)
		rot := sessiontest.MustLoad(t, st, old)
		if err := st.Rotate(ctx, rot); err != nil {
			t.Fatal(err)
		}
		if rot.Token() == old {
			t.Fatal("Rotate kept the token")
		}
		inflight.Put("a", "2")
		if err := st.Save(ctx, inflight); !errors.Is(err, session.ErrConflict) && !errors.Is(err, session.ErrNotFound) {
			t.Errorf("save through the old token after rotate: err = %v, want a conflict", err)
		}
		if _, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("load of the old token after rotate: err = %v, want ErrNotFound", err)
		}
		if got := sessiontest.MustLoad(t, st, rot.Token()).GetString("a"); got != "1" {
			t.Errorf("rotated session a = %q, want 1", got)
		}
	})
}

// With a grace window, the old token reads the new session for a while, and can never write.
func TestSessionRotationGrace(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, prefix := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithRotationGrace(5*time.Second))
		s := sessiontest.Stored(t, st, "a", "1")
		old := s.Token()
		if err := st.Rotate(ctx, s); err != nil {
			t.Fatal(err)
		}
		viaOld := sessiontest.MustLoad(t, st, old)
		if viaOld.Metadata().Key != s.Key() || viaOld.GetString("a") != "1" || !viaOld.ReadOnly() {
			t.Fatalf("old token within grace: key %v, a = %q, read-only %v", viaOld.Metadata().Key, viaOld.GetString("a"), viaOld.ReadOnly())
		}
		if viaOld.Token() != old {
			t.Error("a load through the old token handed out the new token")
		}
		now.Store(start + 5_000)
		if _, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("old token after grace: err = %v, want ErrNotFound", err)
		}
		sessiontest.MustLoad(t, st, s.Token())
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

func TestSessionLoginAndPerUserControl(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b)
		// An anonymous session with a cart signs in: it moves to the user's slot, keeping the cart.
		anon := sessiontest.Stored(t, st, "cart", "3 apples")
		old := anon.Token()
		if err := st.Login(ctx, anon, "user-7"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Load(ctx, old); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("pre-login token: err = %v, want ErrNotFound", err)
		}
		in := sessiontest.MustLoad(t, st, anon.Token())
		if in.GetString("cart") != "3 apples" || in.UserID() != "user-7" || !in.AuthenticatedWithin(time.Minute) {
			t.Errorf("after login: cart %q, user %q, meta %+v", in.GetString("cart"), in.UserID(), in.Metadata())
		}
		// Two more devices, then a re-login (rotation within the user's slot).
		phone := sessiontest.Stored(t, st)
		phone.Put("x", 1)
		if err := st.Login(ctx, phone, "user-7"); err != nil {
			t.Fatal(err)
		}
		phone.SetLabel("phone")
		st.Save(ctx, phone)
		tablet, _ := st.New()
		if err := st.Login(ctx, tablet, "user-7"); err != nil {
			t.Fatal(err)
		}
		if err := st.Login(ctx, tablet, "user-7"); err != nil {
			t.Fatal(err)
		}
		other, _ := st.New()
		st.Login(ctx, other, "user-8")

		list, err := st.ListByUser(ctx, "user-7")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 3 {
			t.Fatalf("ListByUser = %d sessions, want 3: %+v", len(list), list)
		}
		labels := 0
		for _, m := range list {
			if m.UserID != "user-7" || m.Created.IsZero() || m.Deadline.IsZero() || m.AuthenticatedAt.IsZero() {
				t.Errorf("listed metadata %+v", m)
			}
			if m.Label == "phone" {
				labels++
			}
		}
		if labels != 1 {
			t.Errorf("%d sessions labelled phone, want 1", labels)
		}
		if n, err := st.DestroyOthers(ctx, in); err != nil || n != 2 {
			t.Errorf("DestroyOthers = %d, %v; want 2", n, err)
		}
		if _, err := st.Load(ctx, phone.Token()); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("phone after DestroyOthers: err = %v", err)
		}
		sessiontest.MustLoad(t, st, in.Token())
		if n, err := st.DestroyAllForUser(ctx, "user-7"); err != nil || n != 1 {
			t.Errorf("DestroyAllForUser = %d, %v; want 1", n, err)
		}
		if list, _ := st.ListByUser(ctx, "user-7"); len(list) != 0 {
			t.Errorf("ListByUser after DestroyAllForUser = %d sessions", len(list))
		}
		if list, _ := st.ListByUser(ctx, "user-8"); len(list) != 1 {
			t.Errorf("user-8 has %d sessions, want 1 (untouched)", len(list))
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

func TestSessionCapPerUserEvictsOldest(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, _ := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithMaxSessionsPerUser(2))
		var toks []session.Token
		for i := range 4 {
			now.Store(start + int64(i)*1000)
			s, _ := st.New()
			if err := st.Login(ctx, s, "capped"); err != nil {
				t.Fatal(err)
			}
			toks = append(toks, s.Token())
		}
		list, _ := st.ListByUser(ctx, "capped")
		if len(list) != 2 {
			t.Fatalf("%d sessions after 4 logins with a cap of 2", len(list))
		}
		for i, tok := range toks {
			_, err := st.Load(ctx, tok)
			if alive := err == nil; alive != (i >= 2) {
				t.Errorf("session %d alive = %v (err %v); want only the two newest", i, alive, err)
			}
		}
	})
}

// After the sessions expire, lists and counts are right and the index goes too.
func TestSessionIndexDoesNotLeak(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		var now atomic.Int64
		start := time.Now().UnixMilli()
		now.Store(start)
		st, prefix := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithIdleTimeout(time.Second), session.WithLifetime(time.Hour))
		var keys []session.Key
		for range 3 {
			s, _ := st.New()
			st.Login(ctx, s, "leaky")
			keys = append(keys, s.Key())
		}
		if list, _ := st.ListByUser(ctx, "leaky"); len(list) != 3 {
			t.Fatalf("%d sessions listed, want 3", len(list))
		}
		// Idle expiry happens on the server's clock: wait it out.
		time.Sleep(1200 * time.Millisecond)
		now.Store(start + 1200)
		list, err := st.ListByUser(ctx, "leaky")
		if err != nil || len(list) != 0 {
			t.Errorf("after idle expiry: %d sessions listed, %v", len(list), err)
		}
		for _, k := range keys {
			if b.Client.Exists(ctx, string(k)).Val() != 0 {
				t.Errorf("session %s outlived its idle timeout", k)
			}
		}
		masters, _ := b.Masters(ctx)
		for _, m := range masters {
			for _, k := range m.Keys(ctx, prefix+"*").Val() {
				if strings.HasSuffix(k, ":ix") {
					if n := m.ZCard(ctx, k).Val(); n != 0 {
						t.Errorf("index %s still holds %d members", k, n)
					}
				}
			}
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

func TestSessionBadInput(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b, session.WithMaxSize(2000))

		before := redistest.CommandCalls(ctx, t, b)
		for _, tok := range []session.Token{"", "short", session.Token(strings.Repeat("a", 46)), session.Token(strings.Repeat("a", 46) + "!"), session.Token(strings.Repeat("{", 47))} {
			if _, err := st.Load(ctx, tok); !errors.Is(err, session.ErrMalformed) {
				t.Errorf("Load(%q) err = %v, want ErrMalformed", tok, err)
			}
		}
		if n := redistest.Delta(before, redistest.CommandCalls(ctx, t, b), "evalsha.calls")["evalsha.calls"]; n != 0 {
			t.Errorf("malformed tokens reached Redis: %d EVALSHA", n)
		}
		// A well-formed token the server never issued is not found, never adopted.
		forged := session.Token("AAAA" + strings.Repeat("B", 43))
		if _, err := st.Load(ctx, forged); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Load(forged) err = %v, want ErrNotFound", err)
		}

		// Too large: refused, nothing written.
		s := sessiontest.Stored(t, st, "a", "small")
		big := sessiontest.MustLoad(t, st, s.Token())
		big.Put("blob", strings.Repeat("x", 3000))
		if err := st.Save(ctx, big); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("oversize save: err = %v, want ErrTooLarge", err)
		}
		if sessiontest.MustLoad(t, st, s.Token()).Has("blob") {
			t.Error("an oversize save wrote something")
		}
		tooBig, _ := st.New()
		tooBig.Put("blob", strings.Repeat("x", 3000))
		if err := st.Save(ctx, tooBig); !errors.Is(err, session.ErrTooLarge) {
			t.Errorf("oversize new session: err = %v, want ErrTooLarge", err)
		}

		// Corrupt records and attributes are errors, never panics.
		s = sessiontest.Stored(t, st, "a", "1")
		b.Client.HSet(ctx, string(s.Key()), "a:a", "{not json")
		got := sessiontest.MustLoad(t, st, s.Token())
		var v string
		if _, err := got.Get("a", &v); !errors.Is(err, session.ErrCorrupt) {
			t.Errorf("Get of a corrupt attribute: err = %v, want ErrCorrupt", err)
		}
		// A msgpack value whose header claims billions of elements: refused, without allocating them
		// (found by FuzzGetters: msgpack v5 sized the slice by the claim and the process ran out of memory).
		mp, _ := sessiontest.NewStore(t, b, session.WithCodec(session.Msgpack))
		s = sessiontest.Stored(t, mp, "a", "1")
		b.Client.HSet(ctx, string(s.Key()), "a:a", "\x9d000000\x98\x9800000000000000000F\x97\x1d\x903\xdd\xc7000\x9800")
		var anything any
		if _, err := sessiontest.MustLoad(t, mp, s.Token()).Get("a", &anything); !errors.Is(err, session.ErrCorrupt) {
			t.Errorf("Get of a msgpack bomb: err = %v, want ErrCorrupt", err)
		}
		for _, corrupt := range []func(k string){
			func(k string) { b.Client.HDel(ctx, k, "_d") },
			func(k string) { b.Client.HSet(ctx, k, "_d", "soon") },
			func(k string) { b.Client.HSet(ctx, k, "_s", "yesterday") },
			func(k string) { b.Client.HDel(ctx, k, "_g") },
			// An idle timeout not above 0, last seen long ago: the expiry would be set in the past,
			// deleting the key, and the last-seen write would make it again, without a TTL.
			func(k string) { b.Client.HSet(ctx, k, "_i", "0", "_s", "1") },
			func(k string) { b.Client.HSet(ctx, k, "_i", "-5000", "_s", "1") },
			// A grace pointer whose grace deadline is not a number (the touch compared it as one).
			func(k string) {
				b.Client.Del(ctx, k)
				b.Client.HSet(ctx, k, "_r", k, "_rg", "later")
				b.Client.PExpire(ctx, k, time.Minute)
			},
			// A pending sign-in (read only through a grace pointer) whose deadline is not a number.
			func(k string) { b.Client.HSet(ctx, k, "_pn", "1", "_d", "soon") },
		} {
			s := sessiontest.Stored(t, st, "a", "1")
			corrupt(string(s.Key()))
			if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrCorrupt) {
				t.Errorf("Load of a corrupt record: err = %v, want ErrCorrupt", err)
			}
			if ttl := b.Client.PTTL(ctx, string(s.Key())).Val(); ttl == -1 {
				t.Errorf("a corrupt record's key left without a TTL after a load")
			}
		}
		if err := st.DestroyKey(ctx, "gh:s:{x}:s:nope"); !errors.Is(err, session.ErrMalformed) {
			t.Errorf("DestroyKey of a foreign key: err = %v, want ErrMalformed", err)
		}
	})
}

// "Remember me": per-session idle timeout and lifetime, before the first save and after.
func TestSessionLifetimeOverrides(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithIdleTimeout(time.Minute), session.WithLifetime(time.Hour))
		s, _ := st.New()
		s.Put("k", "v")
		s.SetLifetime(2*time.Hour, 30*24*time.Hour)
		if err := st.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		m := sessiontest.MustLoad(t, st, s.Token()).Metadata()
		if m.IdleTimeout != 2*time.Hour || m.Deadline.Sub(m.Created) != 30*24*time.Hour {
			t.Errorf("remembered session: idle %v, lifetime %v; want 2h and 720h", m.IdleTimeout, m.Deadline.Sub(m.Created))
		}
		if ttl := b.Client.PTTL(ctx, string(s.Key())).Val(); ttl < 2*time.Hour-time.Minute || ttl > 2*time.Hour {
			t.Errorf("PTTL %v, want about 2h", ttl)
		}
		// Back to short lifetimes on a stored session: a 10-second lifetime from creation.
		r := sessiontest.MustLoad(t, st, s.Token())
		r.SetLifetime(5*time.Second, 10*time.Second)
		if err := st.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
		if ttl := b.Client.PTTL(ctx, string(s.Key())).Val(); ttl > 5*time.Second || ttl < 3*time.Second {
			t.Errorf("after shortening: PTTL %v, want about 5s", ttl)
		}
		if m := sessiontest.MustLoad(t, st, s.Token()).Metadata(); m.Deadline.Sub(m.Created) != 10*time.Second {
			t.Errorf("after shortening: lifetime %v, want 10s", m.Deadline.Sub(m.Created))
		}
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

// A create run twice (go-redis retrying after a lost reply) succeeds once and changes nothing the
// second time.
func TestSessionCreateIsIdempotent(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, _ := sessiontest.NewStore(t, b)
		s := sessiontest.Stored(t, st, "a", "1")
		create, _ := script.Lookup("session_create")
		before := b.Client.HGetAll(ctx, string(s.Key())).Val()
		k := string(s.Key())
		v, err := create.Run(ctx, b.Client, []string{k}, 0, 60000, 60000, 0, 0, 0, "", 0, session.DefaultMaxSize, 0, 1, "a:a", `"2"`)
		if err != nil {
			t.Fatal(err)
		}
		if arr, ok := v.([]any); !ok || arr[0] != int64(1) {
			t.Errorf("second create = %v, want success", v)
		}
		if after := b.Client.HGetAll(ctx, string(s.Key())).Val(); after["a:a"] != before["a:a"] || after["_c"] != before["_c"] {
			t.Errorf("second create changed the record: %v -> %v", before, after)
		}
	})
}
