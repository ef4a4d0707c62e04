package session

// Load: an HGETALL reads a session and a session_touch call checks it and slides its expiry, in one
// round trip.

import (
	"context"
	"fmt"
)

// Load reads the session of tok and slides its expiry, in one round trip (the read, and a script
// call that checks the session and slides its expiry): the session now expires when the idle
// timeout or the absolute deadline comes, whichever is sooner. It returns
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
	rec, now, movedTo, err := st.read(ctx, "load", string(key), idx)
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
		if rec, now, movedTo, err = st.read(ctx, "load", movedTo, idx); err != nil {
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
	if s.pending && !s.readOnly {
		return nil, ErrNotFound // a sign-in not made live: no token of its own loads it
	}
	return s, nil
}

// read makes a load's round trip on key, whose tag bucket's index is idx: it reads the record
// (HGETALL) and then runs session_touch, whose verdict holds for the record read, since a session
// that is not live never becomes live again (script.RunHGetAll), but for a pending sign-in, which
// load refuses through its own token (docs/sessions.md). It returns the record and the
// verdict: the instant a live session was read at, or the key a rotated session moved to; neither
// for no such session. A live verdict with a read that found no session (nothing, or a rotation
// pointer) means the two commands ran in the other order (a Cluster's redirection can do that):
// the round trip is made once more.
func (st *Store) read(ctx context.Context, op, key, idx string) (rec map[string]string, now int64, movedTo string, err error) {
	for range 2 {
		var v any
		if rec, v, err = st.touch.RunHGetAll(ctx, st.client, []string{key, idx}, st.now()); err != nil {
			return nil, 0, "", scriptErr(op, err)
		}
		if now, movedTo, err = touched(v); err != nil || now == 0 || rec[fieldDeadline] != "" {
			return rec, now, movedTo, err
		}
	}
	return nil, 0, "", ErrNotFound
}
