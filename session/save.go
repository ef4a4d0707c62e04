package session

// Save writes a session's changes (session_save), or stores a new session whole (session_create);
// Destroy ends one, following its rotations (session_destroy), and DestroyKey deletes one.

import (
	"context"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/redisfail"
)

// Save writes what changed in s since it was read: a new session is created with everything in
// it; a stored one gets only the attributes Put or Removed and the metadata set. Nothing is written
// into a session that was destroyed (ErrNotFound) or rotated (ErrConflict) since it was read, nor
// through a read-only session (ErrReadOnly). A new session with no attributes is not stored. A
// session the save would make larger than the size cap is refused with ErrTooLarge, before Redis
// is asked when this request's own view already exceeds it.
func (st *Store) Save(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.destroyed:
		return ErrNotFound
	case s.isNew && len(s.values) == 0, !s.isNew && !s.dirty():
		return nil // nothing to write: no call, no span
	case s.readOnly:
		return ErrReadOnly
	}
	ctx, o := st.begin(ctx, "save", st.save.Name())
	o.key = s.key
	if s.isNew {
		o.script = st.create.Name()
	}
	if st.sized(&o) { // measured now: a successful save clears the change set
		o.bytes = payload(s.values)
		if !s.isNew {
			o.bytes = 0
			for name := range s.changed {
				o.bytes += len(s.values[name])
			}
		}
	}
	defer func() { err = st.end(&o, err) }()
	return st.saveLocked(ctx, s)
}

