package session

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Session is one client's session: attributes, encoded by the store's Codec, and metadata. Reading
// and changing attributes touches only memory; Store.Save writes the changes (the middleware does
// that after the handler). A Session is safe for concurrent use by the goroutines of one request.
type Session struct {
	mu    sync.Mutex
	store *Store

	token Token
	key   Key
	gen   string
	meta  Metadata
	isNew bool // not stored yet

	values  map[string][]byte   // attribute name -> encoded value, as read plus local changes
	changed map[string]struct{} // attributes set since the last save
	removed map[string]struct{} // attributes removed since the last save
	metaSet map[string]string   // metadata fields to write at the next save (_l, _i, _d, _ip, _ua)

	idle, lifetime time.Duration // overrides for a session not stored yet (SetLifetime)

	destroyed    bool
	tokenChanged bool // a new token the client has not been sent yet
}

// Metadata describes a session for "active sessions" pages and freshness checks.
type Metadata struct {
	Key             Key
	UserID          string // "" for an anonymous session
	Created         time.Time
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

// Key returns the session's storage key, safe to log.
func (s *Session) Key() Key { s.mu.Lock(); defer s.mu.Unlock(); return s.key }

// Metadata returns the session's metadata as of its last read or write.
func (s *Session) Metadata() Metadata { s.mu.Lock(); defer s.mu.Unlock(); return s.meta }

// UserID returns the signed-in user, or "".
func (s *Session) UserID() string { s.mu.Lock(); defer s.mu.Unlock(); return s.meta.UserID }

// IsNew reports whether the session has not been stored yet.
func (s *Session) IsNew() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.isNew }

// AuthenticatedWithin reports whether the user signed in (Store.Login) less than d ago, by the
// Redis server's clock as of the session's last read: the check before a sensitive action.
func (s *Session) AuthenticatedWithin(d time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.meta.AuthenticatedAt.IsZero() {
		return false
	}
	return s.meta.LastSeen.Sub(s.meta.AuthenticatedAt) < d
}

// Get decodes attribute name into dst (a pointer) and reports whether it was present.
func (s *Session) Get(name string, dst any) (bool, error) {
	s.mu.Lock()
	v, ok := s.values[name]
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := s.store.codec.Unmarshal(v, dst); err != nil {
		return true, fmt.Errorf("%w: attribute %q: %v", ErrCorrupt, name, err)
	}
	return true, nil
}

// GetString returns attribute name as a string, or "" when it is absent or not a string.
func (s *Session) GetString(name string) string {
	var v string
	if ok, err := s.Get(name, &v); !ok || err != nil {
		return ""
	}
	return v
}

// GetInt returns attribute name as an int, or 0 when it is absent or not a number.
func (s *Session) GetInt(name string) int {
	var v int
	if ok, err := s.Get(name, &v); !ok || err != nil {
		return 0
	}
	return v
}

// GetBool returns attribute name as a bool, or false when it is absent or not a bool.
func (s *Session) GetBool(name string) bool {
	var v bool
	if ok, err := s.Get(name, &v); !ok || err != nil {
		return false
	}
	return v
}

// Has reports whether attribute name is present.
func (s *Session) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.values[name]
	return ok
}

// Names returns the names of the attributes present, sorted.
func (s *Session) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.values))
}

// Put sets attribute name to v, encoded now with the store's Codec. Only the attributes Put or
// Removed are written at the next save; concurrent requests changing other attributes keep theirs.
func (s *Session) Put(name string, v any) error {
	b, err := s.store.codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("session: encoding attribute %q: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[name] = b
	if s.changed == nil {
		s.changed = map[string]struct{}{}
	}
	s.changed[name] = struct{}{}
	delete(s.removed, name)
	return nil
}

// Remove deletes attribute name.
func (s *Session) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
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

// Pop decodes attribute name into dst and removes it: a flash message, shown once.
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

// SetLabel sets a label for "active sessions" pages, such as a device name.
func (s *Session) SetLabel(label string) {
	s.setMeta("_l", label, func(m *Metadata) { m.Label = label })
}

// SetClient records the client's IP address and user agent for "active sessions" pages.
func (s *Session) SetClient(ip, userAgent string) {
	s.setMeta("_ip", ip, func(m *Metadata) { m.IP = ip })
	s.setMeta("_ua", userAgent, func(m *Metadata) { m.UserAgent = userAgent })
}

// SetLifetime overrides this session's idle timeout and absolute lifetime (counted from its
// creation), for example a longer one for "remember me". Zero leaves a value as it is.
func (s *Session) SetLifetime(idle, lifetime time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isNew {
		if idle > 0 {
			s.idle = idle
		}
		if lifetime > 0 {
			s.lifetime = lifetime
		}
		return
	}
	if idle > 0 {
		s.setMetaLocked("_i", fmt.Sprint(idle.Milliseconds()))
		s.meta.IdleTimeout = idle
	}
	if lifetime > 0 {
		d := s.meta.Created.Add(lifetime)
		s.setMetaLocked("_d", fmt.Sprint(d.UnixMilli()))
		s.meta.Deadline = d
	}
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

// dirty reports whether there is anything to save.
func (s *Session) dirty() bool {
	return len(s.changed) > 0 || len(s.removed) > 0 || len(s.metaSet) > 0
}

func (s *Session) clearChanges() {
	clear(s.changed)
	clear(s.removed)
	clear(s.metaSet)
}
