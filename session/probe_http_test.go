package session_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
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

// A save refused before the response started is answered by the error handler alone: the
// handler's own headers (Content-Encoding, Cache-Control, ETag, Content-Type) do not go out with the
// error response, where they would mislabel it (a plain-text body declared gzip) or let a cache keep
// an error page (a 503 of a moment's outage served for 10 minutes): it is marked no-store.
func TestProbeErrorResponseDropsHandlerHeaders(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	h := probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("big", strings.Repeat("x", 20_000)) // over the 16 KiB cap: the save fails
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte{0x1f, 0x8b})
	}))
	outer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "outer") // set by a middleware in front: kept
		h.ServeHTTP(w, r)
	})
	rec := httptest.NewRecorder()
	outer.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	res := rec.Result()
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", res.StatusCode)
	}
	for _, h := range []string{"Content-Encoding", "ETag"} {
		if v := res.Header.Get(h); v != "" {
			t.Errorf("the error response carries the handler's %s: %q", h, v)
		}
	}
	if cc := res.Header.Values("Cache-Control"); len(cc) != 1 || cc[0] != "no-store" {
		t.Errorf("the error response's Cache-Control is %q, want no-store (not the handler's public)", cc)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("the error response's Content-Type is %q, want text/plain", ct)
	}
	if v := res.Header.Get("X-Request-Id"); v != "outer" {
		t.Errorf("X-Request-Id %q: a header set in front of the middleware was lost", v)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// probeMiddleware is the middleware over st with an insecure cookie named "session", logging
// nowhere, and opts.
func probeMiddleware(st *session.Store, opts ...session.MiddlewareOption) func(http.Handler) http.Handler {
	return session.Middleware(st, append([]session.MiddlewareOption{
		session.WithCookie(session.Cookie{Insecure: true}), session.WithLogger(discardLogger()),
	}, opts...)...)
}

// A Put into a new session after the response started cannot be kept (its cookie can no longer be
// sent): it fails with ErrHeadersSent, as after Destroy, instead of being dropped in silence.
func TestProbePutIntoNewSessionAfterResponseStarted(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	var putErr error
	h := probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		io.WriteString(w, "started")
		putErr = s.Put("cart", "book")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if len(rec.Result().Cookies()) != 0 {
		t.Fatalf("a cookie was sent: %v", rec.Result().Cookies())
	}
	if !errors.Is(putErr, session.ErrHeadersSent) {
		t.Errorf("Put into a new session after the response started: %v, want ErrHeadersSent (the value is lost)", putErr)
	}
}

// 101 Switching Protocols is the response's final status, not an informational one (net/http
// sends no headers after it): the session is saved and its cookie sent with it, and a Login after
// it fails with ErrHeadersSent instead of moving the session to a token the client never gets.
func TestProbeSwitchingProtocolsCommits(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	var loginErr error
	h := probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("k", "v")
		w.Header().Set("Upgrade", "probe")
		w.WriteHeader(http.StatusSwitchingProtocols)
		loginErr = st.Login(r.Context(), s, "late")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	res := rec.Result()
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", res.StatusCode)
	}
	if len(res.Cookies()) != 1 {
		t.Errorf("the 101 carries %d cookies, want the new session's", len(res.Cookies()))
	}
	if !errors.Is(loginErr, session.ErrHeadersSent) {
		t.Errorf("Login after WriteHeader(101): %v, want ErrHeadersSent", loginErr)
	}
}

// 103 Early Hints does not start the response: a Login after it still sends its cookie with the
// final status.
func TestProbeEarlyHintsDoNotCommit(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	loginErr := make(chan error, 1)
	h := probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		loginErr <- st.Login(r.Context(), s, "early")
		io.WriteString(w, "ok")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if err := <-loginErr; err != nil {
		t.Fatalf("Login after 103 Early Hints: %v", err)
	}
	cs := res.Cookies()
	if res.StatusCode != http.StatusOK || len(cs) != 1 {
		t.Fatalf("status %d, cookies %v", res.StatusCode, cs)
	}
	if s := sessiontest.MustLoad(t, st, session.Token(cs[0].Value)); s.UserID() != "early" {
		t.Errorf("the cookie's session is signed in as %q", s.UserID())
	}
}

// A connection taken over (Hijack) after the session's save failed is refused: the error handler
// has answered the request, and a handler going on (a WebSocket upgrade) would write its own
// response after that one, on a connection the client already read a 503 or 500 from.
func TestProbeHijackAfterFailedSave(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	hijacked := make(chan error, 1)
	h := probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("big", strings.Repeat("x", 20_000)) // over the cap: the save fails
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: probe\r\nConnection: Upgrade\r\n\r\n"))
			conn.Close()
		}
		hijacked <- err
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	if err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusInternalServerError {
			t.Errorf("status %d, want the error handler's 500", res.StatusCode)
		}
	}
	if err := <-hijacked; err == nil {
		t.Error("Hijack after the session's save failed and the error handler answered: the connection was handed over")
	}
}

