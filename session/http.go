package session

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/faillog"
)

// Cookie configures the session cookie. The zero value is the safe default: a cookie named
// "session", Path "/", Secure, HttpOnly, SameSite=Lax, expiring at the session's absolute deadline.
type Cookie struct {
	Name     string        // default "session"
	Path     string        // default "/"
	Domain   string        // default none: the cookie goes only to the host that set it
	SameSite http.SameSite // default http.SameSiteLaxMode
	// HostPrefix names the cookie "__Host-<Name>", which browsers accept only when Secure, with Path
	// "/" and no Domain: the cookie cannot be set or shadowed by another subdomain.
	HostPrefix bool
	// Insecure drops the Secure attribute, for development over plain HTTP on a host other than
	// localhost or a loopback address (a LAN address, a container's name), where browsers drop a
	// Secure cookie. Never set it where clients reach the server over HTTPS.
	Insecure bool
	// BrowserSession leaves out Expires, so the browser drops the cookie when it closes.
	BrowserSession bool
}

func (c Cookie) name() string {
	n := c.Name
	if n == "" {
		n = "session"
	}
	if c.HostPrefix {
		n = "__Host-" + n
	}
	return n
}

// MiddlewareOption configures the middleware (Middleware). The Store has options of its own,
// Option.
type MiddlewareOption interface{ apply(*middlewareConfig) }

type middlewareOptionFunc func(*middlewareConfig)

func (f middlewareOptionFunc) apply(c *middlewareConfig) { f(c) }

// middlewareConfig is what the middleware's options set.
type middlewareConfig struct {
	cookie  Cookie
	onError func(http.ResponseWriter, *http.Request, error)
	logger  *slog.Logger // nil: slog.Default() at each record
	// cop refuses cross-origin unsafe requests before the session is loaded; nil: no check.
	cop *http.CrossOriginProtection
	// signedInCC is the Cache-Control of a signed-in session's responses that set none; "": none.
	signedInCC string
	// failureLogInterval bounds the records of failures of Redis (WithFailureLogInterval).
	failureLogInterval time.Duration
	// now is the failure log's clock: time.Now, or a test's.
	now func() time.Time
}

// WithCookie sets the session cookie's attributes. A name that is not an HTTP token, or a
// __Host-/__Secure- name whose rules the attributes break, is a configuration error: the
// middleware logs it when it is made, and answers every request through the error handler (500 by
// default). A domain that is no cookie domain (a port, an underscore) is dropped, so the cookie is
// for this host alone, and a path loses the bytes a cookie path cannot hold, as net/http does;
// the middleware logs either once, when it is made.
func WithCookie(c Cookie) MiddlewareOption {
	return middlewareOptionFunc(func(m *middlewareConfig) { m.cookie = c })
}

// WithErrorHandler sets what answers a request whose session cannot be loaded or saved before the
// response starts. When a save fails, the headers the handler set to describe its response
// (Content-Encoding, ETag and the like) are first returned to what they were before the handler
// ran (set by middleware in front, or none), and Cache-Control is no-store. When
// Redis failed (unreachable, timed out, loading, failing over), err matches ErrUnavailable. The
// default answers 503 Service Unavailable with Retry-After: 1 for those, and 500 Internal Server
// Error for anything else (ErrTooLarge, a bad reply). The failure is logged before the handler is
// called.
func WithErrorHandler(h func(w http.ResponseWriter, r *http.Request, err error)) MiddlewareOption {
	return middlewareOptionFunc(func(m *middlewareConfig) { m.onError = h })
}

// middleware is one Middleware's configuration and state.
type middleware struct {
	middlewareConfig
	st *Store
	// warnedPlainHTTP: the Secure-cookie-over-plain-HTTP warning was logged (once per middleware).
	warnedPlainHTTP atomic.Bool
	// failures bounds the records of failures of Redis (WithFailureLogInterval).
	failures faillog.Throttle
	// badCookie: the cookie as configured is invalid (Cookie.check); every request gets the error
	// handler's answer.
	badCookie error
}

type ctxKey struct{}

// FromContext returns the request's session, put there by Middleware.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(ctxKey{}).(*Session)
	return s, ok
}

