package session_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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

// The size cap at its exact end, decided by the script over the record as stored (another
// request added to it): a record of exactly the cap is saved, one byte more is refused and writes
// nothing.
func TestProbeSizeCapExactBoundary(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		const cap = 2048
		st, _ := sessiontest.NewStore(t, b, session.WithMaxSize(cap))
		ctx := context.Background()
		for _, over := range []int{0, 1} {
			base := sessiontest.Stored(t, st, "init", "1")
			s1 := sessiontest.MustLoad(t, st, base.Token())
			s2 := sessiontest.MustLoad(t, st, base.Token())
			s1.Put("x", strings.Repeat("x", 500))
			if err := st.Save(ctx, s1); err != nil {
				t.Fatal(err)
			}
			rec, err := b.Client.HGetAll(ctx, string(base.Key())).Result()
			if err != nil {
				t.Fatal(err)
			}
			size := 0
			for f, v := range rec {
				size += len(f) + len(v)
			}
			// s2's save adds "a:y" and a JSON string of L characters (L+2 bytes), and rewrites _s
			// (13 digits) and _v ("1" to "2") at the same lengths.
			l := cap - size - len("a:y") - 2 + over
			s2.Put("y", strings.Repeat("y", l))
			err = st.Save(ctx, s2)
			switch {
			case over == 0 && err != nil:
				t.Errorf("a record of exactly the cap (%d bytes): %v", cap, err)
			case over == 1 && !errors.Is(err, session.ErrTooLarge):
				t.Errorf("a record one byte over the cap: %v, want ErrTooLarge", err)
			}
			got := sessiontest.MustLoad(t, st, base.Token())
			if over == 1 && got.Has("y") {
				t.Error("a refused save wrote its attribute")
			}
			if over == 0 && len(got.GetString("y")) != l {
				t.Errorf("the attribute saved at the cap has %d bytes, want %d", len(got.GetString("y")), l)
			}
		}
	})
}

// Two users whose sessions share a tag bucket (24-bit tags collide) and its index: the per-user
// operations and the cap see only their own user's sessions; and user IDs of any bytes (braces,
// NUL, invalid UTF-8) are only data.
func TestProbeSharedBucketAndOddUserIDs(t *testing.T) {
	x, y := collidingUsers("{probe}\x00\xff-")
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		// Each sign-in a millisecond after the last: the cap ends the oldest sign-in, and equal
		// instants (sign-ins within a millisecond, on a fast machine) go by key, at random.
		var now atomic.Int64
		now.Store(time.Now().UnixMilli())
		st, _ := sessiontest.NewStore(t, b, session.WithMaxSessionsPerUser(2), session.ClockAt(&now))
		login := func(user string) *session.Session {
			now.Add(1)
			s := sessiontest.Stored(t, st, "a", "1")
			if err := st.Login(ctx, s, user); err != nil {
				t.Fatal(err)
			}
			return s
		}
		y1 := login(y)
		x1, x2 := login(x), login(x)
		if x1.Token()[:4] != y1.Token()[:4] {
			t.Fatal("the users' tags do not collide")
		}
		x3 := login(x) // x's cap of 2 ends x1, never y's session
		for _, c := range []struct {
			s    *session.Session
			live bool
		}{{y1, true}, {x1, false}, {x2, true}, {x3, true}} {
			_, err := st.Load(ctx, c.s.Token())
			if (err == nil) != c.live {
				t.Errorf("after x's third sign-in under a cap of 2: %s's session: %v, live %v", c.s.UserID(), err, c.live)
			}
		}
		if got := sessiontest.MustLoad(t, st, y1.Token()).UserID(); got != y {
			t.Errorf("y's user ID read back as %q", got)
		}
		if list, err := st.ListByUser(ctx, y); err != nil || len(list) != 1 || list[0].Key != y1.Key() {
			t.Errorf("ListByUser(y): %v, %v", list, err)
		}
		if n, err := st.DestroyOthers(ctx, x3); err != nil || n != 1 {
			t.Errorf("DestroyOthers through x3: %d, %v, want 1 (x2)", n, err)
		}
		if n, err := st.DestroyAllForUser(ctx, x); err != nil || n != 1 {
			t.Errorf("DestroyAllForUser(x): %d, %v, want 1", n, err)
		}
		sessiontest.MustLoad(t, st, y1.Token())
		if list, _ := st.ListByUser(ctx, x); len(list) != 0 {
			t.Errorf("x still has %d sessions", len(list))
		}
	})
}

