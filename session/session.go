package session

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Session is one client's session: attributes, encoded by the store's Codec, and metadata. Reading
// and changing attributes touches only memory; Store.Save writes the changes (the middleware does
// that after the handler). A Session is safe for concurrent use by the goroutines of one request.
type Session struct {
	mu    sync.Mutex
	store *Store

	token Token
	key   Key    // where writes go; for a read-only session, the rotated token's pointer
	gen   string // generation, as read: changed by every rotation
	ver   string // version (changed by every save) as read by a sign-in; "" when not read or absent
	meta  Metadata
	now   time.Time // the server's time at the last load, create or rotation: "this request's time"
	isNew bool      // not stored yet

	// readOnly: loaded through a rotated token within its grace window. Nothing is written
	// through it (ErrReadOnly), and its key is the old token's pointer, which every script refuses
	// to write through.
	readOnly bool
	// pending: a sign-in's session not made live yet (session_create.lua), as read: readable only
	// through the old token's grace pointer.
	pending bool

	values  map[string]string   // attribute name -> encoded value (the codec's bytes), as read plus local changes
	changed map[string]struct{} // attributes set since the last save
	removed map[string]struct{} // attributes removed since the last save
	metaSet map[string]string   // metadata fields to write at the next save (_l, _i, _d, _ip, _ua)

	// Settings for a session not stored yet (SetLifetime, SetDeadline, a LoginOption).
	idle, lifetime time.Duration
	deadline       time.Time
	persist        int8 // the cookie outlives the browser: 1 yes, -1 no, 0 as the middleware says

	base int // the record's size as last read or written, counted as the scripts count it

	destroyed  bool
	sendCookie bool // a new token or a new deadline the client's cookie does not have yet
	sent       bool // the middleware committed the response's headers: no cookie can be sent now
}

// Metadata describes a session for "active sessions" pages and freshness checks.
type Metadata struct {
	Key    Key
	UserID string // "" for an anonymous session
	// Created is when the session was first stored; a sign-in keeps it.
	Created time.Time
	// LastSeen is, for a session read by Load (or stored, rotated or signed in by this request),
	// the Redis server's time of that operation: this request's time. In ListByUser's results it
	// is when the session was last read or saved, to the second.
	LastSeen        time.Time
	Deadline        time.Time // the absolute deadline: the session ends then, whatever its activity
	IdleTimeout     time.Duration
	AuthenticatedAt time.Time // zero if never signed in
	IP              string
	UserAgent       string
	Label           string
}

// Token returns the session's token, the secret to send the client.
func (s *Session) Token() Token { s.mu.Lock(); defer s.mu.Unlock(); return s.token }

// Key returns the session's storage key, safe to log. For a session loaded through a rotated token
// within its grace window (ReadOnly), it is that token's key, which points to the session;
// Metadata().Key is the session's own.
func (s *Session) Key() Key { s.mu.Lock(); defer s.mu.Unlock(); return s.key }

// Metadata returns the session's metadata as of its last read or write, with this request's
// changes (SetLabel, SetLifetime, SetDeadline).
func (s *Session) Metadata() Metadata { s.mu.Lock(); defer s.mu.Unlock(); return s.meta }

// UserID returns the signed-in user, or "".
func (s *Session) UserID() string { s.mu.Lock(); defer s.mu.Unlock(); return s.meta.UserID }

// IsNew reports whether the session has not been stored yet.
func (s *Session) IsNew() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.isNew }

// ReadOnly reports whether the session was loaded through a token that was rotated less than the
// store's grace window ago (WithRotationGrace). Such a session can be read, but Save, Rotate,
// Login and DestroyOthers refuse it with ErrReadOnly: only the holder of the new token may change
// the session. Destroy ends it (the session the token was rotated to): a sign-out.
func (s *Session) ReadOnly() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.readOnly }

// Deadline returns the session's absolute deadline: it ends then, however active it is. It is
// zero for a new session until it is stored, unless SetDeadline set it.
func (s *Session) Deadline() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return s.meta.Deadline }

// AuthenticatedWithin reports whether the user signed in (Store.Login) less than d ago, judged at
// this request's time: the Redis server's time when the session was loaded (or stored, rotated or
// signed in) by this request. It is the check before a sensitive action.
func (s *Session) AuthenticatedWithin(d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.meta.AuthenticatedAt.IsZero() {
		return false
	}
	return s.now.Sub(s.meta.AuthenticatedAt) < d
}

// Get decodes attribute name into dst (a pointer) and reports whether it was present.
func (s *Session) Get(name string, dst any) (bool, error) {
	s.mu.Lock()
	v, ok := s.values[name]
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := s.store.codec.Unmarshal([]byte(v), dst); err != nil {
		return true, fmt.Errorf("%w: attribute %q: %v", ErrCorrupt, name, err)
	}
	return true, nil
}

