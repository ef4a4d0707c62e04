package integration

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
)

// Every browser step gets browserStep, and the browser lives at most browserLife; the whole test
// takes a few seconds.
const (
	browserStep = 10 * time.Second
	browserLife = 50 * time.Second
)

// findChromium returns the browser to drive: GATEHOUSE_CHROMIUM, or chromium, chromium-browser or
// google-chrome on PATH.
func findChromium() string {
	if p := os.Getenv("GATEHOUSE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser starts a headless Chromium for the test, with a fresh user data directory, and
// kills it (and its children) when the test ends. Names ending in .test resolve to 127.0.0.1.
// Where no Chromium is installed and none can be (not root, or no apt-get), the test is skipped.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("browser tests need Chromium and Redis")
	}
	path := findChromium()
	if path == "" {
		if _, err := exec.LookPath("apt-get"); err == nil && os.Geteuid() == 0 {
			t.Fatal("no Chromium: run 'make chromium' (it installs Debian's chromium), or set GATEHOUSE_CHROMIUM")
		}
		t.Skip("SKIPPED: no Chromium, and none can be installed here (not root, or no apt-get): " +
			"the session checks in a real browser did not run; install chromium or set GATEHOUSE_CHROMIUM")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("host-resolver-rules", "MAP *.test 127.0.0.1"),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	// No UserDataDir option: chromedp makes a fresh directory, and when the browser exits it kills
	// any child process still using it and removes it.
	// The browser lives at most browserLife, whatever happens: its first action binds it to the
	// context it is given, so that context bounds it, and the steps have their own timeouts.
	life, stop := context.WithTimeout(context.Background(), browserLife)
	actx, acancel := chromedp.NewExecAllocator(life, opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		bcancel()
		acancel() // waits until the browser has exited and its directory is gone
		stop()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return bctx
}

// newTab opens a tab in a fresh browser context (its own cookie jar and cache), closed when the
// test ends.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first action opens the tab, bound to the context it is given: the tab's own.
	if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	return tab
}

// run runs browser actions with a timeout.
func run(t *testing.T, tab context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserStep)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// waitFor evaluates expr until it gives a non-empty string, across navigations, and returns it.
func waitFor(t *testing.T, tab context.Context, expr string) string {
	t.Helper()
	deadline := time.Now().Add(browserStep)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(tab, time.Second)
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		cancel()
		if err == nil && v != "" {
			return v
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("waiting for %s: %v", expr, last)
	return ""
}

// pageAt waits until the tab has loaded a page at path, and returns the text of its #who element.
func pageAt(t *testing.T, tab context.Context, path string) string {
	t.Helper()
	return waitFor(t, tab, fmt.Sprintf(`location.pathname === %q && document.readyState === "complete" && document.getElementById("who") ? document.getElementById("who").textContent : ""`, path))
}

// click clicks the element with the given id, as a user would, and waits until the browser has
// left the page (a document without the mark set here has replaced it).
func click(t *testing.T, tab context.Context, id string) {
	t.Helper()
	run(t, tab,
		chromedp.Evaluate[chromedp.Void](`document.documentElement.dataset.left = "1"`),
		chromedp.Click(chromedp.CSS("#"+id)))
	waitFor(t, tab, `document.documentElement.dataset.left ? "" : "left"`)
}

// jar returns the session cookie the browser holds for u, or nil.
func jar(t *testing.T, tab context.Context, u string) *network.Cookie {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserStep)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{u}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "session" {
			return c
		}
	}
	return nil
}

