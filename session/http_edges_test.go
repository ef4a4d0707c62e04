package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// edgeServer serves the handlers the edge tests need, through the middleware with an insecure
// cookie named "session". It counts error handler calls, keeps the middleware's log records, and
// the last error a handler saw from the store.
type edgeServer struct {
	*httptest.Server
	st               *session.Store
	onError          atomic.Int64
	logs             sessiontest.LogRecords
	lastErr          atomic.Value // string
	lastErrIsHeaders atomic.Bool
}

func newEdgeServer(t *testing.T, st *session.Store, cookie session.Cookie) *edgeServer {
	t.Helper()
	e := &edgeServer{st: st}
	ctx := func(r *http.Request) (context.Context, *session.Session) {
		s, _ := session.FromContext(r.Context())
		return r.Context(), s
	}
	note := func(err error) {
		if err != nil {
			e.lastErr.Store(err.Error())
			e.lastErrIsHeaders.Store(errors.Is(err, session.ErrHeadersSent))
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		_, s := ctx(r)
		s.Put(r.URL.Query().Get("k"), r.URL.Query().Get("v"))
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		_, s := ctx(r)
		io.WriteString(w, s.GetString(r.URL.Query().Get("k")))
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		c, s := ctx(r)
		var opts []session.LoginOption
		switch r.URL.Query().Get("remember") {
		case "yes":
			opts = append(opts, session.RememberMe(0, 30*24*time.Hour))
		case "no":
			opts = append(opts, session.UntilBrowserCloses())
		}
		if err := st.Login(c, s, r.URL.Query().Get("user"), opts...); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/extend", func(w http.ResponseWriter, r *http.Request) {
		_, s := ctx(r)
		s.SetLifetime(0, 8*time.Hour)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		_, s := ctx(r)
		s.Put("big", strings.Repeat("x", 20_000))
		io.WriteString(w, "the handler's body")
	})
	mux.HandleFunc("/late-login", func(w http.ResponseWriter, r *http.Request) {
		c, s := ctx(r)
		io.WriteString(w, "started")
		note(st.Login(c, s, "late"))
	})
	mux.HandleFunc("/late-rotate", func(w http.ResponseWriter, r *http.Request) {
		c, s := ctx(r)
		w.WriteHeader(http.StatusOK)
		note(st.Rotate(c, s))
	})
	mux.HandleFunc("/logout-flash", func(w http.ResponseWriter, r *http.Request) {
		c, s := ctx(r)
		if err := st.Destroy(c, s); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		s.AddFlash("signed out")
	})
	mux.HandleFunc("/late-logout-flash", func(w http.ResponseWriter, r *http.Request) {
		c, s := ctx(r)
		io.WriteString(w, "started")
		st.Destroy(c, s)
		note(s.AddFlash("signed out"))
	})
	mux.HandleFunc("/flashes", func(w http.ResponseWriter, r *http.Request) {
		_, s := ctx(r)
		io.WriteString(w, strings.Join(s.Flashes(), "|"))
	})
	h := session.Middleware(st, session.WithCookie(cookie),
		session.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			e.onError.Add(1)
			http.Error(w, "refused", http.StatusInternalServerError)
		}),
		session.WithLogger(e.logs.Logger()))
	e.Server = httptest.NewServer(h(mux))
	t.Cleanup(e.Close)
	return e
}

// do sends GET path with the Cookie header given verbatim ("" for none), and returns the status,
// the body and the session cookie set, if any.
func (e *edgeServer) do(t *testing.T, path, cookieHeader string) (int, string, *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+path, nil)
	if cookieHeader != "" {
		req.Header.Set("Cookie", cookieHeader)
	}
	res, err := e.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var set *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "session" {
			set = c
		}
	}
	return res.StatusCode, string(body), set
}

// start makes a stored session through the middleware and returns its cookie header.
func (e *edgeServer) start(t *testing.T) string {
	t.Helper()
	_, _, c := e.do(t, "/set?k=init&v=1", "")
	if c == nil {
		t.Fatal("no cookie for a new session")
	}
	return "session=" + c.Value
}