// getAs returns attribute name decoded as a T, or T's zero value when it is absent or does not
// decode as a T.
func getAs[T any](s *Session, name string) T {
	var v T
	if ok, err := s.Get(name, &v); !ok || err != nil {
		var zero T
		return zero
	}
	return v
}

// GetString returns attribute name as a string, or "" when it is absent or not a string.
func (s *Session) GetString(name string) string { return getAs[string](s, name) }

// GetInt returns attribute name as an int, or 0 when it is absent or not a number.
func (s *Session) GetInt(name string) int { return getAs[int](s, name) }

// GetInt64 returns attribute name as an int64, or 0 when it is absent or not an integer.
func (s *Session) GetInt64(name string) int64 { return getAs[int64](s, name) }

// GetFloat64 returns attribute name as a float64, or 0 when it is absent or not a number.
func (s *Session) GetFloat64(name string) float64 { return getAs[float64](s, name) }

// GetBool returns attribute name as a bool, or false when it is absent or not a bool.
func (s *Session) GetBool(name string) bool { return getAs[bool](s, name) }

// GetBytes returns attribute name as a byte slice, or nil when it is absent or not bytes as the
// codec encodes them (JSON: a base64 string; msgpack: bin).
func (s *Session) GetBytes(name string) []byte { return getAs[[]byte](s, name) }

// GetTime returns attribute name as a time.Time, or the zero time when it is absent or not a time
// as the codec encodes one (JSON: RFC 3339; msgpack: its timestamp extension).
func (s *Session) GetTime(name string) time.Time { return getAs[time.Time](s, name) }

// Has reports whether attribute name is present.
func (s *Session) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.values[name]
	return ok
}

// Names returns the names of the attributes present, sorted, without the flash messages.
func (s *Session) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := slices.Sorted(maps.Keys(s.values))
	return slices.DeleteFunc(names, func(n string) bool { return strings.HasPrefix(n, flashPrefix) })
}

// Put sets attribute name to v, encoded now with the store's Codec. Only the attributes Put or
// Removed are written at the next save; concurrent requests changing other attributes keep theirs.
//
// After Destroy, Put starts a new session, with a new token (as a sign-out page that leaves a
// flash message wants): the middleware sends its cookie. That fails with ErrHeadersSent once the
// response has started, as the cookie could not be sent; so does a Put into a new session the
// middleware did not store before the response started (it had nothing in it then).
func (s *Session) Put(name string, v any) error {
	b, err := s.store.codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("session: encoding attribute %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.destroyed:
		if err := s.restartLocked(); err != nil {
			return err
		}
	case s.isNew && s.sent:
		// A new session that the middleware did not store before the response: its cookie can no
		// longer be sent, so nothing put now could ever be read back.
		return fmt.Errorf("session: Put into a new session: %w", ErrHeadersSent)
	}
	s.values[name] = string(b)
	if s.changed == nil {
		s.changed = map[string]struct{}{}
	}
	s.changed[name] = struct{}{}
	delete(s.removed, name)
	return nil
}

// restartLocked turns a destroyed session into a new one, with a new token, keeping the client's
// IP address and user agent.
func (s *Session) restartLocked() error {
	if s.sent {
		return fmt.Errorf("session: Put after Destroy: %w", ErrHeadersSent)
	}
	tag, err := randomTag()
	if err != nil {
		return err
	}
	tok, err := newToken(tag)
	if err != nil {
		return err
	}
	ip, ua := s.meta.IP, s.meta.UserAgent
	s.token, s.key, s.gen, s.ver, s.meta, s.now = tok, s.store.keyOf(tok), "1", "", Metadata{}, time.Time{}
	s.isNew, s.readOnly, s.destroyed, s.sendCookie = true, false, false, true
	s.values, s.changed, s.removed, s.metaSet = map[string]string{}, nil, nil, nil
	s.idle, s.lifetime, s.deadline, s.persist, s.base = 0, 0, time.Time{}, 0, 0
	s.meta.IdleTimeout = s.store.idle
	if ip != "" || ua != "" {
		s.setMetaLocked(fieldIP, ip)
		s.setMetaLocked(fieldUA, ua)
		s.meta.IP, s.meta.UserAgent = ip, ua
	}
	return nil
}

// Remove deletes attribute name.
func (s *Session) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(name)
}

func (s *Session) removeLocked(name string) {
	if _, ok := s.values[name]; !ok && s.isNew {
		return
	}
	delete(s.values, name)
	delete(s.changed, name)
	if s.removed == nil {
		s.removed = map[string]struct{}{}
	}
	s.removed[name] = struct{}{}
}

// Pop decodes attribute name into dst and removes it: a value shown once.
func (s *Session) Pop(name string, dst any) (bool, error) {
	ok, err := s.Get(name, dst)
	if ok {
		s.Remove(name)
	}
	return ok, err
}

