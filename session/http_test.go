package session_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// raceIterations is how many times each race is tried.
const raceIterations = 1000

// gates lets a test hold a request inside its handler, after the middleware loaded the session and
// before the handler changes it, to force an interleaving with another request.
type gates struct {
	mu sync.Mutex
	m  map[string]*gate
}

type gate struct{ loaded, proceed chan struct{} }

func (g *gates) add(id string) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	x := &gate{loaded: make(chan struct{}), proceed: make(chan struct{})}
	g.m[id] = x
	return x
}

func (g *gates) get(id string) *gate {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[id]
}

// sessionServer serves: /set?k=&v=[&gate=] puts an attribute; /logout[?gate=] destroys; /login?user= signs
// in; /rotate rotates; /get?k= prints an attribute; /nothing reads only.
func sessionServer(t *testing.T, st *session.Store, opts ...session.MiddlewareOption) (*httptest.Server, *gates) {
	g := &gates{m: map[string]*gate{}}
	mux := http.NewServeMux()
	sess := func(r *http.Request) *session.Session {
		s, ok := session.FromContext(r.Context())
		if !ok {
			panic("no session in context")
		}
		return s
	}
	mux.HandleFunc("/set", func(w http.ResponseWriter, r *http.Request) {
		s := sess(r)
		if id := r.URL.Query().Get("gate"); id != "" {
			x := g.get(id)
			x.loaded <- struct{}{}
			<-x.proceed
		}
		if err := s.Put(r.URL.Query().Get("k"), r.URL.Query().Get("v")); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/logout", func(w http.ResponseWriter, r *http.Request) {
		if id := r.URL.Query().Get("gate"); id != "" {
			x := g.get(id)
			x.loaded <- struct{}{}
			<-x.proceed
		}
		if err := st.Destroy(r.Context(), sess(r)); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/login", func(w http.ResponseWriter, r *http.Request) {
		if err := st.Login(r.Context(), sess(r), r.URL.Query().Get("user")); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/rotate", func(w http.ResponseWriter, r *http.Request) {
		if err := st.Rotate(r.Context(), sess(r)); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, sess(r).GetString(r.URL.Query().Get("k")))
	})
	mux.HandleFunc("/nothing", func(w http.ResponseWriter, r *http.Request) {
		sess(r)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(session.Middleware(st, opts...)(mux))
	t.Cleanup(srv.Close)
	return srv, g
}

// call makes a request with the given session cookie ("" for none) and returns the response and
// the token of any Set-Cookie.
func call(t *testing.T, srv *httptest.Server, path, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if token != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: token})
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Error(err)
		return nil, ""
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode >= 400 {
		t.Errorf("GET %s: %s", path, res.Status)
	}
	for _, c := range res.Cookies() {
		if c.Name == "session" {
			return res, c.Value
		}
	}
	return res, ""
}

// newHTTPSession makes a stored session through the middleware and returns its token.
func newHTTPSession(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	_, tok := call(t, srv, "/set?k=init&v=1", "")
	if tok == "" {
		t.Fatal("no session cookie for a new session")
	}
	return tok
}

// held starts a request that stops inside the handler, after the load; it returns once the load
// is done, and a function that lets the request finish and waits for it.
func held(t *testing.T, srv *httptest.Server, g *gates, id, path, token string) (finish func()) {
	x := g.add(id)
	done := make(chan struct{})
	go func() {
		defer close(done)
		call(t, srv, path+"&gate="+id, token)
	}()
	<-x.loaded
	return func() { close(x.proceed); <-done }
}

// The three races every session store in the research loses, each tried raceIterations times
// through real concurrent HTTP requests, with zero occurrences allowed.
func TestSessionRacesOverHTTP(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b *redistest.Backend) {
		ctx := context.Background()
		st, prefix := sessiontest.NewStore(t, b, session.WithMaxSize(1<<20))
		srv, g := sessionServer(t, st, session.WithCookie(session.Cookie{Insecure: true}))

		t.Run("lost update", func(t *testing.T) {
			lost := 0
			for i := range raceIterations {
				// Both attributes hold old values, which a request writing its whole copy back would
				// restore over the other request's change.
				tok := newHTTPSession(t, srv)
				call(t, srv, "/set?k=a&v=0", tok)
				call(t, srv, "/set?k=b&v=0", tok)
				// Both requests load the session before either saves.
				finishA := held(t, srv, g, fmt.Sprint("lu-a", i), "/set?k=a&v=A", tok)
				finishB := held(t, srv, g, fmt.Sprint("lu-b", i), "/set?k=b&v=B", tok)
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); finishA() }()
				go func() { defer wg.Done(); finishB() }()
				wg.Wait()
				s, err := st.Load(ctx, session.Token(tok))
				if err != nil {
					t.Fatal(err)
				}
				if s.GetString("a") != "A" || s.GetString("b") != "B" {
					lost++
				}
			}
			if lost > 0 {
				t.Errorf("lost update: %d of %d", lost, raceIterations)
			}
		})

		t.Run("logout undone", func(t *testing.T) {
			undone := 0
			for i := range raceIterations {
				tok := newHTTPSession(t, srv)
				finish := held(t, srv, g, fmt.Sprint("lo", i), "/set?k=a&v=late", tok)
				res, _ := call(t, srv, "/logout", tok)
				if res == nil {
					t.FailNow()
				}
				finish() // the in-flight request saves after the logout
				if _, err := st.Load(ctx, session.Token(tok)); !errors.Is(err, session.ErrNotFound) {
					undone++
				}
			}
			if undone > 0 {
				t.Errorf("logout undone: %d of %d", undone, raceIterations)
			}
		})

		t.Run("old token revived", func(t *testing.T) {
			revived := 0
			for i := range raceIterations {
				tok := newHTTPSession(t, srv)
				finish := held(t, srv, g, fmt.Sprint("rv", i), "/set?k=a&v=late", tok)
				path := "/rotate"
				if i%2 == 1 {
					path = fmt.Sprintf("/login?user=u%d", i%7) // a sign-in that moves slots
				}
				_, newTok := call(t, srv, path, tok)
				if newTok == "" || newTok == tok {
					t.Fatalf("%s sent no new token", path)
				}
				finish() // the in-flight request, holding the old token, saves after the rotation
				if _, err := st.Load(ctx, session.Token(tok)); !errors.Is(err, session.ErrNotFound) {
					revived++
				}
				if _, err := st.Load(ctx, session.Token(newTok)); err != nil {
					t.Fatalf("the rotated session is gone: %v", err)
				}
			}
			if revived > 0 {
				t.Errorf("old token revived: %d of %d", revived, raceIterations)
			}
		})
		redistest.AssertKeysExpire(t, b, prefix)
	})
}