// Values round-trip through Redis with either codec: the ends of int64, uint64's top, times to the
// nanosecond, nil, nested maps, bytes that are not UTF-8, and an empty attribute name.
func TestProbeCodecRoundTrips(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 9, 30, 0, 123456789, time.UTC)
	for name, codec := range map[string]session.Codec{"json": session.JSON, "msgpack": session.Msgpack} {
		st, _ := sessiontest.NewStore(t, b, session.WithCodec(codec))
		s, _ := st.New()
		s.Put("max", int64(math.MaxInt64))
		s.Put("min", int64(math.MinInt64))
		s.Put("u64", uint64(math.MaxUint64))
		s.Put("time", at)
		s.Put("nil", nil)
		s.Put("nested", map[string]map[string][]int{"a": {"b": {1, 2}}})
		s.Put("bin", []byte{0xff, 0x00, 0xfe})
		s.Put("", "empty name")
		if err := st.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		r := sessiontest.MustLoad(t, st, s.Token())
		if r.GetInt64("max") != math.MaxInt64 || r.GetInt64("min") != math.MinInt64 {
			t.Errorf("%s: int64 ends: %d, %d", name, r.GetInt64("max"), r.GetInt64("min"))
		}
		var u uint64
		if _, err := r.Get("u64", &u); err != nil || u != math.MaxUint64 {
			t.Errorf("%s: uint64: %d, %v", name, u, err)
		}
		if got := r.GetTime("time"); !got.Equal(at) {
			t.Errorf("%s: time %v, want %v", name, got, at)
		}
		var p *int
		if ok, err := r.Get("nil", &p); !ok || err != nil || p != nil {
			t.Errorf("%s: nil: %v %v %v", name, ok, err, p)
		}
		var nested map[string]map[string][]int
		if _, err := r.Get("nested", &nested); err != nil || len(nested["a"]["b"]) != 2 || nested["a"]["b"][1] != 2 {
			t.Errorf("%s: nested %v, %v", name, nested, err)
		}
		if got := r.GetBytes("bin"); string(got) != "\xff\x00\xfe" {
			t.Errorf("%s: bytes %q", name, got)
		}
		if got := r.GetString(""); got != "empty name" {
			t.Errorf("%s: the empty name: %q", name, got)
		}
	}
}

// A new session given a deadline already past is not stored, and says so as a stored one does
// (ErrNotFound), so that the middleware drops it like a session that ended, not as a failure (500).
func TestProbeNewSessionPastDeadline(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	ctx := context.Background()
	s, _ := st.New()
	s.Put("k", "v")
	s.SetDeadline(time.Now().Add(-time.Hour))
	if err := st.Save(ctx, s); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("saving a new session past its deadline: %v, want ErrNotFound", err)
	}
	if _, err := st.Load(ctx, s.Token()); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("its token: %v, want ErrNotFound", err)
	}
	h := session.Middleware(st, session.WithLogger(slog.New(slog.DiscardHandler)))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("k", "v")
		s.SetDeadline(time.Now().Add(-time.Hour))
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if res := rec.Result(); res.StatusCode != http.StatusOK || len(res.Cookies()) != 0 {
		t.Errorf("through the middleware: status %d, cookies %v; want 200 and none", res.StatusCode, res.Cookies())
	}
}

