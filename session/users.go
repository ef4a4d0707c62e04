package session

// Per-user control: the user's index (a sorted set in the user's slot) lists their sessions, and
// the operations on all of them read it, then run a script over its members, again while a
// sign-in or rotation changes it in between.

import (
	"context"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/script"
)

// maxAttempts bounds the retries of an operation that another request keeps overtaking: a
// per-user operation whose index changed after it was read, a capped sign-in, or a sign-in that
// moves a session to another slot while saves keep landing on it. Past it: ErrContended.
const maxAttempts = 10

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
	return listed(arr[1:], n, userID)
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
// index entry evicted), or that a failed Login left on a token never made live, with ErrNotFound:
// in both cases it ends nothing.
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
		return nil, 0, errNoUser
	}
	idx := st.indexOf(st.userTag(userID))
	return st.runIndexed(ctx, st.user, mode, []string{idx}, idx, true, statusUserReread, st.now(), userID, mode, string(keep))
}

// runIndexed runs script over keys and, when withMembers, the members of the index idx read just
// before; again, reading the index again, while the script answers retry: the index changed
// between the read and the script (a sign-in or a rotation landed). After maxAttempts:
// ErrContended.
func (st *Store) runIndexed(ctx context.Context, s *script.Script, op string, keys []string, idx string, withMembers bool, retry int64, args ...any) ([]any, int64, error) {
	n := len(keys)
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if withMembers {
			members, err := st.client.ZRange(ctx, idx, 0, -1).Result()
			if err != nil {
				return nil, 0, fmt.Errorf("session: %s: reading the user's sessions: %w", op, err)
			}
			keys = append(keys[:n], members...)
		}
		v, err := s.Run(ctx, st.client, keys, args...)
		if err != nil {
			return nil, 0, scriptErr(op, err)
		}
		arr, status, err := reply(v)
		if err != nil || status != retry {
			return arr, status, err
		}
	}
	return nil, 0, fmt.Errorf("session: %s: the user's sessions kept changing: %w", op, ErrContended)
}