// PopString returns attribute name as a string and removes it, or "" when it is absent.
func (s *Session) PopString(name string) string {
	var v string
	if ok, err := s.Pop(name, &v); !ok || err != nil {
		return ""
	}
	return v
}

// flashPrefix starts the attribute names of flash messages; Names leaves them out.
const flashPrefix = "gatehouse.flash:"

// AddFlash adds a flash message: one shown once, by the next request that calls Flashes. Each
// message is an attribute of its own, so that messages added by concurrent requests all land.
func (s *Session) AddFlash(msg string) error {
	var r [4]byte
	if _, err := rand.Read(r[:]); err != nil {
		return fmt.Errorf("session: reading crypto/rand: %w", err)
	}
	// Named by the time they were added, then at random: Flashes returns them in that order.
	name := fmt.Sprintf("%s%016x%08x", flashPrefix, time.Now().UnixNano(), binary.BigEndian.Uint32(r[:]))
	return s.Put(name, msg)
}

// Flashes returns the flash messages, oldest first, and removes them; nil when there are none.
// The messages that another request adds meanwhile stay for the next call. It is the way to show
// a message after a redirect; Pop suits a single value of any type.
func (s *Session) Flashes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.values {
		if strings.HasPrefix(n, flashPrefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var out []string
	for _, n := range names {
		var msg string
		if err := s.store.codec.Unmarshal([]byte(s.values[n]), &msg); err == nil {
			out = append(out, msg)
		}
		s.removeLocked(n)
	}
	return out
}

// SetLabel sets a label for "active sessions" pages, such as a device name.
func (s *Session) SetLabel(label string) {
	s.setMeta(fieldLabel, label, func(m *Metadata) { m.Label = label })
}

// maxClientField is how many bytes of a client's IP address or user agent a session keeps.
const maxClientField = 256

// SetClient records the client's IP address and user agent for "active sessions" pages. Each is
// cut to its first 256 bytes, so that a client's oversized header cannot fill its session.
func (s *Session) SetClient(ip, userAgent string) {
	ip, userAgent = truncate(ip, maxClientField), truncate(userAgent, maxClientField)
	s.setMeta(fieldIP, ip, func(m *Metadata) { m.IP = ip })
	s.setMeta(fieldUA, userAgent, func(m *Metadata) { m.UserAgent = userAgent })
}

// truncate cuts s to at most n bytes, at the start of a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// SetLifetime overrides this session's idle timeout and absolute lifetime (counted from its
// creation), for example a longer one for "remember me". Zero leaves a value as it is. A changed
// deadline is written at the next save, with the user's index and, through the middleware, the
// cookie's expiry following it. A lifetime that is already over ends the session at that save.
func (s *Session) SetLifetime(idle, lifetime time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isNew {
		if idle > 0 {
			s.idle = idle
			s.meta.IdleTimeout = idle
		}
		if lifetime > 0 {
			s.lifetime, s.deadline = lifetime, time.Time{}
		}
		return
	}
	if idle > 0 {
		s.setMetaLocked(fieldIdle, strconv.FormatInt(idle.Milliseconds(), 10))
		s.meta.IdleTimeout = idle
	}
	if lifetime > 0 {
		s.setDeadlineLocked(s.meta.Created.Add(lifetime))
	}
}

// SetDeadline sets the session's absolute deadline to t, later (to extend a session the user
// wants kept) or sooner. It is written at the next save, with the user's index and, through the
// middleware, the cookie's expiry following it. A deadline that is already past ends the session
// at that save.
func (s *Session) SetDeadline(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isNew {
		s.deadline, s.lifetime = t, 0
		s.meta.Deadline = t
		return
	}
	s.setDeadlineLocked(t)
}

func (s *Session) setDeadlineLocked(t time.Time) {
	t = time.UnixMilli(t.UnixMilli())
	s.setMetaLocked(fieldDeadline, strconv.FormatInt(t.UnixMilli(), 10))
	s.meta.Deadline = t
}

func (s *Session) setMeta(field, value string, apply func(*Metadata)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setMetaLocked(field, value)
	apply(&s.meta)
}

func (s *Session) setMetaLocked(field, value string) {
	if s.metaSet == nil {
		s.metaSet = map[string]string{}
	}
	s.metaSet[field] = value
}

// persistent reports whether the session's cookie should outlive the browser: as its sign-in
// chose (RememberMe, UntilBrowserCloses), or def.
func (s *Session) persistent(def bool) bool {
	switch s.persist {
	case 1:
		return true
	case -1:
		return false
	}
	return def
}

// dirty reports whether there is anything to save.
func (s *Session) dirty() bool {
	return len(s.changed) > 0 || len(s.removed) > 0 || len(s.metaSet) > 0
}

func (s *Session) clearChanges() {
	clear(s.changed)
	clear(s.removed)
	clear(s.metaSet)
}
