// Package session keeps login sessions in Redis, with touch-on-read, lost-update-free saves,
// rotation that cannot be undone, and per-user control.
//
// Every operation is one atomic Lua script call (two for the rare ones noted below), timed by the
// Redis server's clock:
//
//   - Load reads a session and slides its expiry to min(idle timeout, absolute deadline - now) in
//     one round trip: the HGETALL that reads it, and the script that checks it and slides its
//     expiry. It rewrites no payload. Past its deadline, a session is deleted and not found.
//   - Save writes only the attributes a request changed, and only into the session as it was read:
//     two concurrent requests changing different attributes both keep their change, and a request
//     still in flight when the session is destroyed or rotated cannot bring it back.
//   - Rotate and Login move a session to a new token atomically; the old token dies at once, or
//     can only read for a grace window (WithRotationGrace): a session loaded through it is
//     read-only (ErrReadOnly). Login carries over every save that completed before it, and takes
//     per-session options (RememberMe, UntilBrowserCloses).
//   - ListByUser, DestroyAllForUser and DestroyOthers act on all of a user's sessions atomically
//     (each is two calls: the index is read, then the script acts on the sessions it names, or
//     asks for the index to be read again when a sign-in or rotation landed in between). When
//     DestroyAllForUser returns, no session the user had is usable under any token. The user's
//     index vouches for the user's sessions: one it does not list (evicted by Redis, say) is
//     signed out, so no eviction can leave a session that sign-out everywhere misses.
//   - WithMaxSessionsPerUser caps a user's sessions, ending the oldest by sign-in, whatever the
//     concurrency; WithMaxSize caps a session's size, names and metadata included.
//
// # Tokens and keys
//
// A Token is the client's secret: 256 bits from crypto/rand behind a 4-character cluster slot tag,
// in base64url. Redis stores a session under its Key, a hash of the token (SHA-256, or HMAC-SHA256
// with WithHMACKey), never the token. A token this package did not issue is refused before Redis is
// asked (ErrMalformed), and one it does not know is never adopted: the client gets a new session.
//
// # HTTP
//
// Middleware loads the session from a cookie and saves it before the response starts;
// FromContext returns it to handlers. Cookies are Secure, HttpOnly and SameSite=Lax by default,
// and are sent again whenever the token or the deadline changes, so Login and Rotate must happen
// before the response's first byte (after it, ErrHeadersSent). By default the middleware also
// refuses cross-origin requests with unsafe methods (login CSRF), marks signed-in responses
// "Cache-Control: private, no-store" when the handler set none, answers 503 Service Unavailable
// with Retry-After when Redis fails, and logs through log/slog.
//
// # Options
//
// NewStore takes Options (WithIdleTimeout, WithLifetime, WithHMACKey, WithTimeout, ...);
// Middleware takes MiddlewareOptions (WithCookie, WithErrorHandler, WithLogger, ...), a type of
// their own so that the two cannot be mixed up. The package example (quick start) is a whole
// application that uses sessions alone.
//
// docs/sessions.md describes the key layout and the guarantees in full.
package session
