package session

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// LoginOption chooses, at sign-in, how long the session lives and whether its cookie outlives the
// browser.
type LoginOption interface{ apply(*loginConfig) }

type loginConfig struct {
	idle, lifetime time.Duration
	persist        int8
}

type loginOptionFunc func(*loginConfig)

func (f loginOptionFunc) apply(c *loginConfig) { f(c) }

// RememberMe signs in for longer: the session's idle timeout becomes idle and its absolute
// lifetime, from now, lifetime (zero keeps the store's), and its cookie outlives the browser
// (Expires at the deadline) even when the middleware's Cookie.BrowserSession is set. Later
// rotations keep both.
func RememberMe(idle, lifetime time.Duration) LoginOption {
	return loginOptionFunc(func(c *loginConfig) {
		c.idle, c.lifetime, c.persist = max(idle, 0), max(lifetime, 0), 1
	})
}

// UntilBrowserCloses signs in with a cookie the browser drops when it closes (no Expires), even
// when the middleware's Cookie.BrowserSession is not set. The session still ends at its idle
// timeout or absolute deadline, whichever comes first.
func UntilBrowserCloses() LoginOption {
	return loginOptionFunc(func(c *loginConfig) { c.persist = -1 })
}

// Rotate gives the session a new token, keeping its data: the defence against session fixation,
// for any change of privilege. The old token stops working at once (or, with WithRotationGrace,
// can still read for the grace window; it can never write). The middleware sends the new cookie;
// so Rotate must happen before the response's first byte, or it fails with ErrHeadersSent and
// changes nothing. Through a read-only session it fails with ErrReadOnly. A signed-in session is
// moved pending and made live by a second call, with Login's guarantee when it fails, and under
// WithMaxSessionsPerUser the cap may end it then (ErrNotFound; see there).
func (st *Store) Rotate(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, o := st.begin(ctx, "rotate", st.rotate.Name())
	o.key = s.key
	defer func() { err = st.end(&o, err) }()
	o.script, err = st.rotateLocked(ctx, s, "", loginConfig{})
	return err
}

// Login signs userID in on the session: a new token (in the user's cluster slot, so that the
// user's sessions can be listed and ended together), authenticated-at set to now, and a fresh
// absolute lifetime (the store's, or RememberMe's). The old token stops working as with Rotate.
// With WithMaxSessionsPerUser, the user's oldest sessions beyond the cap are ended.
//
// The signed-in session holds everything saved into the session before Login, by this request or
// any other, and this request's unsaved changes. Like Rotate, Login must happen before the
// response's first byte (else ErrHeadersSent), and is refused through a read-only session
// (ErrReadOnly).
//
// A Login that fails leaves no session that ListByUser lists or the cap counts and that no client
// holds: the signed-in session is stored pending and made live by a last call (a sign out
// everywhere meanwhile ends it: ErrNotFound). The call that retires the old token is sent once
// more when its reply is lost (the connection failed or timed out, and ctx is not done): run
// again, it answers as it did. If Login fails before the old token was retired, s is as it was. If
// the retiring call ran and no reply came back at all, s keeps the old token, which names nothing
// now: the user is signed out. If it fails after (the last call failed, or its reply was lost), s
// moves to the new token all the same, and the middleware sends it: the user is signed in on it if
// the last call landed, signed out (the token names nothing) if not.
func (st *Store) Login(ctx context.Context, s *Session, userID string, opts ...LoginOption) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, o := st.begin(ctx, "login", st.rotate.Name())
	o.key = s.key
	defer func() { err = st.end(&o, err) }()
	if userID == "" {
		return errLoginNoUser
	}
	var cfg loginConfig
	for _, opt := range opts {
		opt.apply(&cfg)
	}
	o.script, err = st.rotateLocked(ctx, s, userID, cfg)
	return err
}

