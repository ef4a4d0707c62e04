package session

// Load: one session_touch call reads a session and slides its expiry.

import (
	"context"
	"fmt"
)

// Load reads the session of tok and slides its expiry, in one script call: the new expiry is the
// idle timeout or the time left to the absolute deadline, whichever is sooner. It returns
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
	arr, err := st.touch.RunStrings(ctx, st.client, []string{string(key), idx}, st.now())
	if err != nil {
		return nil, scriptErr("load", err)
	}
	status, err := replyStrings(arr)
	if err != nil {
		return nil, err
	}
	target := key
	if status == statusMoved { // rotated within the grace window: read the session it moved to
		if len(arr) < 2 {
			return nil, fmt.Errorf("%w: moved without a target", ErrCorrupt)
		}
		t := arr[1]
		idx, ok := st.indexOfKey(Key(t))
		if !ok {
			return nil, fmt.Errorf("%w: moved to a key of another shape", ErrCorrupt)
		}
		target = Key(t)
		if arr, err = st.touch.RunStrings(ctx, st.client, []string{t, idx}, st.now()); err != nil {
			return nil, scriptErr("load", err)
		}
		if status, err = replyStrings(arr); err != nil {
			return nil, err
		}
	}
	if status != statusOK {
		return nil, ErrNotFound
	}
	// Through a pointer, the session keeps the pointer's key as the key it writes to: besides
	// ErrReadOnly in Go, every script refuses to write through a pointer.
	s := st.blank(tok, key)
	if err := s.fill(arr[1:]); err != nil {
		return nil, err
	}
	s.readOnly, s.meta.Key = target != key, target
	return s, nil
}