// Login gives "a fresh absolute lifetime (the store's, or RememberMe's)", whether the session was
// stored before or not: a lifetime set on the anonymous session (SetLifetime) does not carry over.
func TestProbeLoginLifetimeWhateverThePath(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b, session.WithLifetime(time.Hour))
	ctx := context.Background()
	for _, stored := range []bool{false, true} {
		var s *session.Session
		if stored {
			s = sessiontest.Stored(t, st, "a", "1")
			s = sessiontest.MustLoad(t, st, s.Token())
		} else {
			s, _ = st.New()
			s.Put("a", "1")
		}
		s.SetLifetime(0, 2*time.Minute)
		if err := st.Login(ctx, s, "lifetime"); err != nil {
			t.Fatal(err)
		}
		m := s.Metadata()
		if got := m.Deadline.Sub(m.AuthenticatedAt); got != time.Hour {
			t.Errorf("stored before %v: the signed-in session's lifetime is %v, want the store's 1h", stored, got)
		}
	}
}

// The idle timeout and lifetime are stored with each session: a store restarted with other ones
// applies them to sessions created from then on, and existing sessions keep theirs.
func TestProbeIdleTimeoutChangedWhileSessionsExist(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	prefix := redistest.Prefix(t)
	before, err := session.NewStore(b.Client, session.WithKeyPrefix(prefix), session.WithIdleTimeout(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	after, err := session.NewStore(b.Client, session.WithKeyPrefix(prefix), session.WithIdleTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	old := sessiontest.Stored(t, before, "a", "1")
	if got := sessiontest.MustLoad(t, after, old.Token()).Metadata().IdleTimeout; got != time.Hour {
		t.Errorf("an existing session read by the restarted store: idle %v, want its own 1h", got)
	}
	if ttl := b.Client.PTTL(ctx, string(old.Key())).Val(); ttl <= time.Minute {
		t.Errorf("an existing session's expiry slid by the new idle timeout: PTTL %v", ttl)
	}
	fresh := sessiontest.Stored(t, after, "a", "1")
	if ttl := b.Client.PTTL(ctx, string(fresh.Key())).Val(); ttl > time.Minute {
		t.Errorf("a new session: PTTL %v, want at most the new 1m", ttl)
	}
}

// A per-session idle timeout or lifetime under a millisecond (RememberMe, SetLifetime), which
// NewStore refuses for the store's own, never stores a record that later reads as corrupt.
func TestProbeSubMillisecondPerSessionTimeouts(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	ctx := context.Background()
	check := func(what string, s *session.Session, err error) {
		t.Helper()
		if err != nil {
			t.Logf("%s: %v", what, err)
			if errors.Is(err, session.ErrCorrupt) {
				t.Errorf("%s: %v", what, err)
			}
			return
		}
		if _, err := st.Load(ctx, s.Token()); errors.Is(err, session.ErrCorrupt) {
			t.Errorf("%s, then Load: %v", what, err)
		}
	}
	s, _ := st.New()
	s.Put("a", "1")
	check("Login of a new session with RememberMe(1µs, 1µs)", s, st.Login(ctx, s, "sub", session.RememberMe(time.Microsecond, time.Microsecond)))
	s = sessiontest.Stored(t, st, "a", "1")
	check("Login of a stored session with RememberMe(1µs, 0)", s, st.Login(ctx, s, "sub", session.RememberMe(time.Microsecond, 0)))
	s = sessiontest.Stored(t, st, "a", "1")
	s = sessiontest.MustLoad(t, st, s.Token())
	s.SetLifetime(time.Microsecond, 0)
	check("SetLifetime(1µs, 0) of a stored session", s, st.Save(ctx, s))
	s, _ = st.New()
	s.Put("a", "1")
	s.SetLifetime(time.Microsecond, 0)
	check("SetLifetime(1µs, 0) of a new session", s, st.Save(ctx, s))
}
