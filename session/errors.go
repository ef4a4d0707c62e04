package session

// The errors of the session package. Each operation's doc comment says which it returns; a
// failure of Redis itself matches ErrUnavailable, whatever else it wraps.

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound: no such session. It never existed, expired (idle or absolute), or was destroyed.
	ErrNotFound = errors.New("session: not found")
	// ErrConflict: the session was rotated to a new token, or replaced, since this request read
	// it; the write was refused so that the old token is never revived.
	ErrConflict = errors.New("session: conflict: rotated or replaced since it was read")
	// ErrReadOnly: the session was loaded through a token rotated less than the grace window ago
	// (WithRotationGrace). It can be read; nothing is written through it, and Redis is not asked.
	// (Destroy is not refused: it ends the session, a sign-out.)
	ErrReadOnly = errors.New("session: read-only: loaded through a rotated token within its grace window")
	// ErrHeadersSent: Rotate or Login (or Put after Destroy, or Put into a new session the
	// middleware did not store) was called after the middleware sent the response's headers, when
	// the new token's cookie can no longer be sent. Nothing was changed, in Redis or in the session.
	ErrHeadersSent = errors.New("session: the response has started: a new session cookie can no longer be sent")
	// ErrContended: a per-user operation, or a sign-in, found the user's sessions (or the session
	// being signed in) changed by other requests every time it tried; nothing was changed. Try again.
	ErrContended = errors.New("session: contended: changed by other requests on every attempt")
	// ErrMalformed: a token that this package never issued (wrong length or alphabet). It is refused
	// before Redis is asked.
	ErrMalformed = errors.New("session: malformed token")
	// ErrTooLarge: the session would exceed the store's size cap (WithMaxSize); nothing was written.
	ErrTooLarge = errors.New("session: too large")
	// ErrCorrupt: the stored record or an attribute cannot be decoded.
	ErrCorrupt = errors.New("session: corrupt stored data")
	// ErrUnavailable: Redis failed, not the request: it could not be reached (a refused dial, a
	// reset or closed connection), did not answer in time (the caller's deadline, WithTimeout's,
	// the client's read, write or pool timeout), or answered that it cannot serve now (LOADING,
	// BUSY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN, READONLY, NOREPLICAS, MISCONF, out of memory under
	// noeviction, too many clients). Every Store operation that fails so returns an error that
	// matches it and still wraps the cause; the middleware answers 503 for it:
	//
	//	if errors.Is(err, session.ErrUnavailable) { ... }
	ErrUnavailable = errors.New("session: Redis unavailable")
)

// scriptErr wraps a script failure; a corrupt-record error reply becomes ErrCorrupt.
func scriptErr(op string, err error) error {
	if strings.Contains(err.Error(), "GATEHOUSE corrupt") {
		return fmt.Errorf("session: %s: %w: %v", op, ErrCorrupt, err)
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		return err
	}
	return fmt.Errorf("session: %s: %w", op, err)
}

// A caller's mistakes that an operation refuses before Redis is asked (error.type
// invalid_argument).
var (
	errLoginNoUser = errors.New("session: Login with an empty user ID")
	errNoUser      = errors.New("session: empty user ID")
)

// isInvalidArgument reports whether err is a caller's mistake.
func isInvalidArgument(err error) bool {
	return errors.Is(err, errLoginNoUser) || errors.Is(err, errNoUser)
}