// Item 1 through the middleware: a request with a token rotated within the grace window reads the
// session, and its changes are dropped as a conflict: no error, no cookie, nothing written.
func TestSessionMiddlewareOldTokenReadOnly(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b, session.WithRotationGrace(time.Minute))
	e := newEdgeServer(t, st, session.Cookie{Insecure: true})
	old := e.start(t)
	_, _, c := e.do(t, "/login?user=u", old)
	if c == nil {
		t.Fatal("no cookie after login")
	}
	code, _, set := e.do(t, "/set?k=evil&v=1", old)
	if logged := e.logs.Find(t, "session:"); code != http.StatusOK || set != nil || e.onError.Load() != 0 || len(logged) != 0 {
		t.Errorf("a change through the old token: %d, Set-Cookie %v, %d errors answered, logged %v; want 200 and nothing else", code, set, e.onError.Load(), logged)
	}
	if _, body, _ := e.do(t, "/get?k=init", old); body != "1" {
		t.Errorf("reading through the old token within the window: %q", body)
	}
	if _, body, _ := e.do(t, "/get?k=evil", "session="+c.Value); body != "" {
		t.Errorf("the change through the old token landed: %q", body)
	}
}

// Item 4 and 10: the cookie follows every change of the deadline, and the persistence chosen at
// sign-in, whatever the middleware's default.
func TestSessionMiddlewareCookieFollowsDeadline(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b, session.WithLifetime(time.Hour))
	e := newEdgeServer(t, st, session.Cookie{Insecure: true})
	_, _, c := e.do(t, "/login?user=u", e.start(t))
	if c == nil || c.Expires.IsZero() {
		t.Fatalf("login cookie %v", c)
	}
	_, _, ext := e.do(t, "/extend", "session="+c.Value)
	if ext == nil {
		t.Fatal("SetLifetime in a later request: no Set-Cookie, so the cookie keeps expiring at the old deadline")
	}
	s := sessiontest.MustLoad(t, st, session.Token(c.Value))
	if ext.Value != c.Value || !ext.Expires.Equal(s.Deadline().Truncate(time.Second)) || s.Deadline().Sub(s.Metadata().Created) != 8*time.Hour {
		t.Errorf("after SetLifetime(0, 8h): cookie expires %v, the session's deadline %v", ext.Expires, s.Deadline())
	}
	if _, _, again := e.do(t, "/get?k=init", "session="+c.Value); again != nil {
		t.Errorf("a read sent Set-Cookie %v", again)
	}

	// Persistence chosen at sign-in, against each default.
	for _, tc := range []struct {
		browserSession bool
		remember       string
		wantExpires    bool
	}{
		{true, "", false}, {true, "yes", true}, {false, "", true}, {false, "no", false},
	} {
		e := newEdgeServer(t, st, session.Cookie{Insecure: true, BrowserSession: tc.browserSession})
		_, _, c := e.do(t, "/login?user=v&remember="+tc.remember, e.start(t))
		if c == nil || c.Expires.IsZero() == tc.wantExpires {
			t.Errorf("BrowserSession %v, remember %q: cookie %v; want Expires %v", tc.browserSession, tc.remember, c, tc.wantExpires)
			continue
		}
		// Later cookies of the session keep the choice.
		_, _, ext := e.do(t, "/extend", "session="+c.Value)
		if ext == nil || ext.Expires.IsZero() == tc.wantExpires {
			t.Errorf("BrowserSession %v, remember %q: the next cookie %v; want Expires %v", tc.browserSession, tc.remember, ext, tc.wantExpires)
		}
	}
}

// Item 8: an oversized session is answered once by the error handler: no second save when the
// handler returns, nothing logged, and the handler's body is not sent.
func TestSessionMiddlewareOversizeAnsweredOnce(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	e := newEdgeServer(t, st, session.Cookie{Insecure: true})
	tok := e.start(t)
	code, body, _ := e.do(t, "/big", tok)
	if code != http.StatusInternalServerError || strings.Contains(body, "the handler's body") {
		t.Errorf("oversize: %d %q", code, body)
	}
	refused, late := e.logs.Find(t, "session: save failed"), e.logs.Find(t, "session: save after the response started")
	if e.onError.Load() != 1 || len(refused) != 1 || len(late) != 0 {
		t.Errorf("oversize: error handler called %d times, the refusal logged %d times, a save after the response %d times; want 1, 1 and 0", e.onError.Load(), len(refused), len(late))
	}
	if _, body, _ := e.do(t, "/get?k=big", tok); body != "" {
		t.Error("the oversize attribute was stored")
	}
}

