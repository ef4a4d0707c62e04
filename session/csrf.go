package session

import (
	"log/slog"
	"net/http"
)

// WithCrossOriginProtection sets the check that refuses cross-origin browser requests with unsafe
// methods (anything but GET, HEAD and OPTIONS) before the session is loaded, against cross-site
// request forgery. SameSite=Lax keeps the session cookie off a cross-site POST, but not the
// cookie that the response sets: without this check a form on another site could post to a
// sign-in handler and sign the visitor in as the attacker (login CSRF).
//
// The default is http.NewCrossOriginProtection(), which judges by the Sec-Fetch-Site header that
// browsers send, or by comparing Origin with Host, and lets through requests that carry neither
// (clients that are not browsers). Other sites, subdomains of the same site included, are
// refused with 403 Forbidden. Pass a CrossOriginProtection of your own to trust origins
// (AddTrustedOrigin, for a front end on another origin), to exempt paths (AddInsecureBypassPattern,
// for webhooks) or to answer refusals yourself (SetDenyHandler). Pass nil to turn the check off,
// where the application already makes one.
func WithCrossOriginProtection(c *http.CrossOriginProtection) MiddlewareOption {
	return middlewareOptionFunc(func(m *middlewareConfig) { m.cop = c })
}

// crossOriginCheck puts the cross-origin check in front of next; a refusal is logged at Info and
// answered by the CrossOriginProtection's handler.
func (m *middleware) crossOriginCheck(next http.Handler) http.Handler {
	c := m.cop
	if c == nil {
		return next
	}
	refuse := c.Handler(next) // checks again, and calls the deny handler set on c
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.Check(r); err != nil {
			m.log().LogAttrs(r.Context(), slog.LevelInfo, "session: cross-origin request refused",
				slog.String("method", r.Method),
				slog.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")),
				slog.String("origin", r.Header.Get("Origin")),
				slog.String("reason", err.Error()))
			refuse.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