// A handler that panics: the panic reaches the caller (net/http's recovery) as it was, and
// nothing the handler changed is saved: a request that failed half-way leaves the session as it
// was.
func TestProbeHandlerPanics(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	base := sessiontest.Stored(t, st, "k", "before")
	h := probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("k", "half-way")
		panic("boom")
	}))
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: string(base.Token())})
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the handler's panic", p)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	if got := sessiontest.MustLoad(t, st, base.Token()).GetString("k"); got != "before" {
		t.Errorf("after a panicking handler, k = %q, want it unchanged", got)
	}
}

// A cookie the middleware could never send as configured (a name that is not an HTTP token: net/http
// sends an empty Set-Cookie; a path or domain it alters; a __Host- or __Secure- name whose rules
// the attributes break, which browsers refuse) is a configuration error, said once in the
// log and answered by the error handler, not sessions silently never kept.
func TestProbeInvalidCookieConfiguration(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	for _, c := range []session.Cookie{
		{Name: "my session"},
		{Name: "__Host-sid", Domain: "example.com"}, {Name: "__host-sid", Path: "/app"},
		{Name: "__Host-sid", Insecure: true}, {Name: "__Secure-sid", Insecure: true},
	} {
		var logs sessiontest.LogRecords
		ran := false
		h := session.Middleware(st, session.WithCookie(c), session.WithLogger(logs.Logger()))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ran = true
			s, _ := session.FromContext(r.Context())
			s.Put("k", "v")
		}))
		logs.One(t, "session: invalid cookie")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://example.com/", nil))
		if res := rec.Result(); ran || res.StatusCode != http.StatusInternalServerError || len(res.Header.Values("Set-Cookie")) != 0 {
			t.Errorf("%+v: handler ran %v, status %d, Set-Cookie %q; want the error handler's 500", c, ran, res.StatusCode, res.Header.Values("Set-Cookie"))
		}
	}
	// A domain that is no cookie domain is dropped and a path loses the bytes it cannot hold, as
	// net/http would do at every response: logged once, and the cookie works for this host (a
	// domain with a port or an underscore, such as a container's name, used to work so).
	for _, c := range []struct {
		cookie       session.Cookie
		domain, path string
	}{
		{session.Cookie{Domain: "bad domain", Path: "/app"}, "", "/app"},
		{session.Cookie{Domain: "redis_app:8080"}, "", "/"},
		{session.Cookie{Domain: "example.com", Path: "/a;b\x01"}, "example.com", "/ab"},
		{session.Cookie{SameSite: http.SameSiteNoneMode, Insecure: true}, "", "/"}, // said, not changed
	} {
		var logs sessiontest.LogRecords
		h := session.Middleware(st, session.WithCookie(c.cookie), session.WithLogger(logs.Logger()))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := session.FromContext(r.Context())
			s.Put("k", "v")
		}))
		logs.One(t, "session: invalid cookie attribute dropped")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://example.com/", nil))
		res := rec.Result()
		cookies := res.Cookies()
		if res.StatusCode != http.StatusOK || len(cookies) != 1 || cookies[0].Domain != c.domain || cookies[0].Path != c.path {
			t.Errorf("%+v: status %d, cookies %v; want 200 and a cookie with Domain %q, Path %q", c.cookie, res.StatusCode, cookies, c.domain, c.path)
		}
		if recs := logs.Find(t, "session: invalid cookie attribute dropped"); len(recs) != 1 {
			t.Errorf("%+v: %d records after a request; want the one of the middleware's making", c.cookie, len(recs))
		}
	}
	// Valid ones are untouched: a domain, a path, __Host- with a domain it drops.
	for _, c := range []session.Cookie{
		{Name: "sid", Domain: "example.com", Path: "/app"}, {HostPrefix: true, Domain: "ignored.example", Insecure: true},
		{Name: "__Host-sid"}, {Name: "__Secure-sid", Domain: "example.com", Path: "/app"},
	} {
		var logs sessiontest.LogRecords
		session.Middleware(st, session.WithCookie(c), session.WithLogger(logs.Logger()))
		if recs := logs.Find(t, "session: invalid cookie"); len(recs) != 0 {
			t.Errorf("%+v: %v", c, recs)
		}
	}
}

// An error handler of the application's own that writes its body without setting Content-Length
// or Content-Type: the handler's (for the body it was about to send) do not describe it.
func TestProbeOwnErrorHandlerAfterHandlerHeaders(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	h := probeMiddleware(st,
		session.WithErrorHandler(func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, "<p>refused</p>")
		}))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("big", strings.Repeat("x", 20_000))
		w.Header().Set("Content-Length", "2")
		w.Header().Set("Content-Type", "application/octet-stream")
		io.WriteString(w, "ok")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "<p>refused</p>" {
		t.Errorf("body %q, want the error handler's whole", body)
	}
	if ct := res.Header.Get("Content-Type"); ct == "application/octet-stream" {
		t.Errorf("Content-Type %q: the handler's", ct)
	}
}

