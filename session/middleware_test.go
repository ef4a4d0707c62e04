package session_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
)

// mwServer serves, through the session middleware: /login (user= in the query or form) signs in;
// /logout destroys; /set?k=&v= puts; /get?k= prints; /read reads nothing; /late writes the
// response, runs hook, then puts k=v. Any request may carry cc= and vary=, set as Cache-Control
// and Vary before anything is written.
func mwServer(t *testing.T, st *session.Store, hook func(), opts ...session.MiddlewareOption) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := session.FromContext(r.Context())
		if !ok {
			http.Error(w, "no session", http.StatusInternalServerError)
			return
		}
		q := r.URL.Query()
		if cc := q.Get("cc"); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		if v := q.Get("vary"); v != "" {
			w.Header().Set("Vary", v)
		}
		var err error
		switch r.URL.Path {
		case "/login":
			err = st.Login(r.Context(), s, r.FormValue("user"))
		case "/logout":
			err = st.Destroy(r.Context(), s)
		case "/set":
			err = s.Put(q.Get("k"), q.Get("v"))
		case "/get":
			io.WriteString(w, s.GetString(q.Get("k")))
		case "/read":
			w.WriteHeader(http.StatusNoContent)
		case "/late":
			io.WriteString(w, "started")
			http.NewResponseController(w).Flush()
			hook()
			err = s.Put(q.Get("k"), q.Get("v"))
		default:
			http.NotFound(w, r)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	srv := httptest.NewServer(session.Middleware(st, opts...)(h))
	t.Cleanup(srv.Close)
	return srv
}

// request is one request to srv: method, path, the session token ("" for none), and headers
// as name/value pairs ("Host" sets the request's host).
func request(t *testing.T, srv *httptest.Server, method, path, token string, headers ...string) (*http.Response, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.AddCookie(&http.Cookie{Name: "session", Value: token})
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	tok := ""
	for _, c := range res.Cookies() {
		if c.Name == "session" {
			tok = c.Value
		}
	}
	return res, string(body), tok
}