// rotateLocked moves s to a new token and returns the name of the script that completed the move.
func (st *Store) rotateLocked(ctx context.Context, s *Session, user string, cfg loginConfig) (string, error) {
	switch {
	case s.destroyed:
		return "", ErrNotFound
	case s.readOnly:
		return "", ErrReadOnly
	case s.sent:
		return "", ErrHeadersSent
	}
	tag := s.token.tag()
	if user != "" {
		tag = st.userTag(user)
	}
	tok, err := newToken(tag)
	if err != nil {
		return "", err
	}
	if s.isNew {
		// Never stored: store it straight under the new token.
		oldTok, oldKey := s.token, s.key
		s.token, s.key = tok, st.keyOf(tok)
		if err := st.createNew(ctx, s, user, cfg); err != nil {
			s.token, s.key = oldTok, oldKey
			return st.create.Name(), err
		}
		s.sendCookie = true
		if user == "" {
			return st.create.Name(), nil
		}
		// Stored pending: made live now. If that fails, the session keeps its new token: signed
		// in if the activation landed after all, signed out if not (the pending session expires).
		return st.activate.Name(), st.activateLocked(ctx, s, true)
	}
	if oldTag, _ := st.tagOfKey(s.key); tag != oldTag {
		return st.activate.Name(), st.loginAcross(ctx, s, user, cfg)
	}
	// Pending changes go first, into the session as read; the move copies the record as it is
	// then, with every save that landed before it.
	if s.dirty() {
		if err := st.saveLocked(ctx, s); err != nil {
			return st.save.Name(), err
		}
	}
	return st.rotate.Name(), st.rotateSameSlot(ctx, s, tok, user, cfg)
}

func (st *Store) rotateSameSlot(ctx context.Context, s *Session, tok Token, user string, cfg loginConfig) error {
	newKey := st.keyOf(tok)
	idx := st.indexOf(tok.tag())
	lifetime := st.lifetime
	if cfg.lifetime > 0 {
		lifetime = cfg.lifetime
	}
	persist := ""
	if cfg.persist != 0 {
		persist = persistFlag(cfg.persist)
	}
	args := []any{st.now(), s.gen, st.grace.Milliseconds(), user, lifetime.Milliseconds(),
		cfg.idle.Milliseconds(), persist, st.pendingTTL().Milliseconds(), st.retiredTTL().Milliseconds()}
	keys := []string{string(s.key), string(newKey), idx}
	v, err := st.rotate.Run(ctx, st.client, keys, args...)
	if resendable(ctx, err) {
		// The reply may be lost after the rotation ran: run again, it answers as it did.
		v, err = st.rotate.Run(ctx, st.client, keys, args...)
	}
	if err != nil {
		return scriptErr("rotate", err)
	}
	arr, status, err := reply(v)
	if err != nil {
		return err
	}
	switch status {
	case statusNotFound:
		return ErrNotFound
	case statusConflict:
		return ErrConflict
	}
	if status != statusOK || len(arr) < 5 {
		return fmt.Errorf("%w: rotate reply %v", ErrCorrupt, arr)
	}
	joining := user != "" && user != s.meta.UserID
	now, _ := arr[1].(int64)
	gen, _ := arr[2].(int64)
	deadline, _ := arr[3].(int64)
	idle, _ := arr[4].(int64)
	s.token, s.key, s.gen, s.sendCookie = tok, newKey, strconv.FormatInt(gen, 10), true
	s.now = time.UnixMilli(now)
	s.meta.Key, s.meta.LastSeen = newKey, s.now
	s.meta.Deadline, s.meta.IdleTimeout = time.UnixMilli(deadline), time.Duration(idle)*time.Millisecond
	if user != "" {
		s.meta.UserID, s.meta.AuthenticatedAt = user, s.now
	}
	if cfg.persist != 0 {
		s.persist = cfg.persist
	}
	s.base = s.size()
	if s.meta.UserID == "" {
		return nil
	}
	// Signed in, the rotated session is pending until made live, under the cap (for a session the
	// user had, by its own sign-in: a sign-in may have taken its place meanwhile). If that fails, s
	// keeps its new token: signed in if the activation landed after all, signed out if not; the
	// old token names nothing either way.
	return st.activateLocked(ctx, s, joining)
}