// The cookie's lifetime does not depend on the client's clock: besides Expires (a date, which a
// client whose clock runs ahead takes as past, dropping the cookie at once), it carries Max-Age, the
// seconds from the server's now to the deadline, which browsers prefer.
func TestProbeCookieMaxAgeFollowsDeadline(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	var now atomic.Int64
	now.Store(time.Now().UnixMilli())
	st, _ := sessiontest.NewStore(t, b, session.ClockAt(&now), session.WithLifetime(2*time.Hour))
	h := probeMiddleware(st)(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s, _ := session.FromContext(r.Context())
			switch r.URL.Path {
			case "/remember":
				if err := st.Login(r.Context(), s, "u", session.RememberMe(0, 30*24*time.Hour)); err != nil {
					t.Error(err)
				}
			case "/browser":
				if err := st.Login(r.Context(), s, "u", session.UntilBrowserCloses()); err != nil {
					t.Error(err)
				}
			default:
				s.Put("k", "v")
			}
		}))
	for path, want := range map[string]int{"/": 2 * 3600, "/remember": 30 * 24 * 3600, "/browser": 0} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		cs := rec.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("%s: cookies %v", path, cs)
		}
		if cs[0].MaxAge != want {
			t.Errorf("%s: Max-Age %d, want %d (Set-Cookie %q)", path, cs[0].MaxAge, want, rec.Result().Header.Get("Set-Cookie"))
		}
		if (want == 0) != cs[0].Expires.IsZero() {
			t.Errorf("%s: Expires %v", path, cs[0].Expires)
		}
	}
}

// unwrapOnly is a ResponseWriter wrapper of the kind logging middleware in front adds since Go
// 1.20: it implements nothing but Unwrap, for http.ResponseController.
type unwrapOnly struct{ http.ResponseWriter }

func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// Flushing through the middleware reaches the connection when the ResponseWriter it was given
// flushes only through Unwrap (a wrapper in front): a stream (server-sent events) is not held back.
func TestProbeFlushThroughUnwrapOnlyWriter(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	var flushErr error
	h := probeMiddleware(st)(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "data: 1\n\n")
			flushErr = http.NewResponseController(w).Flush()
		}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(unwrapOnly{rec}, httptest.NewRequest(http.MethodGet, "/", nil))
	if flushErr != nil || !rec.Flushed {
		t.Errorf("Flush: %v, flushed %v: the stream was not flushed", flushErr, rec.Flushed)
	}
}

// gzipInFront is a compression middleware that, like gorilla/handlers' CompressHandler, sets
// Content-Encoding before it calls next and encodes everything written through it.
func gzipInFront(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Language", "fr")
		zw := gzip.NewWriter(w)
		defer zw.Close()
		next.ServeHTTP(gzipWriter{ResponseWriter: w, zw: zw}, r)
	})
}

type gzipWriter struct {
	http.ResponseWriter
	zw *gzip.Writer
}

func (g gzipWriter) Write(b []byte) (int, error) { return g.zw.Write(b) }

// The error answer to a refused save drops the headers the handler set, not those a middleware
// in front set before it: a compressor in front encodes the error handler's body too, so its
// Content-Encoding must stay (without it the client got gzip bytes as text).
func TestProbeErrorResponseKeepsFrontHeaders(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	h := gzipInFront(probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("big", strings.Repeat("x", 20_000)) // over the 16 KiB cap: the save fails
		w.Header().Set("Content-Language", "de")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "ok")
	})))
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport does not decode then
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", res.StatusCode)
	}
	if ce := res.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding %q on a gzip body (% x...), want the front middleware's gzip", ce, raw[:min(len(raw), 4)])
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(zr)
	if !strings.Contains(string(body), "Internal Server Error") {
		t.Errorf("body %q, want the error handler's", body)
	}
	if cl := res.Header.Get("Content-Language"); cl != "fr" {
		t.Errorf("Content-Language %q, want the front middleware's fr (not the handler's de)", cl)
	}
	if et := res.Header.Get("ETag"); et != "" {
		t.Errorf("ETag %q: the handler's", et)
	}
}

// A lifetime meant as "forever" (the largest Duration) gives the cookie a Max-Age of about 292
// years, as its Expires, not one second: the rounding up must not overflow the Duration.
func TestProbeCookieMaxAgeOfLongestLifetime(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b, session.WithLifetime(time.Duration(math.MaxInt64)))
	h := probeMiddleware(st)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("k", "v")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies %v (status %d)", cs, rec.Code)
	}
	const years200 = 200 * 365 * 24 * 3600
	if cs[0].MaxAge < min(years200, math.MaxInt32) {
		t.Errorf("Max-Age %d s with Expires %v: the cookie ends long before the session", cs[0].MaxAge, cs[0].Expires)
	}
}