// unavailableStore returns a store on a private server through a client with short timeouts, an
// admin client for that server, and the server.
func unavailableStore(t *testing.T, opts ...session.Option) (*session.Store, *redis.Client, *redistest.Server) {
	t.Helper()
	srv, admin := redistest.Private(t)
	const d = 300 * time.Millisecond
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, MaxRetries: -1,
		DialTimeout: d, ReadTimeout: d, WriteTimeout: d, PoolTimeout: d})
	t.Cleanup(func() { rdb.Close() })
	st, err := session.NewStore(rdb, append([]session.Option{session.WithKeyPrefix(redistest.Prefix(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return st, admin, srv
}

// pauseWrites stalls every script call on the server (CLIENT PAUSE WRITE) until unpause; admin
// commands still run.
func pauseWrites(t *testing.T, admin *redis.Client) (unpause func()) {
	t.Helper()
	ctx := context.Background()
	if err := admin.Do(ctx, "CLIENT", "PAUSE", 60000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unpause = func() {
		once.Do(func() {
			if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(unpause)
	return unpause
}

// A stalled or stopped Redis gets 503 with Retry-After, logged, with nothing secret in the log;
// the session is intact once Redis answers again.
func TestSessionMiddlewareRedisUnavailable(t *testing.T) {
	st, admin, redisSrv := unavailableStore(t, session.WithHashedKeyAttribute([]byte("log salt")))
	logs := &sessiontest.LogRecords{}
	// Every failure logged: this test reads each record (TestSessionMiddlewareFailureLogBounded
	// checks the bound).
	srv := mwServer(t, st, nil, session.WithLogger(logs.Logger()), session.WithCookie(session.Cookie{Insecure: true}),
		session.WithFailureLogInterval(0))

	const user, secret = "user-7731@example.org", "secret-attribute-value"
	_, _, tok := request(t, srv, http.MethodGet, "/login?user="+url.QueryEscape(user), "")
	if tok == "" {
		t.Fatal("no cookie after sign-in")
	}
	request(t, srv, http.MethodGet, "/set?k=s&v="+secret, tok)
	s, err := st.Load(context.Background(), session.Token(tok))
	if err != nil {
		t.Fatal(err)
	}
	key := string(s.Key())

	unpause := pauseWrites(t, admin)
	unavailable := func(what, path, token string) {
		t.Helper()
		res, _, newTok := request(t, srv, http.MethodGet, path, token)
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") != "1" {
			t.Errorf("%s: %s, Retry-After %q; want 503 with Retry-After: 1", what, res.Status, res.Header.Get("Retry-After"))
		}
		if newTok != "" {
			t.Errorf("%s: Set-Cookie on a failed request", what)
		}
	}
	unavailable("load from a stalled Redis", "/get?k=s", tok)
	unavailable("first save of a new session on a stalled Redis", "/set?k=a&v=1", "")
	load := logs.One(t, "session: load failed")
	save := logs.One(t, "session: save failed")
	for _, rec := range []map[string]any{load, save} {
		if rec["level"] != "ERROR" || rec["unavailable"] != true || rec["method"] != "GET" {
			t.Errorf("log record %v: want level ERROR, unavailable true, method GET", rec)
		}
		if e, _ := rec["error"].(string); !strings.Contains(e, "timeout") {
			t.Errorf("log record %v: the error does not say it timed out", rec)
		}
	}
	if h, _ := save["key_hash"].(string); len(h) != 16 {
		t.Errorf("save failure: key_hash %q, want the key's 16-character salted hash", save["key_hash"])
	}

	// Redis answers again: nothing was lost.
	unpause()
	if res, body, _ := request(t, srv, http.MethodGet, "/get?k=s", tok); res.StatusCode != http.StatusOK || body != secret {
		t.Errorf("after the stall: %s %q, want 200 %q", res.Status, body, secret)
	}

	// A stopped server: connection refused.
	redisSrv.Stop()
	unavailable("load from a stopped Redis", "/get?k=s", tok)
	if recs := logs.Find(t, "session: load failed"); len(recs) != 2 || recs[1]["unavailable"] != true {
		t.Errorf("load failures logged: %v, want a second, unavailable", recs)
	}
	logs.NoSecrets(t, tok, secret, user, key)
}

// While Redis is down, its failures are logged once per interval, not once per request: 20
// failing requests (loads and first saves) within an interval of an hour make one record, while
// other failures (an oversized session, refused before Redis is asked) are logged every time;
// without an interval, every failure is.
func TestSessionMiddlewareFailureLogBounded(t *testing.T) {
	st, _, redisSrv := unavailableStore(t, session.WithMaxSize(session.MinMaxSize))
	redisSrv.Stop()
	const token = "aaaaBBBBccccDDDDeeeeFFFFggggHHHHiiiiJJJJkkkkLLL" // well-formed, so Redis is asked
	big := strings.Repeat("v", 2*session.MinMaxSize)
	for _, c := range []struct {
		interval time.Duration
		want     int
	}{{time.Hour, 1}, {0, 20}} {
		logs := &sessiontest.LogRecords{}
		srv := mwServer(t, st, nil, session.WithLogger(logs.Logger()), session.WithFailureLogInterval(c.interval))
		for i := range 20 {
			path, cookie := "/get?k=a", token
			if i%2 == 1 {
				path, cookie = "/set?k=a&v=1", "" // a new session's first save
			}
			if res, _, _ := request(t, srv, http.MethodGet, path, cookie); res.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("interval %v, request %d: %s, want 503", c.interval, i, res.Status)
			}
			if i%5 == 0 {
				if res, _, _ := request(t, srv, http.MethodGet, "/set?k=a&v="+big, ""); res.StatusCode != http.StatusInternalServerError {
					t.Fatalf("interval %v, oversized: %s, want 500", c.interval, res.Status)
				}
			}
		}
		unavailable, other := 0, 0
		for _, rec := range append(logs.Find(t, "session: load failed"), logs.Find(t, "session: save failed")...) {
			if rec["unavailable"] == true {
				unavailable++
			} else {
				other++
			}
		}
		if unavailable != c.want || other != 4 {
			t.Errorf("interval %v: 20 failures of Redis made %d records (want %d), 4 oversized sessions %d (want 4)",
				c.interval, unavailable, c.want, other)
		}
	}
}

// Other failures keep 500, without Retry-After, and are logged as such.
func TestSessionMiddlewareOtherErrors(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b, session.WithMaxSize(session.MinMaxSize))
	logs := &sessiontest.LogRecords{}
	srv := mwServer(t, st, nil, session.WithLogger(logs.Logger()))
	big := strings.Repeat("v", 2*session.MinMaxSize)
	res, _, tok := request(t, srv, http.MethodGet, "/set?k=a&v="+big, "")
	if res.StatusCode != http.StatusInternalServerError || res.Header.Get("Retry-After") != "" || tok != "" {
		t.Errorf("oversized session: %s, Retry-After %q, cookie %v; want 500, none, none", res.Status, res.Header.Get("Retry-After"), tok != "")
	}
	rec := logs.One(t, "session: save failed")
	if rec["level"] != "ERROR" || rec["unavailable"] != false || !strings.Contains(rec["error"].(string), "too large") {
		t.Errorf("log record %v: want ERROR, unavailable false, too large", rec)
	}
	logs.NoSecrets(t, big)
}

// Errors no response can carry are logged: a save after the response started, a corrupt record.
// A request the client abandoned is logged at Debug only.
func TestSessionMiddlewareLogsWithoutResponse(t *testing.T) {
	st, admin, _ := unavailableStore(t, session.WithHashedKeyAttribute([]byte("log salt")))
	logs := &sessiontest.LogRecords{}
	var hook func()
	srv := mwServer(t, st, func() { hook() }, session.WithLogger(logs.Logger()))
	hook = func() {}
	_, _, tok := request(t, srv, http.MethodGet, "/set?k=a&v=1", "")

	// The handler has sent its response when Redis stalls; its late change cannot be saved.
	var unpause func()
	hook = func() { unpause = pauseWrites(t, admin) }
	if res, body, _ := request(t, srv, http.MethodGet, "/late?k=b&v=late-secret", tok); res.StatusCode != http.StatusOK || body != "started" {
		t.Fatalf("late: %s %q", res.Status, body)
	}
	rec := logs.One(t, "session: save after the response started failed")
	if rec["level"] != "ERROR" || rec["unavailable"] != true {
		t.Errorf("late save: %v, want ERROR, unavailable", rec)
	}
	unpause()

	// A corrupt record: a new session, and a warning.
	s, err := st.Load(context.Background(), session.Token(tok))
	if err != nil {
		t.Fatal(err)
	}
	admin.HDel(context.Background(), string(s.Key()), "_d")
	res, _, newTok := request(t, srv, http.MethodGet, "/set?k=a&v=2", tok)
	if res.StatusCode != http.StatusOK || newTok == "" || newTok == tok {
		t.Errorf("corrupt record: %s, new token %v; want 200 and a new session", res.Status, newTok != "" && newTok != tok)
	}
	rec = logs.One(t, "session: corrupt record replaced")
	if rec["level"] != "WARN" || rec["key_hash"] == nil {
		t.Errorf("corrupt record: %v, want WARN with key_hash", rec)
	}

	// The client went away before the load.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest(http.MethodGet, "/get?k=a", nil).WithContext(ctx)
	req.AddCookie(&http.Cookie{Name: "session", Value: newTok})
	session.Middleware(st, session.WithLogger(logs.Logger()))(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), req)
	if rec := logs.One(t, "session: load failed"); rec["level"] != "DEBUG" {
		t.Errorf("abandoned request: %v, want DEBUG", rec)
	}
	logs.NoSecrets(t, tok, newTok, "late-secret", string(s.Key()))
}

// Without WithLogger, records go to slog.Default() as it is when they are written.
func TestSessionMiddlewareDefaultLogger(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b, session.WithMaxSize(session.MinMaxSize))
	srv := mwServer(t, st, nil)
	logs := &sessiontest.LogRecords{}
	prev := slog.Default()
	slog.SetDefault(logs.Logger())
	t.Cleanup(func() { slog.SetDefault(prev) })
	request(t, srv, http.MethodGet, "/set?k=a&v="+strings.Repeat("v", 2*session.MinMaxSize), "")
	logs.One(t, "session: save failed")
}

// The application's Cache-Control is kept and never weakened when the cookie is set or cleared;
// signed-in responses without one get "private, no-store".
func TestSessionMiddlewareCacheControl(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	srv := mwServer(t, st, nil)
	cc := func(res *http.Response) string { return strings.Join(res.Header.Values("Cache-Control"), ", ") }

	// A response that sets the cookie of a new, anonymous session.
	for _, c := range []struct{ app, want string }{
		{"", `no-cache="Set-Cookie"`},
		{"no-store", "no-store"},
		{"private, no-store, max-age=0", "private, no-store, max-age=0"},
		{"No-Cache", "No-Cache"},
		{"private, max-age=60", `private, max-age=60, no-cache="Set-Cookie"`},
		{"public, max-age=600", `public, max-age=600, no-cache="Set-Cookie"`},
		{`no-cache="Set-Cookie2", private`, `no-cache="Set-Cookie2, Set-Cookie", private`},
		{`no-cache="set-cookie"`, `no-cache="set-cookie"`},
		{`no-cache="X-A, Set-Cookie2", max-age=5`, `no-cache="X-A, Set-Cookie2, Set-Cookie", max-age=5`},
		{`no-cache=X-A,, private`, `no-cache="X-A, Set-Cookie", private`},
	} {
		res, _, tok := request(t, srv, http.MethodGet, "/set?k=a&v=1&cc="+url.QueryEscape(c.app), "")
		if tok == "" {
			t.Fatal("no cookie for a new session")
		}
		if got := cc(res); got != c.want {
			t.Errorf("application's Cache-Control %q with Set-Cookie: got %q, want %q", c.app, got, c.want)
		}
	}
	// Vary: Cookie once.
	res, _, _ := request(t, srv, http.MethodGet, "/set?k=a&v=1&vary=Accept-Encoding,+Cookie", "")
	if v := res.Header.Values("Vary"); len(v) != 1 || v[0] != "Accept-Encoding, Cookie" {
		t.Errorf("Vary %q, want the application's, unchanged", v)
	}

	// Signed in.
	res, _, tok := request(t, srv, http.MethodPost, "/login?user=u1", "")
	if got := cc(res); got != "private, no-store" {
		t.Errorf("sign-in response: Cache-Control %q, want private, no-store", got)
	}
	for _, c := range []struct{ path, want string }{
		{"/read", "private, no-store"},
		{"/get?k=a", "private, no-store"},
		{"/read?cc=public,+max-age=3600", "public, max-age=3600"}, // the application's own choice
		{"/read?cc=private,+max-age=60", "private, max-age=60"},
	} {
		if res, _, _ := request(t, srv, http.MethodGet, c.path, tok); cc(res) != c.want {
			t.Errorf("signed in, %s: Cache-Control %q, want %q", c.path, cc(res), c.want)
		}
	}
	// Signed out: the cookie is cleared, no longer a signed-in response.
	if res, _, _ := request(t, srv, http.MethodPost, "/logout", tok); cc(res) != `no-cache="Set-Cookie"` {
		t.Errorf("sign-out: Cache-Control %q", cc(res))
	}
	// Anonymous reads carry nothing.
	_, _, anon := request(t, srv, http.MethodGet, "/set?k=a&v=1", "")
	if res, _, _ := request(t, srv, http.MethodGet, "/read", anon); cc(res) != "" {
		t.Errorf("anonymous read: Cache-Control %q, want none", cc(res))
	}

	// Turned off.
	off := mwServer(t, st, nil, session.WithSignedInCacheControl(""))
	_, _, tok = request(t, off, http.MethodPost, "/login?user=u2", "")
	if res, _, _ := request(t, off, http.MethodGet, "/read", tok); cc(res) != "" {
		t.Errorf("WithSignedInCacheControl(\"\"): signed-in read has Cache-Control %q", cc(res))
	}
	// Another value.
	other := mwServer(t, st, nil, session.WithSignedInCacheControl("private, no-cache"))
	res, _, tok = request(t, other, http.MethodPost, "/login?user=u3", "")
	if got := cc(res); got != `private, no-cache` {
		t.Errorf("WithSignedInCacheControl(private, no-cache), sign-in: %q", got)
	}
	if res, _, _ := request(t, other, http.MethodGet, "/read", tok); cc(res) != "private, no-cache" {
		t.Errorf("WithSignedInCacheControl(private, no-cache), read: %q", cc(res))
	}
}

// Cross-origin requests with unsafe methods are refused before the session is loaded; safe
// methods, same-origin requests, non-browser clients and trusted origins pass.
func TestSessionMiddlewareCrossOrigin(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	ctx := context.Background()
	st, _ := sessiontest.NewStore(t, b)
	logs := &sessiontest.LogRecords{}
	srv := mwServer(t, st, nil, session.WithLogger(logs.Logger()))

	signedIn := func(user string) int {
		t.Helper()
		list, err := st.ListByUser(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}
	for _, c := range []struct {
		name    string
		method  string
		headers []string
		refused bool
	}{
		{"cross-site form post (login CSRF)", http.MethodPost, []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}, true},
		{"same-site post from another subdomain", http.MethodPost, []string{"Sec-Fetch-Site", "same-site", "Origin", "http://sub.127.0.0.1"}, true},
		{"old browser, foreign Origin", http.MethodPost, []string{"Origin", "http://evil.example"}, true},
		{"cross-site PUT", http.MethodPut, []string{"Sec-Fetch-Site", "cross-site"}, true},
		{"cross-site GET", http.MethodGet, []string{"Sec-Fetch-Site", "cross-site"}, false},
		{"same-origin post", http.MethodPost, []string{"Sec-Fetch-Site", "same-origin"}, false},
		{"typed address", http.MethodPost, []string{"Sec-Fetch-Site", "none"}, false},
		{"not a browser", http.MethodPost, nil, false},
	} {
		user := "csrf-" + strings.ReplaceAll(c.name, " ", "-")
		res, _, tok := request(t, srv, c.method, "/login?user="+url.QueryEscape(user), "", c.headers...)
		if c.refused {
			if res.StatusCode != http.StatusForbidden || tok != "" || signedIn(user) != 0 {
				t.Errorf("%s: %s, cookie %v, %d sessions; want 403, no cookie, no session", c.name, res.Status, tok != "", signedIn(user))
			}
		} else if res.StatusCode != http.StatusOK || tok == "" || signedIn(user) != 1 {
			t.Errorf("%s: %s, cookie %v, %d sessions; want 200 and signed in", c.name, res.Status, tok != "", signedIn(user))
		}
	}
	if recs := logs.Find(t, "session: cross-origin request refused"); len(recs) != 4 || recs[0]["level"] != "INFO" {
		t.Errorf("refusals logged: %v, want 4 at INFO", recs)
	}

	// A trusted origin, through the standard library's own type.
	cop := http.NewCrossOriginProtection()
	if err := cop.AddTrustedOrigin("https://front.example"); err != nil {
		t.Fatal(err)
	}
	trusted := mwServer(t, st, nil, session.WithCrossOriginProtection(cop))
	if res, _, _ := request(t, trusted, http.MethodPost, "/login?user=trusted", "", "Sec-Fetch-Site", "cross-site", "Origin", "https://front.example"); res.StatusCode != http.StatusOK {
		t.Errorf("trusted origin: %s", res.Status)
	}
	if res, _, _ := request(t, trusted, http.MethodPost, "/login?user=untrusted", "", "Sec-Fetch-Site", "cross-site", "Origin", "https://other.example"); res.StatusCode != http.StatusForbidden {
		t.Errorf("untrusted origin next to a trusted one: %s", res.Status)
	}
	// Turned off.
	off := mwServer(t, st, nil, session.WithCrossOriginProtection(nil))
	if res, _, _ := request(t, off, http.MethodPost, "/login?user=off", "", "Sec-Fetch-Site", "cross-site"); res.StatusCode != http.StatusOK {
		t.Errorf("WithCrossOriginProtection(nil): %s", res.Status)
	}
}

// A Secure cookie sent over plain HTTP to a host where browsers drop it is logged, once.
func TestSessionMiddlewareSecureCookieOnPlainHTTP(t *testing.T) {
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	const warning = "session: a Secure session cookie was sent over plain HTTP"

	for _, c := range []struct {
		name    string
		headers []string
		warns   bool
	}{
		{"LAN address", []string{"Host", "192.168.1.20:8080"}, true},
		{"container name", []string{"Host", "app"}, true},
		{"name with a trailing dot", []string{"Host", "app.test."}, true},
		{"IPv6 LAN address", []string{"Host", "[fd00::1]:8080"}, true},
		{"proxy says http", []string{"Host", "app.test", "X-Forwarded-Proto", "http"}, true},
		{"127.0.0.1", nil, false},
		{"localhost", []string{"Host", "localhost:8080"}, false},
		{"a .localhost name", []string{"Host", "app.localhost"}, false},
		{"another loopback address", []string{"Host", "127.0.0.2"}, false},
		{"IPv6 loopback", []string{"Host", "[::1]:8080"}, false},
		{"behind a TLS proxy", []string{"Host", "app.test", "X-Forwarded-Proto", "https"}, false},
		{"behind a TLS proxy, RFC 7239", []string{"Host", "app.test", "Forwarded", `for=192.0.2.1;proto=https;host=app.test`}, false},
	} {
		logs := &sessiontest.LogRecords{}
		srv := mwServer(t, st, nil, session.WithLogger(logs.Logger()))
		for range 2 {
			if _, _, tok := request(t, srv, http.MethodGet, "/set?k=a&v=1", "", c.headers...); tok == "" {
				t.Fatalf("%s: no cookie", c.name)
			}
		}
		recs := logs.Find(t, warning)
		switch {
		case c.warns && (len(recs) != 1 || recs[0]["level"] != "WARN"):
			t.Errorf("%s: %d warnings %v, want 1 at WARN", c.name, len(recs), recs)
		case !c.warns && len(recs) != 0:
			t.Errorf("%s: warned %v", c.name, recs)
		}
	}

	// Cookie.Insecure, and HTTPS itself, give no warning.
	logs := &sessiontest.LogRecords{}
	srv := mwServer(t, st, nil, session.WithLogger(logs.Logger()), session.WithCookie(session.Cookie{Insecure: true}))
	request(t, srv, http.MethodGet, "/set?k=a&v=1", "", "Host", "app")
	tls := httptest.NewTLSServer(session.Middleware(st, session.WithLogger(logs.Logger()))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		s.Put("a", 1)
	})))
	defer tls.Close()
	req, _ := http.NewRequest(http.MethodGet, tls.URL, nil)
	req.Host = "app.test"
	res, err := tls.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if len(res.Cookies()) == 0 {
		t.Fatal("HTTPS: no cookie")
	}
	if recs := logs.Find(t, warning); len(recs) != 0 {
		t.Errorf("Insecure cookie or HTTPS: warned %v", recs)
	}
}