// browserApp is a small site with sign-in through a form: / has the form (or says who is signed
// in), POST /login signs in (password "pw") and redirects to /account, which shows who is signed
// in with forms to sign out (POST /logout) and rotate (POST /rotate). /account?cc=X sets
// Cache-Control X and, signed in, rotates the token on the page's own response.
func browserApp(st *session.Store) http.Handler {
	page := func(w http.ResponseWriter, who string, signedIn bool) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>app</title><p id="who">%s</p>`, html.EscapeString(who))
		if signedIn {
			fmt.Fprint(w, `<form method="post" action="/logout"><button id="logout">Sign out</button></form>`+
				`<form method="post" action="/rotate"><button id="rotate">Rotate</button></form>`)
		} else {
			fmt.Fprint(w, `<form method="post" action="/login"><input id="user" name="user">`+
				`<input id="password" name="password" type="password"><button id="signin">Sign in</button></form>`)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if u := s.UserID(); u != "" {
			page(w, "signed in as "+u, true)
			return
		}
		page(w, "signed out", false)
	})
	mux.HandleFunc("GET /account", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		u := s.UserID()
		if cc := r.URL.Query().Get("cc"); cc != "" {
			w.Header().Set("Cache-Control", cc)
			if u != "" {
				if err := st.Rotate(r.Context(), s); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
		}
		if u == "" {
			page(w, "signed out", false)
			return
		}
		page(w, "signed in as "+u, true)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if r.FormValue("password") != "pw" || r.FormValue("user") == "" {
			http.Error(w, "wrong password", http.StatusUnauthorized)
			return
		}
		if err := st.Login(r.Context(), s, r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/account", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if err := st.Destroy(r.Context(), s); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("POST /rotate", func(w http.ResponseWriter, r *http.Request) {
		s, _ := session.FromContext(r.Context())
		if err := st.Rotate(r.Context(), s); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/account", http.StatusSeeOther)
	})
	return mux
}

// The session cookie and the middleware in a real browser (Chromium through chromedp): sign-in
// through a form, HttpOnly, SameSite=Lax, sign-out, fixation, rotation, Back after sign-out,
// login CSRF from another site, and the warning for a Secure cookie on a plain-HTTP host.
func TestSessionInBrowser(t *testing.T) {
	browser := startBrowser(t)
	b := redistest.Get(t, redistest.Names()[0])
	st, _ := sessiontest.NewStore(t, b)
	ctx := context.Background()
	logs := &sessiontest.LogRecords{}
	app := httptest.NewServer(session.Middleware(st, session.WithLogger(logs.Logger()))(browserApp(st)))
	t.Cleanup(app.Close)
	port := app.URL[strings.LastIndex(app.URL, ":")+1:]
	// http://localhost is a secure context for Chromium: the Secure cookie is kept there.
	base := "http://localhost:" + port

	signIn := func(t *testing.T, tab context.Context, base, user string) {
		t.Helper()
		run(t, tab, chromedp.Navigate(base+"/"))
		if who := pageAt(t, tab, "/"); who != "signed out" {
			t.Fatalf("before sign-in: %q", who)
		}
		run(t, tab,
			chromedp.SendKeys(chromedp.CSS("#user"), user),
			chromedp.SendKeys(chromedp.CSS("#password"), "pw"))
		click(t, tab, "signin")
	}
	alive := func(tok string) bool {
		_, err := st.Load(ctx, session.Token(tok))
		if err != nil && !errors.Is(err, session.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	t.Run("sign-in, HttpOnly, SameSite=Lax, sign-out", func(t *testing.T) {
		tab := newTab(t, browser)
		signIn(t, tab, base, "alice")
		if who := pageAt(t, tab, "/account"); who != "signed in as alice" {
			t.Fatalf("after sign-in: %q", who)
		}
		c := jar(t, tab, base)
		if c == nil {
			t.Fatal("the browser holds no session cookie after sign-in")
		}
		if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteLax || c.Path != "/" || c.Session {
			t.Errorf("stored cookie: HttpOnly %v, Secure %v, SameSite %q, Path %q, session-only %v; want HttpOnly, Secure, Lax, /, persistent",
				c.HTTPOnly, c.Secure, c.SameSite, c.Path, c.Session)
		}
		// Scripts cannot read it.
		run(t, tab, chromedp.Evaluate[chromedp.Void](`document.cookie = "visible=1"`))
		seen := waitFor(t, tab, `"[" + document.cookie + "]"`)
		if strings.Contains(seen, "session=") || !strings.Contains(seen, "visible=1") {
			t.Errorf("document.cookie = %s: the session cookie must be invisible to scripts", seen)
		}
		if !alive(c.Value) {
			t.Fatal("the browser's token names no session")
		}
		click(t, tab, "logout")
		if who := pageAt(t, tab, "/"); who != "signed out" {
			t.Errorf("after sign-out: %q", who)
		}
		if c2 := jar(t, tab, base); c2 != nil {
			t.Errorf("after sign-out the browser still holds a session cookie")
		}
		if alive(c.Value) {
			t.Error("the signed-out token still names a session")
		}
	})

	t.Run("fixation: a planted cookie is not adopted", func(t *testing.T) {
		tab := newTab(t, browser)
		// The attacker's own live session, and an unknown token, planted in the victim's browser.
		s, err := st.New()
		if err != nil {
			t.Fatal(err)
		}
		s.Put("planted", true)
		if err := st.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		planted := string(s.Token())
		for _, value := range []string{"AAAA" + strings.Repeat("B", 43), planted} {
			yes := true
			if _, err := chromedp.Call(tab, network.SetCookie, network.SetCookieParams{
				Name: "session", Value: value, URL: base, Path: "/", HTTPOnly: &yes, Secure: &yes, SameSite: network.CookieSameSiteLax,
			}); err != nil {
				t.Fatal(err)
			}
			signIn(t, tab, base, "victim")
			if who := pageAt(t, tab, "/account"); who != "signed in as victim" {
				t.Fatalf("after sign-in: %q", who)
			}
			c := jar(t, tab, base)
			if c == nil || c.Value == value {
				t.Fatalf("after sign-in the browser holds %v, want a new token", c)
			}
			if !alive(c.Value) {
				t.Error("the new token names no session")
			}
			click(t, tab, "logout")
			pageAt(t, tab, "/")
		}
		if alive(planted) {
			t.Error("the planted token still names a session after the victim signed in with it")
		}
	})

	t.Run("rotation", func(t *testing.T) {
		tab := newTab(t, browser)
		signIn(t, tab, base, "rotor")
		pageAt(t, tab, "/account")
		before := jar(t, tab, base)
		click(t, tab, "rotate")
		if who := pageAt(t, tab, "/account"); who != "signed in as rotor" {
			t.Fatalf("after rotation: %q", who)
		}
		after := jar(t, tab, base)
		if before == nil || after == nil || after.Value == before.Value {
			t.Fatal("rotation did not change the browser's cookie")
		}
		if alive(before.Value) || !alive(after.Value) {
			t.Errorf("after rotation: old token alive %v, new token alive %v; want false, true", alive(before.Value), alive(after.Value))
		}
		run(t, tab, chromedp.Reload())
		if who := pageAt(t, tab, "/account"); who != "signed in as rotor" {
			t.Errorf("reload after rotation: %q", who)
		}
	})

	// Back after sign-out must not show the signed-in page: from the back/forward cache without a
	// request, or from the HTTP cache.
	for _, c := range []struct{ name, path string }{
		{"Back after sign-out, a page with no Cache-Control of its own", "/account"},
		{"Back after sign-out, a page the application marked no-store", "/account?cc=no-store"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab := newTab(t, browser)
			signIn(t, tab, base, "bob")
			pageAt(t, tab, "/account")
			run(t, tab, chromedp.Navigate(base+c.path))
			if who := pageAt(t, tab, "/account"); who != "signed in as bob" {
				t.Fatalf("%s: %q", c.path, who)
			}
			click(t, tab, "logout")
			pageAt(t, tab, "/")
			// Back after the evaluation has answered: a navigation that starts inside it can
			// destroy the page before its answer leaves ("Inspected target navigated or closed",
			// seen on a loaded machine). pageAt waits for the page Back shows.
			run(t, tab, chromedp.Evaluate[chromedp.Void](`setTimeout(() => history.back(), 0)`))
			if who := pageAt(t, tab, "/account"); who != "signed out" {
				t.Errorf("Back after sign-out shows %q", who)
			}
		})
	}

	t.Run("login CSRF: a cross-site form post to /login is refused", func(t *testing.T) {
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/login">`+
				`<input name="user" value="mallory"><input name="password" value="pw"></form>`+
				`<script>document.getElementById("f").submit()</script>`, base)
		}))
		t.Cleanup(evil.Close)
		evilURL := strings.Replace(evil.URL, "127.0.0.1", "evil.test", 1)

		tab := newTab(t, browser)
		signIn(t, tab, base, "carol")
		pageAt(t, tab, "/account")
		mine := jar(t, tab, base)
		run(t, tab, chromedp.Navigate(evilURL))
		status := waitFor(t, tab, fmt.Sprintf(`location.origin === %q && document.readyState === "complete" ? location.pathname + " " + document.body.innerText : ""`, base))
		if !strings.HasPrefix(status, "/login ") {
			t.Errorf("the cross-site post landed on %q, want the refusal at /login", status)
		}
		run(t, tab, chromedp.Navigate(base+"/account"))
		if who := pageAt(t, tab, "/account"); who != "signed in as carol" {
			t.Errorf("after the cross-site post the victim is %q", who)
		}
		if now := jar(t, tab, base); mine == nil || now == nil || now.Value != mine.Value {
			t.Error("the cross-site post replaced the victim's cookie")
		}
		if recs := logs.Find(t, "session: cross-origin request refused"); len(recs) == 0 {
			t.Error("the refusal was not logged")
		}
	})

	t.Run("Secure cookie on a plain-HTTP host other than localhost", func(t *testing.T) {
		tab := newTab(t, browser)
		var mu sync.Mutex
		var reasons []network.SetCookieBlockedReason
		lctx, lcancel := context.WithCancel(tab)
		defer lcancel()
		if err := chromedp.Listen(lctx, func(ev any) {
			if e, ok := ev.(*network.EventResponseReceivedExtraInfo); ok {
				mu.Lock()
				defer mu.Unlock()
				for _, bc := range e.BlockedCookies {
					if bc.Cookie != nil && bc.Cookie.Name == "session" {
						reasons = append(reasons, bc.BlockedReasons...)
					}
				}
			}
		}); err != nil {
			t.Fatal(err)
		}
		appTest := "http://app.test:" + port
		signIn(t, tab, appTest, "dave")
		// Login succeeded on the server, but the browser dropped the cookie: still signed out.
		if who := pageAt(t, tab, "/account"); who != "signed out" {
			t.Errorf("on %s after sign-in: %q; the browser was expected to drop the Secure cookie", appTest, who)
		}
		if c := jar(t, tab, appTest); c != nil {
			t.Errorf("the browser kept a Secure cookie from plain HTTP on %s", appTest)
		}
		mu.Lock()
		got := slices.Clone(reasons)
		mu.Unlock()
		if !slices.Contains(got, network.SetCookieBlockedReasonSecureOnly) {
			t.Errorf("blocked reasons %v, want SecureOnly", got)
		}
		recs := logs.Find(t, "session: a Secure session cookie was sent over plain HTTP")
		if len(recs) != 1 || recs[0]["host"] != "app.test" {
			t.Errorf("warnings %v, want one for host app.test", recs)
		}
	})
	logs.NoSecrets(t, "alice", "victim", "rotor", "bob", "carol", "mallory", "dave")
}