func TestSessionMiddlewareCookies(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	srv, _ := sessionServer(t, st)

	// A request that stores nothing gets no cookie.
	res, tok := call(t, srv, "/nothing", "")
	if tok != "" || res.Header.Get("Set-Cookie") != "" {
		t.Errorf("a request that stored nothing got Set-Cookie %q", res.Header.Get("Set-Cookie"))
	}

	res, tok = call(t, srv, "/set?k=a&v=1", "")
	c := res.Cookies()[0]
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Expires.IsZero() {
		t.Errorf("cookie %+v: want Secure, HttpOnly, SameSite=Lax, Path=/, Expires", c)
	}
	if res.Header.Get("Vary") != "Cookie" || res.Header.Get("Cache-Control") != `no-cache="Set-Cookie"` {
		t.Errorf("headers with Set-Cookie: Vary %q, Cache-Control %q", res.Header.Get("Vary"), res.Header.Get("Cache-Control"))
	}
	// Reading, or changing attributes of, a stored session sends no cookie.
	for _, path := range []string{"/nothing", "/set?k=b&v=2"} {
		if res, again := call(t, srv, path, tok); again != "" || res.Header.Get("Set-Cookie") != "" {
			t.Errorf("%s on a stored session sent Set-Cookie", path)
		}
	}
	// A forged or unknown token is not adopted.
	forged := "AAAA" + strings.Repeat("B", 43)
	if _, got := call(t, srv, "/set?k=a&v=1", forged); got == "" || got == forged {
		t.Errorf("unknown token: new cookie %q, want a fresh token", got)
	}
	if res, got := call(t, srv, "/nothing", forged); got != "" || !strings.Contains(res.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("unknown token on a read: Set-Cookie %q, want the cookie cleared", res.Header.Get("Set-Cookie"))
	}
	// Logout clears the cookie.
	if res, _ := call(t, srv, "/logout", tok); !strings.Contains(res.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("logout: Set-Cookie %q, want the cookie cleared", res.Header.Get("Set-Cookie"))
	}

	// __Host- prefix.
	hsrv := httptest.NewServer(session.Middleware(st, session.WithCookie(session.Cookie{HostPrefix: true, Domain: "example.com", Path: "/app"}))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := session.FromContext(r.Context())
			s.Put("a", 1)
			// The wrapped writer unwraps for http.ResponseController.
			if err := http.NewResponseController(w).SetWriteDeadline(srvDeadline()); err != nil {
				t.Errorf("ResponseController through the middleware: %v", err)
			}
		})))
	defer hsrv.Close()
	hres, err := hsrv.Client().Get(hsrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	hres.Body.Close()
	set := hres.Header.Get("Set-Cookie")
	if !strings.HasPrefix(set, "__Host-session=") || !strings.Contains(set, "Path=/;") || strings.Contains(set, "Domain") || !strings.Contains(set, "Secure") {
		t.Errorf("__Host- cookie: %q", set)
	}
	if _, ok := session.FromContext(context.Background()); ok {
		t.Error("FromContext without the middleware reported a session")
	}
}

// With Redis unreachable, the middleware answers through the error handler, and nothing panics.
func TestSessionMiddlewareRedisDown(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a network listener")
	}
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DisableIdentity: true})
	defer down.Close()
	st, err := session.NewStore(down)
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sessionServer(t, st, session.WithLogger(slog.New(slog.DiscardHandler)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/get?k=a", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: "AAAA" + strings.Repeat("B", 43)})
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" {
		t.Errorf("load with Redis down: %s, Retry-After %q; want 503 with Retry-After from the default error handler", res.Status, res.Header.Get("Retry-After"))
	}
	// A new session's first save fails the same way.
	res, err = srv.Client().Get(srv.URL + "/set?k=a&v=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || strings.Contains(res.Header.Get("Set-Cookie"), "session=") {
		t.Errorf("save with Redis down: %s %q, Set-Cookie %q", res.Status, body, res.Header.Get("Set-Cookie"))
	}
}

func srvDeadline() (t time.Time) { return time.Now().Add(time.Minute) }
