package session

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// retryAfter is the Retry-After of the default 503, in seconds.
const retryAfter = "1"

// defaultErrorHandler answers 503 with Retry-After when Redis failed, and 500 otherwise.
func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, ErrUnavailable) {
		w.Header().Set("Retry-After", retryAfter)
		http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		return
	}
	http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
}

// WithLogger sets where the middleware logs (default: slog.Default(), as it is at each record).
// It logs at Error a session that could not be loaded or saved, at Warn a corrupt record replaced
// by a new session and, once, a Secure cookie sent over plain HTTP to a host where browsers drop
// it, at Info a refused cross-origin request, and at Debug a failure caused by the client going
// away. No record holds a token, an attribute name or value, a user ID, a storage key or the URL
// (paths and queries can carry identifiers): only the method, the route pattern when the mux set
// one, the error, and the storage key's salted hash (key_hash) when the store has
// WithHashedKeyAttribute. Failures of Redis are logged at most once per interval
// (WithFailureLogInterval). A handler that drops records turns logging off:
// slog.New(slog.DiscardHandler).
func WithLogger(l *slog.Logger) MiddlewareOption {
	return middlewareOptionFunc(func(m *middlewareConfig) { m.logger = l })
}

// DefaultFailureLogInterval is how often, at most, the middleware logs failures of Redis while it
// stays unavailable (WithFailureLogInterval).
const DefaultFailureLogInterval = time.Second

// WithFailureLogInterval bounds the records of failures of Redis (errors matching ErrUnavailable)
// to one per d, so that an outage does not log one record per request: the first failure is
// logged at once; those that follow within d of a record are counted, not logged; the next record
// after d carries how many were not (suppressed); and once Redis answers again, the first request
// at least d after the last record logs, at Warn, "session: Redis answers again" with the failures
// not logged since it. Other failures (an oversized session, a bad reply) are logged every time.
// The default is DefaultFailureLogInterval; d <= 0 logs every failure.
func WithFailureLogInterval(d time.Duration) MiddlewareOption {
	return middlewareOptionFunc(func(m *middlewareConfig) { m.failureLogInterval = d })
}

// answered notes that Redis answered r's call, and logs the failures not logged before, if due.
func (m *middleware) answered(r *http.Request) {
	if n := m.failures.Recovered(m.now, m.failureLogInterval); n > 0 {
		m.log().LogAttrs(r.Context(), slog.LevelWarn, "session: Redis answers again", slog.Int64("suppressed", n))
	}
}

func (m *middleware) log() *slog.Logger {
	if m.logger != nil {
		return m.logger
	}
	return slog.Default()
}

// fail logs a failure to load or save the session before the response started, and lets the
// error handler answer.
func (m *middleware) fail(w http.ResponseWriter, r *http.Request, op string, key Key, err error) {
	m.logFailure(r, op, key, err)
	m.onError(w, r, err)
}

// logFailure logs a failed session operation, without anything secret (see WithLogger), and
// failures of Redis at most once per interval (see WithFailureLogInterval).
func (m *middleware) logFailure(r *http.Request, op string, key Key, err error) {
	level := slog.LevelError
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		level = slog.LevelDebug // the client went away: nothing failed on this side
	}
	unavailable := errors.Is(err, ErrUnavailable)
	var suppressed int64
	if unavailable {
		var logged bool
		if logged, suppressed = m.failures.Admit(m.now(), m.failureLogInterval); !logged {
			return
		}
	}
	ctx := r.Context()
	if !m.log().Enabled(ctx, level) {
		return
	}
	attrs := append(m.requestAttrs(r, key),
		slog.Bool("unavailable", unavailable),
		slog.String("error", err.Error()))
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("suppressed", suppressed))
	}
	m.log().LogAttrs(ctx, level, "session: "+op+" failed", attrs...)
}

// logCorrupt logs a corrupt record, which the request replaces by a new session.
func (m *middleware) logCorrupt(r *http.Request, key Key, err error) {
	attrs := append(m.requestAttrs(r, key), slog.String("error", err.Error()))
	m.log().LogAttrs(r.Context(), slog.LevelWarn, "session: corrupt record replaced by a new session", attrs...)
}

func (m *middleware) requestAttrs(r *http.Request, key Key) []slog.Attr {
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("method", r.Method))
	if r.Pattern != "" {
		attrs = append(attrs, slog.String("pattern", r.Pattern))
	}
	if h := m.st.keyHash; h != nil && key != "" {
		attrs = append(attrs, slog.String("key_hash", h.Hash(string(key))))
	}
	return attrs
}

// warnPlainHTTP logs, once per middleware, that a Secure cookie went out on a plain-HTTP request
// to a host where browsers drop it.
func (m *middleware) warnPlainHTTP(r *http.Request) {
	if m.warnedPlainHTTP.Load() {
		return
	}
	host, dropped := secureCookieDropped(r)
	if !dropped || m.warnedPlainHTTP.Swap(true) {
		return
	}
	m.log().LogAttrs(r.Context(), slog.LevelWarn,
		"session: a Secure session cookie was sent over plain HTTP to a host other than localhost: "+
			"browsers drop it, so clients stay signed out. Serve HTTPS (behind a TLS-terminating proxy, "+
			"have it set X-Forwarded-Proto: https), or set Cookie.Insecure for development on this host. "+
			"Logged once.",
		slog.String("host", host))
}

// secureCookieDropped reports whether a browser drops a Secure cookie set by the response to r:
// the request came over plain HTTP to a host that is not localhost or a loopback address, which
// browsers treat as secure. It returns the host.
//
// A request that says it was forwarded from HTTPS (X-Forwarded-Proto: https, or Forwarded with
// proto=https) is taken at its word. The client can set those headers, but believing them only
// leaves out this warning; nothing else depends on them.
func secureCookieDropped(r *http.Request) (string, bool) {
	if r.TLS != nil || forwardedHTTPS(r.Header) {
		return "", false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	switch {
	case host == "":
		return "", false // no Host: not a browser
	case host == "localhost", strings.HasSuffix(host, ".localhost"):
		return "", false
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().IsLoopback() {
		return "", false
	}
	return host, true
}

// forwardedHTTPS reports whether a proxy in front says the client used HTTPS.
func forwardedHTTPS(h http.Header) bool {
	if v := h.Get("X-Forwarded-Proto"); v != "" {
		first, _, _ := strings.Cut(v, ",")
		return strings.EqualFold(strings.TrimSpace(first), "https")
	}
	if v := h.Get("Forwarded"); v != "" {
		first, _, _ := strings.Cut(v, ",") // the element the first proxy added: the client's
		for pair := range strings.SplitSeq(first, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(pair), "=")
			if strings.EqualFold(k, "proto") {
				return strings.EqualFold(strings.Trim(val, `"`), "https")
			}
		}
	}
	return false
}
