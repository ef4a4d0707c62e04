package session

// The session record as the scripts read and write it (a Redis hash whose fields fields.go names):
// a script's reply checked and turned into a Session or Metadata, and a session's fields turned
// into a script's arguments; a record's size, counted as the scripts count it.

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// fill reads into s the record a load read at now, the touch script's time in ms.
func (s *Session) fill(now int64, rec map[string]string) error {
	s.now = time.UnixMilli(now)
	s.meta = Metadata{Key: s.key}
	for f, v := range rec {
		if name, ok := strings.CutPrefix(f, attrPrefix); ok {
			s.values[name] = v
			continue
		}
		switch f {
		case fieldGen:
			s.gen = v
		case fieldVersion:
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Errorf("%w: %s = %q", ErrCorrupt, fieldVersion, v)
			}
			s.ver = v
		case fieldPersist:
			s.persist = -1
			if v == "1" {
				s.persist = 1
			}
		case fieldPending:
			s.pending = true
		case fieldSeen:
			// Last seen by an earlier request, checked only: this request's time is now.
			if _, err := strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Errorf("%w: %s = %q", ErrCorrupt, fieldSeen, v)
			}
		default:
			if err := s.meta.set(f, v); err != nil {
				return err
			}
		}
	}
	if s.gen == "" || s.meta.Deadline.IsZero() || s.meta.IdleTimeout == 0 {
		return fmt.Errorf("%w: record lacks its generation, deadline or idle timeout", ErrCorrupt)
	}
	s.meta.LastSeen = s.now
	s.base = s.size()
	return nil
}

// set stores metadata field f (as the scripts name it) from its stored value.
func (m *Metadata) set(f, v string) error {
	ms := func() (time.Time, error) {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: %s = %q", ErrCorrupt, f, v)
		}
		return time.UnixMilli(n), nil
	}
	var err error
	switch f {
	case fieldCreated:
		m.Created, err = ms()
	case fieldSeen:
		m.LastSeen, err = ms()
	case fieldDeadline:
		m.Deadline, err = ms()
	case fieldAuth:
		m.AuthenticatedAt, err = ms()
	case fieldIdle:
		var t time.Time
		t, err = ms()
		m.IdleTimeout = time.Duration(t.UnixMilli()) * time.Millisecond
	case fieldUser:
		m.UserID = v
	case fieldIP:
		m.IP = v
	case fieldUA:
		m.UserAgent = v
	case fieldLabel:
		m.Label = v
	}
	return err
}

// reply checks that v is an array led by an integer status.
func reply(v any) ([]any, int64, error) {
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return nil, 0, fmt.Errorf("%w: reply %T", ErrCorrupt, v)
	}
	status, ok := arr[0].(int64)
	if !ok {
		return nil, 0, fmt.Errorf("%w: reply status %T", ErrCorrupt, arr[0])
	}
	return arr, status, nil
}

// touched reads the touch script's reply: the instant (ms) a live session was read at, or the
// key a session rotated within its grace window moved to; neither for no such session.
func touched(v any) (now int64, movedTo string, err error) {
	switch v := v.(type) {
	case int64:
		if v >= 0 {
			return v, "", nil
		}
	case string:
		if v != "" {
			return 0, v, nil
		}
	}
	return 0, "", fmt.Errorf("%w: touch reply %#v", ErrCorrupt, v)
}

// listFields are the fields session_user.lua lists for each session, after its key.
var listFields = [...]string{fieldCreated, fieldSeen, fieldDeadline, fieldAuth, fieldIdle, fieldIP, fieldUA, fieldLabel}

// listed reads the metadata of userID's n sessions from session_user.lua's list: for each, its key
// then listFields ("" for a field the record lacks).
func listed(arr []any, n int64, userID string) ([]Metadata, error) {
	const width = int64(1 + len(listFields))
	if int64(len(arr)) != width*n {
		return nil, fmt.Errorf("%w: list reply of %d elements for %d sessions", ErrCorrupt, 1+len(arr), n)
	}
	out := make([]Metadata, 0, n)
	for i := int64(0); i < n; i++ {
		row := arr[width*i : width*(i+1)]
		k, _ := row[0].(string)
		m := Metadata{Key: Key(k), UserID: userID}
		for j, f := range listFields {
			if s, _ := row[1+j].(string); s != "" {
				if err := m.set(f, s); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// appendRecord appends the fields of a new record as session_create.lua takes them (name, value,
// ...): the generation, every attribute, and the metadata fields set.
func (s *Session) appendRecord(args []any) []any {
	args = append(args, fieldGen, s.gen)
	for name, v := range s.values {
		args = append(args, attrPrefix+name, v)
	}
	for f, v := range s.metaSet {
		args = append(args, f, v)
	}
	return args
}

// appendChanges appends what a save writes as session_save.lua takes it: name, value for each
// attribute changed and metadata field set, then the name of each attribute removed.
func (s *Session) appendChanges(args []any) []any {
	for name := range s.changed {
		args = append(args, attrPrefix+name, s.values[name])
	}
	for f, v := range s.metaSet {
		args = append(args, f, v)
	}
	for name := range s.removed {
		args = append(args, attrPrefix+name)
	}
	return args
}

// persistFlag is the stored form (_p) of a cookie's persistence: 1 outlives the browser, -1 not.
func persistFlag(p int8) string {
	if p > 0 {
		return "1"
	}
	return "0"
}

// size counts the session as the scripts count a record: for every field, the length of its name
// plus the length of its value; attributes are fields "a:<name>", metadata fields start with '_'.
// It counts what this request knows: the record as read, with this request's changes, and the
// version _v as read (a save increments it: a few bytes, which the scripts' count decides).
// Times not known yet (a new session's) count as 13 digits, as every instant from 2001 to 2286
// in ms.
func (s *Session) size() int {
	n := 0
	for name, v := range s.values {
		n += 2 + len(name) + len(v)
	}
	m := &s.meta
	n += 2 + msLen(m.Created) + 2 + msLen(s.now) + 2 + msLen(m.Deadline)
	n += 2 + digits(m.IdleTimeout.Milliseconds()) + 2 + len(s.gen)
	if s.ver != "" {
		n += 2 + len(s.ver)
	}
	if !m.AuthenticatedAt.IsZero() {
		n += 2 + msLen(m.AuthenticatedAt)
	}
	if m.UserID != "" {
		n += 2 + len(m.UserID)
	}
	if m.IP != "" || m.UserAgent != "" {
		n += 3 + len(m.IP) + 3 + len(m.UserAgent)
	}
	if m.Label != "" {
		n += 2 + len(m.Label)
	}
	if s.persist != 0 {
		n += 2 + 1
	}
	return n
}

// msLen is the length of t in decimal milliseconds since the epoch; 13 for the zero time.
func msLen(t time.Time) int {
	if t.IsZero() {
		return 13
	}
	return digits(t.UnixMilli())
}

// digits is the length of n in decimal.
func digits(n int64) int {
	d := 1
	if n < 0 {
		d, n = 2, -n
	}
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}