func (st *Store) saveLocked(ctx context.Context, s *Session) error {
	switch {
	case s.destroyed:
		return ErrNotFound
	case s.readOnly:
		return ErrReadOnly
	case s.isNew:
		if len(s.values) == 0 {
			return nil
		}
		return st.createNew(ctx, s, "", loginConfig{})
	case !s.dirty():
		return nil
	}
	if size := s.size(); size > st.maxSize && size > s.base {
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	args := make([]any, 0, 5+2*(len(s.changed)+len(s.metaSet))+len(s.removed))
	args = append(args, st.now(), s.gen, st.maxSize, len(s.changed)+len(s.metaSet), len(s.removed))
	args = s.appendChanges(args)
	var keys []string
	if s.meta.UserID != "" {
		// The index vouches for a signed-in session, and scores it by its deadline. (A record
		// never gains a user in place: a sign-in moves the session to a new key.)
		idx, _ := st.indexOfKey(s.key)
		keys = []string{string(s.key), idx}
	} else {
		keys = []string{string(s.key)}
	}
	_, deadline := s.metaSet[fieldDeadline]
	v, err := st.save.Run(ctx, st.client, keys, args...)
	if err != nil {
		return scriptErr("save", err)
	}
	status, arr := int64(-1), []any(nil) // the save answers an integer, or a table with the size
	switch v := v.(type) {
	case int64:
		status = v
	default:
		if arr, status, err = reply(v); err != nil {
			return err
		}
	}
	switch status {
	case statusOK:
		s.clearChanges()
		s.base = s.size()
		if deadline {
			s.sendCookie = true // the cookie expires at the deadline: it must follow
		}
		return nil
	case statusNotFound:
		return ErrNotFound
	case statusConflict:
		return ErrConflict
	case statusTooLarge:
		var size int64
		if len(arr) > 1 {
			size, _ = arr[1].(int64)
		}
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	return fmt.Errorf("%w: save status %d", ErrCorrupt, status)
}

// createNew stores s, a session never stored, under its token; with a user, signed in, under the
// user's cap.
func (st *Store) createNew(ctx context.Context, s *Session, user string, cfg loginConfig) error {
	spec := createSpec{user: user, idle: st.idle, lifetime: st.lifetime, deadline: s.deadline}
	if s.idle > 0 {
		spec.idle = s.idle
	}
	if s.lifetime > 0 {
		spec.lifetime = s.lifetime
	}
	if user != "" {
		// A sign-in starts a new lifetime, the store's (or RememberMe's), as when the session was
		// stored before: not one set on the anonymous session (SetLifetime, SetDeadline).
		spec.auth, spec.deadline, spec.lifetime = -1, time.Time{}, st.lifetime
		if cfg.idle > 0 {
			spec.idle = cfg.idle
		}
		if cfg.lifetime > 0 {
			spec.lifetime = cfg.lifetime
		}
		if cfg.persist != 0 {
			s.persist = cfg.persist
		}
	}
	if s.persist != 0 {
		s.setMetaLocked(fieldPersist, persistFlag(s.persist))
	}
	return st.createLocked(ctx, s, spec)
}

// createSpec is what session_create.lua needs beyond the record's fields.
type createSpec struct {
	user           string
	idle, lifetime time.Duration
	deadline       time.Time // zero: now + lifetime
	created        time.Time // zero: now
	auth           int64     // ms since the epoch; 0 never, -1 now
	allowed        int       // a size allowed over the cap (a record moved by a sign-in), or 0
}

// pendingMargin is how long a sign-in's session stays pending (session_create.lua) beyond the
// store's timeout, which bounds a whole Login: a Login that has not made it live by then fails, and
// the pending session expires unseen.
const pendingMargin = time.Minute

// pendingTTL is how long a signed-in session stays pending before it is made live.
func (st *Store) pendingTTL() time.Duration { return st.timeout + pendingMargin }

// createLocked stores s, new, under its token with s.values and s.metaSet; with a user, pending,
// for activateLocked to make live.
func (st *Store) createLocked(ctx context.Context, s *Session, c createSpec) error {
	size := s.size()
	if c.user != "" && s.meta.UserID == "" {
		size += len(fieldUser) + len(c.user) + len(fieldAuth) + 13 // the user, and authenticated-at in ms
	}
	if size > st.maxSize && size > c.allowed {
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	var deadline, created int64
	if !c.deadline.IsZero() {
		deadline = c.deadline.UnixMilli()
	}
	if !c.created.IsZero() {
		created = c.created.UnixMilli()
	}
	var pending int64
	if c.user != "" {
		pending = st.pendingTTL().Milliseconds()
	}
	pairs := s.appendRecord(make([]any, 0, 2+2*(len(s.values)+len(s.metaSet))))
	args := append([]any{st.now(), c.idle.Milliseconds(), c.lifetime.Milliseconds(), deadline, created, c.auth,
		c.user, pending, st.maxSize, c.allowed, len(pairs) / 2}, pairs...)
	keys := []string{string(s.key)}
	if c.user != "" {
		keys = append(keys, st.indexOf(s.token.tag()))
	}
	v, err := st.create.Run(ctx, st.client, keys, args...)
	if err != nil {
		return scriptErr("create", err)
	}
	arr, status, err := reply(v)
	switch {
	case err != nil:
		return err
	case status == statusTooLarge && len(arr) > 1:
		n, _ := arr[1].(int64)
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, n, st.maxSize)
	case status == statusNotFound:
		// As a save of a stored session past its new deadline answers: the session has ended.
		return fmt.Errorf("session: create: the session's lifetime is already over: %w", ErrNotFound)
	case status != statusOK || len(arr) < 4:
		return fmt.Errorf("%w: create reply %v", ErrCorrupt, arr)
	}
	now, _ := arr[1].(int64)
	dl, _ := arr[3].(int64)
	s.now = time.UnixMilli(now)
	s.meta.Key, s.meta.LastSeen, s.meta.IdleTimeout = s.key, s.now, c.idle
	s.meta.Deadline = time.UnixMilli(dl)
	s.meta.Created = s.now
	if created != 0 {
		s.meta.Created = c.created
	}
	if c.user != "" {
		s.meta.UserID, s.meta.AuthenticatedAt = c.user, s.now
	}
	s.isNew, s.ver = false, ""
	s.clearChanges()
	s.base = s.size()
	return nil
}

// activateLocked makes s live: a signed-in session that createLocked or a rotation stored pending,
// which no list shows and no cap counts until now; under a cap, it applies the cap, reading the
// user's index again while other sign-ins overtake it (session_activate.lua). A session the user
// gains (joining: a sign-in) is never ended by the cap; one the user had (a rotation) counts with
// the others by its own sign-in, since a sign-in may have taken its place while it was pending,
// and when it is the oldest the cap ends it: ErrNotFound. Run again after a lost reply, it never
// brings back a session signed out in between: ErrNotFound.
func (st *Store) activateLocked(ctx context.Context, s *Session, joining bool) error {
	idx := st.indexOf(s.token.tag())
	join := "0"
	if joining {
		join = "1"
	}
	arr, status, err := st.runIndexed(ctx, st.activate, "login", []string{string(s.key), idx}, idx, st.maxPerUser > 0,
		statusRereadIndex, st.now(), st.maxPerUser, join)
	switch {
	case err != nil:
		return err
	case status == statusNotFound:
		return fmt.Errorf("session: login: the signed-in session expired or was signed out before it was made live, or the cap ended it: %w", ErrNotFound)
	case status != statusOK || len(arr) < 4:
		return fmt.Errorf("%w: activate reply %v", ErrCorrupt, arr)
	}
	now, _ := arr[1].(int64)
	dl, _ := arr[3].(int64)
	s.now = time.UnixMilli(now)
	s.meta.LastSeen, s.meta.Deadline = s.now, time.UnixMilli(dl)
	return nil
}

// Destroy ends the session at once, and empties it. Requests still in flight with it cannot bring
// it back: their saves fail with ErrNotFound. A Put after Destroy starts a new session, with a new
// token.
//
// It ends the session the token led to, whatever rotation happened since s was read: when another
// request rotated it (Rotate, Login) in between, the session under the new token is ended too, and
// so along a chain of rotations, so that the user who signs out is not left signed in by the new
// cookie the other request sends. That holds for a Destroy up to 5 minutes plus the store's
// timeout (WithTimeout), and at least the grace window, after the rotation: the old key's pointer
// is kept that long. A read-only session (loaded through a rotated token within the grace window)
// is destroyed the same way: sign-out is the one write the old token may make, since it can only
// end the session; so a stolen old token can sign the user out within that window, no more.
func (st *Store) Destroy(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, o := st.begin(ctx, "destroy", st.destroy.Name())
	o.key = s.key
	defer func() { err = st.end(&o, err) }()
	wasNew := s.isNew
	s.destroyed, s.readOnly = true, false
	clear(s.values)
	s.clearChanges()
	s.meta = Metadata{IP: s.meta.IP, UserAgent: s.meta.UserAgent}
	if wasNew {
		return nil
	}
	return st.destroyFrom(ctx, s.key)
}

// destroyFrom ends the session stored under key and, when key is a rotation's pointer, the one it
// moved to, one script call a hop (session_destroy.lua; the next may be in another slot). A call
// whose reply is lost is sent once more: it answers the same.
func (st *Store) destroyFrom(ctx context.Context, key Key) error {
	for range maxAttempts {
		idx, ok := st.indexOfKey(key)
		if !ok {
			return fmt.Errorf("session: destroy: %w: moved to a key of another shape", ErrCorrupt)
		}
		keys := []string{string(key), idx}
		v, err := st.destroy.Run(ctx, st.client, keys)
		if resendable(ctx, err) {
			v, err = st.destroy.Run(ctx, st.client, keys)
		}
		if err != nil {
			return scriptErr("destroy", err)
		}
		next, ok := v.(string)
		if !ok {
			return nil
		}
		key = Key(next)
	}
	return fmt.Errorf("session: destroy: the session kept rotating: %w", ErrContended)
}

// retiredMargin is how long the old key of a rotated session is kept beyond the store's timeout,
// as a tombstone after its grace window (session_rotate.lua, session_seal.lua): the time a request
// that read the session before the rotation has to Destroy it, and a lost reply to be resent.
const retiredMargin = 5 * time.Minute

// retiredTTL is how long the old key of a rotated session is kept.
func (st *Store) retiredTTL() time.Duration { return max(st.grace, st.timeout+retiredMargin) }

// resendable reports whether a script call that failed with err may have run on the server with
// its reply lost, and may be sent once more: the connection failed or timed out
// (redisfail.Classify), not a reply, a closed client or an error of no known kind, and ctx still
// allows it.
func resendable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	k := redisfail.Classify(err)
	return k == redisfail.Timeout || k == redisfail.Unreachable
}

// DestroyKey ends the session stored under key, as listed by ListByUser: for an "active sessions"
// page. Check first that the key is one of the signed-in user's own.
func (st *Store) DestroyKey(ctx context.Context, key Key) (err error) {
	ctx, o := st.begin(ctx, "destroy", "")
	o.key = key
	defer func() { err = st.end(&o, err) }()
	if _, ok := st.indexOfKey(key); !ok {
		return fmt.Errorf("session: DestroyKey: %w", ErrMalformed)
	}
	return st.del(ctx, key)
}

func (st *Store) del(ctx context.Context, key Key) error {
	if err := st.client.Del(ctx, string(key)).Err(); err != nil {
		return fmt.Errorf("session: destroy: %w", err)
	}
	return nil
}