// Middleware loads the session named by the request's cookie, puts it in the request's context
// (FromContext), and saves what the handler changed just before the response starts, so that a new
// token can still be sent. Only changed attributes are written; Set-Cookie is sent only for a new
// or rotated token, or to clear the cookie of a destroyed session, with Vary: Cookie and
// no-cache="Set-Cookie" added to the response's Cache-Control (never weakening what the
// application set). A cookie naming no live session is never adopted: the request gets a new
// session with a new token. A session that another request destroyed or rotated meanwhile keeps
// this request's changes out of Redis.
//
// By default it also refuses cross-origin requests with unsafe methods (WithCrossOriginProtection),
// marks the responses of signed-in sessions "Cache-Control: private, no-store" when the
// application set no Cache-Control (WithSignedInCacheControl), and logs failures through log/slog
// (WithLogger), those of an unavailable Redis at most once a second (WithFailureLogInterval).
func Middleware(st *Store, opts ...MiddlewareOption) func(http.Handler) http.Handler {
	c := middlewareConfig{
		onError:            defaultErrorHandler,
		cop:                http.NewCrossOriginProtection(),
		signedInCC:         DefaultSignedInCacheControl,
		failureLogInterval: DefaultFailureLogInterval,
		now:                time.Now,
	}
	for _, o := range opts {
		o.apply(&c)
	}
	m := &middleware{middlewareConfig: c, st: st}
	var dropped string
	if m.cookie, dropped, m.badCookie = m.cookie.check(); m.badCookie != nil {
		m.log().LogAttrs(context.Background(), slog.LevelError, "session: invalid cookie: every request will be answered by the error handler",
			slog.String("error", m.badCookie.Error()))
	} else if dropped != "" {
		m.log().LogAttrs(context.Background(), slog.LevelError, "session: invalid cookie attribute dropped",
			slog.String("error", dropped))
	}
	return m.wrap
}

// check returns c as the middleware sends it, with what it changed (dropped), or an error
// when browsers would never keep the cookie as configured: a name that is not an HTTP token
// (net/http would send an empty Set-Cookie), or a name with a prefix whose rules the attributes
// break (browsers refuse such a cookie: __Secure- needs Secure; __Host- needs Secure, Path "/" and
// no Domain, as HostPrefix sets them). A Domain that is not a valid cookie domain is dropped (the
// cookie is for this host alone), and a Path loses the bytes a cookie path cannot hold, as
// net/http would do, logging it at every response. SameSite=None without Secure, which Chrome
// refuses, is said and kept.
func (c Cookie) check() (_ Cookie, dropped string, err error) {
	name := c.name()
	if err := (&http.Cookie{Name: name, Value: "v"}).Valid(); err != nil {
		return c, "", fmt.Errorf("session: WithCookie(%q): %w", name, err)
	}
	if !c.HostPrefix {
		lower := strings.ToLower(name)
		switch {
		case (strings.HasPrefix(lower, "__host-") || strings.HasPrefix(lower, "__secure-")) && c.Insecure:
			return c, "", fmt.Errorf("session: WithCookie(%q): browsers refuse the name's prefix without Secure (Insecure is set)", name)
		case strings.HasPrefix(lower, "__host-") && (c.Domain != "" || (c.Path != "" && c.Path != "/")):
			return c, "", fmt.Errorf("session: WithCookie(%q): browsers refuse the __Host- prefix with a Domain or a Path other than \"/\" (set HostPrefix instead)", name)
		}
	}
	var changes []string
	if c.Domain != "" && !c.HostPrefix && (&http.Cookie{Name: name, Value: "v", Domain: c.Domain}).Valid() != nil {
		changes = append(changes, fmt.Sprintf("Domain %q is no cookie domain: the cookie is for this host alone", c.Domain))
		c.Domain = ""
	}
	if c.SameSite == http.SameSiteNoneMode && c.Insecure && !c.HostPrefix {
		changes = append(changes, "SameSite=None without Secure (Insecure is set), which Chrome refuses: kept as configured")
	}
	if p := cookiePath(c.Path); p != c.Path {
		changes = append(changes, fmt.Sprintf("Path %q holds bytes a cookie path cannot: it is %q", c.Path, p))
		c.Path = p
	}
	if len(changes) > 0 {
		dropped = fmt.Sprintf("session: WithCookie(%q): %s", name, strings.Join(changes, "; "))
	}
	return c, dropped, nil
}

// cookiePath returns p without the bytes a cookie path cannot hold (controls, DEL, ';'), as
// net/http sends it.
func cookiePath(p string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r >= 0x7f || r == ';' {
			return -1
		}
		return r
	}, p)
}

