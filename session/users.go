package session

import (
	"context"
	"errors"
	"fmt"
)

// ListByUser returns the metadata of userID's live sessions, and removes dead ones from the index.
// The list is exact at one instant: a session signed in or rotated while it reads is either listed
// under its new key or makes it read again. The user's index is authoritative: a signed-in session
// it does not list (its entry, or the whole index, was evicted) is signed out, and every operation
// treats it as not found.
func (st *Store) ListByUser(ctx context.Context, userID string) (list []Metadata, err error) {
	ctx, o := st.begin(ctx, "list", st.user.Name())
	defer func() { o.count = len(list); err = st.end(&o, err) }()
	arr, n, err := st.userOp(ctx, userID, "list", "")
	if err != nil {
		return nil, err
	}
	if int64(len(arr)) != 1+9*n {
		return nil, fmt.Errorf("%w: list reply of %d elements for %d sessions", ErrCorrupt, len(arr), n)
	}
	out := make([]Metadata, 0, n)
	fields := []string{"", fieldCreated, fieldSeen, fieldDeadline, fieldAuth, fieldIdle, fieldIP, fieldUA, fieldLabel} // as session_user.lua lists them
	for i := int64(0); i < n; i++ {
		row := arr[1+9*i : 1+9*(i+1)]
		k, _ := row[0].(string)
		m := Metadata{Key: Key(k), UserID: userID}
		for j := 1; j < len(fields); j++ {
			if s, _ := row[j].(string); s != "" {
				if err := m.set(fields[j], s); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// DestroyAllForUser ends every session of userID ("sign out everywhere") and returns how many.
// When it returns, no session the user had when it was called can be used, under any token it was
// rotated to meanwhile: a rotation or sign-in that lands between its reading the user's index and
// acting on it makes it read the index again (at most a few times, then ErrContended).
func (st *Store) DestroyAllForUser(ctx context.Context, userID string) (int, error) {
	return st.destroyUser(ctx, userID, "")
}

// DestroyOthers ends every other session of s's user ("sign out other devices") and returns how
// many, with the guarantee of DestroyAllForUser. Through a read-only session it fails with
// ErrReadOnly; through a session that is signed out meanwhile (ended by DestroyAllForUser, or its
// index entry evicted) with ErrNotFound: in both cases it ends nothing.
func (st *Store) DestroyOthers(ctx context.Context, s *Session) (int, error) {
	s.mu.Lock()
	user, key, readOnly := s.meta.UserID, s.key, s.readOnly
	s.mu.Unlock()
	switch {
	case readOnly:
		return 0, ErrReadOnly
	case user == "":
		return 0, nil
	}
	return st.destroyUser(ctx, user, key)
}

func (st *Store) destroyUser(ctx context.Context, userID string, keep Key) (n int, err error) {
	ctx, o := st.begin(ctx, "destroy_user", st.user.Name())
	defer func() { o.count = n; err = st.end(&o, err) }()
	_, count, err := st.userOp(ctx, userID, "destroy", keep)
	if count == statusKeepSignedOut {
		return 0, fmt.Errorf("session: the session is signed out: %w", ErrNotFound)
	}
	return int(count), err
}

// userOp reads the user's index and runs session_user.lua over its members, again while the
// script finds members it was not given (a sign-in or rotation in between).
func (st *Store) userOp(ctx context.Context, userID, mode string, keep Key) ([]any, int64, error) {
	if userID == "" {
		return nil, 0, errors.New("session: empty user ID")
	}
	idx := st.indexOf(st.userTag(userID))
	return st.runIndexed(ctx, st.user, mode, []string{idx}, idx, true, statusUserReread, st.now(), userID, mode, string(keep))
}
