package session

import (
	"net/http"
	"strings"
)

// DefaultSignedInCacheControl is the Cache-Control the middleware gives, by default, to a response
// of a signed-in session that sets none (see WithSignedInCacheControl).
const DefaultSignedInCacheControl = "private, no-store"

// WithSignedInCacheControl sets the Cache-Control of the responses of signed-in sessions (those
// with a user ID after the handler ran) whose handler set no Cache-Control; "" leaves such
// responses as they are. The default, DefaultSignedInCacheControl ("private, no-store"), keeps
// signed-in pages out of shared caches and out of the browser's cache, and makes Chromium take a
// page that a later response signed out of its back/forward cache: Back after logout fetches the
// page again instead of showing what the signed-in user saw. A handler that sets Cache-Control
// itself (static assets, say) keeps it.
func WithSignedInCacheControl(value string) MiddlewareOption {
	return middlewareOptionFunc(func(m *middlewareConfig) { m.signedInCC = value })
}

// keepSetCookieOutOfCaches makes sure no cache hands this response's Set-Cookie to another
// client: it adds no-cache="Set-Cookie" to the response's Cache-Control, keeping every directive
// the application set. A response that no-store or a bare no-cache already covers is left as it is;
// a qualified no-cache="..." gets Set-Cookie added to its list.
func keepSetCookieOutOfCaches(h http.Header) {
	const field = "Set-Cookie"
	dirs := cacheDirectives(h.Values("Cache-Control"))
	qualified := -1
	for i, d := range dirs {
		name, arg, hasArg := strings.Cut(d, "=")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "no-store":
			return
		case "no-cache":
			if !hasArg {
				return
			}
			for f := range strings.SplitSeq(strings.Trim(strings.TrimSpace(arg), `"`), ",") {
				if strings.EqualFold(strings.TrimSpace(f), field) {
					return
				}
			}
			qualified = i
		}
	}
	if qualified >= 0 {
		name, arg, _ := strings.Cut(dirs[qualified], "=")
		fields := strings.TrimSpace(strings.Trim(strings.TrimSpace(arg), `"`))
		dirs[qualified] = name + `="` + fields + ", " + field + `"`
	} else {
		dirs = append(dirs, `no-cache="`+field+`"`)
	}
	h.Set("Cache-Control", strings.Join(dirs, ", "))
}

// cacheDirectives splits Cache-Control field values into directives, keeping commas inside
// quoted strings (no-cache="Set-Cookie, Set-Cookie2") and dropping empty elements.
func cacheDirectives(values []string) []string {
	var dirs []string
	for _, v := range values {
		start, quoted := 0, false
		for i := 0; i <= len(v); i++ {
			if i < len(v) {
				switch {
				case v[i] == '\\' && quoted:
					i++
					continue
				case v[i] == '"':
					quoted = !quoted
					continue
				case v[i] != ',' || quoted:
					continue
				}
			}
			if d := strings.TrimSpace(v[start:i]); d != "" {
				dirs = append(dirs, d)
			}
			start = i + 1
		}
	}
	return dirs
}

// addVary adds field to the response's Vary unless it is listed already (or Vary is "*").
func addVary(h http.Header, field string) {
	for _, v := range h.Values("Vary") {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, field) {
				return
			}
		}
	}
	h.Add("Vary", field)
}