// Item 8: Rotate and Login after the response started fail with ErrHeadersSent and change nothing;
// so does Put after Destroy, which would start a session whose cookie cannot be sent.
func TestSessionMiddlewareLateRotation(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	e := newEdgeServer(t, st, session.Cookie{Insecure: true})
	for _, path := range []string{"/late-login", "/late-rotate", "/late-logout-flash"} {
		tok := e.start(t)
		e.lastErrIsHeaders.Store(false)
		if _, _, set := e.do(t, path, tok); set != nil && path != "/late-logout-flash" {
			t.Errorf("%s: Set-Cookie %v after the response started", path, set)
		}
		if !e.lastErrIsHeaders.Load() {
			t.Errorf("%s: err = %v, want ErrHeadersSent", path, e.lastErr.Load())
		}
		s, err := st.Load(context.Background(), session.Token(strings.TrimPrefix(tok, "session=")))
		switch {
		case path == "/late-logout-flash":
			if !errors.Is(err, session.ErrNotFound) {
				t.Errorf("%s: the destroyed session: %v", path, err)
			}
		case err != nil || s.UserID() != "":
			t.Errorf("%s: the session after the refused call: %v, user %q; want it unchanged", path, err, s.UserID())
		}
	}
}

// Item 8: Destroy, then Put, in one request: a new session, whose cookie the middleware sends.
func TestSessionMiddlewareDestroyThenPut(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	e := newEdgeServer(t, st, session.Cookie{Insecure: true})
	_, _, in := e.do(t, "/login?user=u", e.start(t))
	_, _, c := e.do(t, "/logout-flash", "session="+in.Value)
	if c == nil || c.Value == "" || c.Value == in.Value || c.MaxAge < 0 {
		t.Fatalf("logout then flash: cookie %v; want a new session's", c)
	}
	if _, body, _ := e.do(t, "/flashes", "session="+c.Value); body != "signed out" {
		t.Errorf("the new session's flashes: %q", body)
	}
	if _, err := st.Load(context.Background(), session.Token(in.Value)); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("the signed-out token: %v", err)
	}
}

// Item 8: with several cookies of the session's name (a stale one for another path or domain may
// come first), the first that names a live session is used.
func TestSessionMiddlewareSeveralCookies(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	e := newEdgeServer(t, st, session.Cookie{Insecure: true})
	valid := e.start(t)
	other := e.start(t)
	unknown := "session=AAAA" + strings.Repeat("B", 43)
	for i, tc := range []struct {
		header string
		want   string // the session used: "valid", "other" or "new"
	}{
		{"session=junk; " + valid, "valid"},
		{unknown + "; " + valid, "valid"},
		{valid + "; " + other, "valid"},
		{other + "; " + valid, "other"},
		{"session=; " + valid, "valid"},
		{strings.Repeat(unknown+"; ", 3) + valid, "new"}, // at most 3 well-formed cookies are looked up
	} {
		mark := fmt.Sprint("case-", i)
		_, _, set := e.do(t, "/set?k=seen&v="+mark, tc.header)
		got := "none"
		switch {
		case set != nil && set.MaxAge >= 0:
			got = "new"
		case sessiontest.MustLoad(t, st, session.Token(strings.TrimPrefix(valid, "session="))).GetString("seen") == mark:
			got = "valid"
		case sessiontest.MustLoad(t, st, session.Token(strings.TrimPrefix(other, "session="))).GetString("seen") == mark:
			got = "other"
		}
		if got != tc.want {
			t.Errorf("Cookie: %.60q...: used %s, want %s", tc.header, got, tc.want)
		}
	}
}
