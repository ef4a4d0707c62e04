package session

// Load: one session_touch call checks a session and slides its expiry, and an HGETALL in the same
// transaction reads it.

import (
	"context"
	"fmt"
)

// Load reads the session of tok and slides its expiry, in one round trip (a script call and the
// read, in one transaction): the session now expires when the idle timeout or the absolute
// deadline comes, whichever is sooner. It returns
// ErrMalformed for a token this package did not issue (Redis is not asked), and ErrNotFound for one
// that is unknown, expired or destroyed: the caller then starts a new session and never adopts the
// client's token. A token rotated less than the grace window ago (WithRotationGrace) loads the
// session it moved to, read-only (a second call).
func (st *Store) Load(ctx context.Context, tok Token) (s *Session, err error) {
	ctx, o := st.begin(ctx, "load", st.touch.Name())
	defer func() {
		if s != nil && st.sized(&o) {
			o.key, o.bytes = s.key, payload(s.values)
		}
		err = st.end(&o, err)
	}()
	return st.load(ctx, tok)
}

// load is Load without telemetry.
func (st *Store) load(ctx context.Context, tok Token) (*Session, error) {
	if !tok.valid() {
		return nil, ErrMalformed
	}
	key, idx := st.keyAndIndex(tok)
	v, rec, err := st.touch.RunHGetAll(ctx, st.client, []string{string(key), idx}, st.now())
	if err != nil {
		return nil, scriptErr("load", err)
	}
	now, movedTo, err := touched(v)
	if err != nil {
		return nil, err
	}
	target := key
	if movedTo != "" { // rotated within the grace window: read the session it moved to
		idx, ok := st.indexOfKey(Key(movedTo))
		if !ok {
			return nil, fmt.Errorf("%w: moved to a key of another shape", ErrCorrupt)
		}
		target = Key(movedTo)
		if v, rec, err = st.touch.RunHGetAll(ctx, st.client, []string{movedTo, idx}, st.now()); err != nil {
			return nil, scriptErr("load", err)
		}
		if now, movedTo, err = touched(v); err != nil {
			return nil, err
		}
	}
	if now == 0 || movedTo != "" {
		return nil, ErrNotFound
	}
	// Through a pointer, the session keeps the pointer's key as the key it writes to: besides
	// ErrReadOnly in Go, every script refuses to write through a pointer.
	s := st.blank(tok, key)
	if err := s.fill(now, rec); err != nil {
		return nil, err
	}
	s.readOnly, s.meta.Key = target != key, target
	return s, nil
}