func (m *middleware) wrap(next http.Handler) http.Handler {
	return m.crossOriginCheck(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.badCookie != nil { // logged when the middleware was made
			m.onError(w, r, m.badCookie)
			return
		}
		s, hadCookie, err := m.load(r)
		if err != nil {
			m.fail(w, r, "load", "", err)
			return
		}
		sw := &writer{ResponseWriter: w, m: m, r: r, s: s, hadCookie: hadCookie}
		if h := w.Header(); len(h) > 0 {
			for i, k := range handlerRepresentation {
				sw.front[i] = slices.Clone(h[k])
			}
		}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
		if !sw.committed {
			sw.commit() // nothing was written: the response is the implicit 200, or the error handler's
			return
		}
		if sw.failed {
			return // the error handler answered for the refused save: it is not tried again
		}
		// Changes made after the response started: save them; the cookie cannot change any more.
		s.mu.Lock()
		late := s.dirty() && !s.isNew && !s.destroyed
		s.mu.Unlock()
		if late {
			if err := m.st.Save(r.Context(), s); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrReadOnly) {
				m.logFailure(r, "save after the response started", s.Key(), err)
			}
		}
	}))
}

// maxCookiesTried bounds how many well-formed cookies of the session's name one request may make
// the store look up.
const maxCookiesTried = 3

// load returns the request's session: the one the first of its cookies that names a live session
// names (a stale cookie of another path or domain may come first), or a new one.
func (m *middleware) load(r *http.Request) (*Session, bool, error) {
	hadCookie, tried := false, 0
	for _, c := range r.CookiesNamed(m.cookie.name()) {
		if c.Value == "" {
			continue
		}
		hadCookie = true
		tok := Token(c.Value)
		if !tok.valid() {
			continue
		}
		if tried++; tried > maxCookiesTried {
			break
		}
		s, err := m.st.Load(r.Context(), tok)
		if err == nil || errors.Is(err, ErrNotFound) {
			m.answered(r) // Redis answered: a count of failures not logged may be due
		}
		switch {
		case err == nil:
			return s, true, nil
		case errors.Is(err, ErrCorrupt):
			m.logCorrupt(r, m.st.keyOf(tok), err) // replaced by a new session below
		case !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMalformed):
			return nil, true, err
		}
	}
	s, err := m.newSession(r)
	return s, hadCookie, err
}

func (m *middleware) newSession(r *http.Request) (*Session, error) {
	s, err := m.st.New()
	if err != nil {
		return nil, err
	}
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	s.SetClient(ip, r.UserAgent())
	return s, nil
}

// writer saves the session before the first byte of the response.
type writer struct {
	http.ResponseWriter
	m         *middleware
	r         *http.Request
	s         *Session
	hadCookie bool
	committed bool
	failed    bool // the save failed and the error handler answered: drop the handler's output
	// front holds the values of handlerRepresentation's headers before the handler ran (set by
	// middleware in front, such as a compressor that sets Content-Encoding and encodes whatever
	// is written through it): the error answer keeps them.
	front [len(handlerRepresentation)][]string
}