// loginAcross signs s in by moving it to the user's slot, which one script cannot do on a
// cluster: it reads the record as stored now, stores a copy with this request's pending changes
// under the new token, pending (session_create.lua: not listed, not counted, short-lived), retires
// the old key (session_seal.lua) if it is still the generation and the version that were copied,
// then makes the copy live (session_activate.lua). When a save landed before the seal (another
// version), the copy is deleted and the move starts again, so that no save that completed before
// Login returns is lost; when the session was destroyed or rotated, the copy is deleted and
// Login fails. Nothing is duplicated or revived, and a failure at any step leaves no session
// listed that no client holds: before the seal, the copy stays pending until it expires; after
// it, s holds the copy's token.
func (st *Store) loginAcross(ctx context.Context, s *Session, user string, cfg loginConfig) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		oldIdx, _ := st.indexOfKey(s.key)
		rec, now, movedTo, err := st.read(ctx, "login", string(s.key), oldIdx)
		switch {
		case err != nil:
			return err
		case movedTo != "":
			return ErrConflict // rotated away since this request read it
		case now == 0:
			return ErrNotFound
		}
		cur := st.blank(s.token, s.key)
		if err := cur.fill(now, rec); err != nil {
			return err
		}
		if cur.pending {
			return ErrNotFound // a sign-in that never became live
		}
		if cur.gen != s.gen {
			return ErrConflict
		}
		tok, err := newToken(st.userTag(user))
		if err != nil {
			return err
		}
		moved := st.movedCopy(s, cur, tok, user, cfg)
		// Only this request's pending changes may be refused for size: the record as stored, and
		// what the sign-in adds (_u, _a, _p), are allowed.
		spec := createSpec{user: user, idle: moved.meta.IdleTimeout, lifetime: st.lifetime, created: cur.meta.Created, auth: -1,
			allowed: cur.base + len(fieldUser) + len(user) + len(fieldAuth) + 13 + len(fieldPersist) + 1}
		if cfg.lifetime > 0 {
			spec.lifetime = cfg.lifetime
		}
		if err := st.createLocked(ctx, moved, spec); err != nil {
			return err
		}
		ver := cur.ver
		if ver == "" {
			ver = "0"
		}
		keys := []string{string(s.key), oldIdx}
		args := []any{st.now(), cur.gen, st.grace.Milliseconds(), string(moved.key), ver, st.retiredTTL().Milliseconds()}
		v, err := st.seal.Run(ctx, st.client, keys, args...)
		if resendable(ctx, err) {
			// The reply may be lost after the seal ran: run again, it answers as it did.
			v, err = st.seal.Run(ctx, st.client, keys, args...)
		}
		var status int64
		if err == nil {
			_, status, err = reply(v)
		}
		if err != nil || status != statusOK {
			_ = st.del(context.WithoutCancel(ctx), moved.key)
		}
		switch {
		case err != nil:
			return scriptErr("login", err)
		case status == statusVersionChanged:
			continue // a save landed since the record was read: copy it again
		case status == statusConflict:
			return ErrConflict
		case status != statusOK:
			return ErrNotFound
		}
		// The old key is retired: the session is the new token's from now on, signed in once the
		// activation lands; if it never does, signed out (the pending session expires unseen).
		s.token, s.key, s.gen, s.ver, s.sendCookie = tok, moved.key, moved.gen, "", true
		s.values, s.meta, s.now, s.persist, s.base = moved.values, moved.meta, moved.now, moved.persist, moved.base
		s.clearChanges()
		return st.activateLocked(ctx, s, true)
	}
	return fmt.Errorf("session: login: saves kept landing while the session moved: %w", ErrContended)
}

// movedCopy returns the copy of cur, the record as stored now, that a sign-in stores under tok:
// its attributes and metadata with s's pending changes applied, and the next generation.
func (st *Store) movedCopy(s, cur *Session, tok Token, user string, cfg loginConfig) *Session {
	m := st.blank(tok, st.keyOf(tok))
	m.isNew, m.gen = true, nextGen(cur.gen)
	m.values = cur.values
	for name := range s.changed {
		m.values[name] = s.values[name]
	}
	for name := range s.removed {
		delete(m.values, name)
	}
	m.meta = cur.meta
	m.meta.Key, m.meta.UserID = m.key, ""
	if v, ok := s.metaSet[fieldIdle]; ok {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			m.meta.IdleTimeout = time.Duration(ms) * time.Millisecond
		}
	}
	if cfg.idle > 0 {
		m.meta.IdleTimeout = cfg.idle
	}
	if _, ok := s.metaSet[fieldLabel]; ok {
		m.meta.Label = s.meta.Label
	}
	if _, ok := s.metaSet[fieldIP]; ok {
		m.meta.IP, m.meta.UserAgent = s.meta.IP, s.meta.UserAgent
	}
	m.persist = cur.persist
	if cfg.persist != 0 {
		m.persist = cfg.persist
	}
	if m.meta.IP != "" || m.meta.UserAgent != "" {
		m.setMetaLocked(fieldIP, m.meta.IP)
		m.setMetaLocked(fieldUA, m.meta.UserAgent)
	}
	if m.meta.Label != "" {
		m.setMetaLocked(fieldLabel, m.meta.Label)
	}
	if m.persist != 0 {
		m.setMetaLocked(fieldPersist, persistFlag(m.persist))
	}
	m.meta.Deadline, m.meta.AuthenticatedAt = time.Time{}, time.Time{}
	return m
}

func nextGen(g string) string {
	n, _ := strconv.ParseInt(g, 10, 64)
	return strconv.FormatInt(n+1, 10)
}