func (w *writer) WriteHeader(code int) {
	// Informational responses (103 Early Hints) do not end the headers; 101 Switching Protocols
	// does (net/http sends no headers after it), so it commits the session like any final status.
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if !w.committed && !w.commit() {
		return
	}
	if !w.failed {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *writer) Write(b []byte) (int, error) {
	if !w.committed {
		w.commit()
	}
	if w.failed {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush saves the session if it was not yet, then flushes (see FlushError).
func (w *writer) Flush() { _ = w.FlushError() }

// FlushError saves the session if it was not yet, then flushes through http.ResponseController,
// so that a ResponseWriter that flushes only through Unwrap (a wrapper in front) flushes too. When
// the save failed, the error handler has answered: nothing more is flushed, and the error says so.
func (w *writer) FlushError() error {
	if !w.committed {
		w.commit()
	}
	if w.failed {
		return errAnswered
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// errAnswered is the error of Hijack and FlushError when the session could not be saved and the
// error handler answered the request.
var errAnswered = errors.New("session: the session could not be saved, and the error handler answered the request")

// Hijack lets protocols such as WebSocket take the connection; the session is saved first. When
// that save fails, the error handler answers and Hijack fails: the handler must not go on.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.committed {
		w.commit()
	}
	if w.failed {
		return nil, nil, errAnswered
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// commit saves the session and sets the cookie headers. It reports false when the save failed and
// the error handler answered instead.
func (w *writer) commit() bool {
	w.committed = true
	s := w.s
	err := w.m.st.Save(w.r.Context(), s)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), errors.Is(err, ErrReadOnly):
		// Destroyed or rotated by another request meanwhile, or read through a rotated token: this
		// request's changes are dropped, never written back.
	default:
		w.failed = true
		dropHandlerRepresentation(w.Header(), &w.front)
		w.m.fail(w.ResponseWriter, w.r, "save", s.Key(), err)
		return false
	}
	s.mu.Lock()
	destroyed, stored, changed := s.destroyed, !s.isNew, s.sendCookie
	tok, deadline := s.token, s.meta.Deadline
	signedIn := s.meta.UserID != "" && !destroyed
	if !s.persistent(!w.m.cookie.BrowserSession) {
		deadline = time.Time{} // a cookie the browser drops when it closes
	}
	maxAge := 0
	if !deadline.IsZero() && !s.now.IsZero() {
		// Max-Age, which browsers prefer to Expires, counts from the server's clock: a client whose
		// clock is off keeps the cookie until the deadline all the same. Rounded up (without adding
		// to the Duration, which a lifetime of "forever", math.MaxInt64, would overflow), at least 1
		// (0 would mean no Max-Age), at most what an int holds everywhere.
		d := deadline.Sub(s.now)
		secs := d / time.Second
		if d%time.Second > 0 {
			secs++
		}
		maxAge = int(min(max(secs, 1), math.MaxInt32))
	}
	if stored && changed {
		s.sendCookie = false
	}
	s.sent = true // from now on Rotate and Login could not send their cookie
	s.mu.Unlock()
	if signedIn && w.m.signedInCC != "" && len(w.Header().Values("Cache-Control")) == 0 {
		w.Header().Set("Cache-Control", w.m.signedInCC)
	}
	switch {
	case destroyed && w.hadCookie:
		w.setCookie("", time.Unix(1, 0), -1)
	case destroyed:
	case stored && changed:
		w.setCookie(string(tok), deadline, maxAge)
	case !stored && w.hadCookie:
		// The cookie named no live session and nothing was stored: clear it, so it is not sent again.
		w.setCookie("", time.Unix(1, 0), -1)
	}
	return true
}

func (w *writer) setCookie(value string, expires time.Time, maxAge int) {
	c := w.m.cookie
	ck := &http.Cookie{
		Name: c.name(), Value: value, Path: c.Path, Domain: c.Domain,
		Secure: !c.Insecure || c.HostPrefix, HttpOnly: true, SameSite: c.SameSite, MaxAge: maxAge,
	}
	if ck.Path == "" || c.HostPrefix {
		ck.Path = "/"
	}
	if c.HostPrefix {
		ck.Domain = ""
	}
	if ck.SameSite == 0 {
		ck.SameSite = http.SameSiteLaxMode
	}
	if !expires.IsZero() {
		ck.Expires = expires
	}
	h := w.Header()
	h.Add("Set-Cookie", ck.String())
	addVary(h, "Cookie")
	keepSetCookieOutOfCaches(h)
	if ck.Secure && value != "" {
		w.m.warnPlainHTTP(w.r)
	}
}

// handlerRepresentation are the headers a handler sets to describe and cache what it was about to
// send, which would mislabel the error handler's answer (a plain-text body declared gzip, or a
// download) or let a cache keep it. Canonical keys: they index the header map.
var handlerRepresentation = [...]string{
	"Content-Length", "Content-Type", "Content-Encoding", "Content-Range", "Content-Disposition",
	"Content-Language", "Content-Location", "Etag", "Last-Modified", "Expires",
}

// dropHandlerRepresentation returns, before the error handler answers instead of the handler, the
// headers that described the handler's response to the values they had before the handler ran,
// front (as the standard library's ServeContent clears them before it serves an error), and marks
// the error response not to be stored by any cache. Other headers stay, whoever set them.
func dropHandlerRepresentation(h http.Header, front *[len(handlerRepresentation)][]string) {
	for i, k := range handlerRepresentation {
		if front[i] != nil {
			h[k] = front[i]
		} else {
			delete(h, k)
		}
	}
	h.Set("Cache-Control", "no-store")
}
