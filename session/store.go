package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

var (
	// ErrNotFound: no such session. It never existed, expired (idle or absolute), or was destroyed.
	ErrNotFound = errors.New("session: not found")
	// ErrConflict: the session was rotated to a new token, or replaced, since this request read
	// it; the write was refused so that the old token is never revived.
	ErrConflict = errors.New("session: conflict: rotated or replaced since it was read")
	// ErrMalformed: a token that this package never issued (wrong length or alphabet). It is refused
	// before Redis is asked.
	ErrMalformed = errors.New("session: malformed token")
	// ErrTooLarge: the attributes would exceed the store's size cap; nothing was written.
	ErrTooLarge = errors.New("session: too large")
	// ErrCorrupt: the stored record or an attribute cannot be decoded.
	ErrCorrupt = errors.New("session: corrupt stored data")
)

// Store keeps sessions in Redis. It is safe for concurrent use; make one and share it.
type Store struct {
	client     redis.UniversalClient
	prefix     string
	codec      Codec
	idle       time.Duration
	lifetime   time.Duration
	maxSize    int
	grace      time.Duration
	hmacKey    []byte
	maxPerUser int
	clock      func() time.Time

	touch, save, create, rotate, seal, user *gatehouse.Script

	tp      trace.TracerProvider
	mp      metric.MeterProvider
	keyHash *telemetry.KeyHasher
	tracer  *telemetry.Tracer
	inst    instruments
}

// Option configures a Store.
type Option interface{ apply(*Store) }

type optionFunc func(*Store)

func (f optionFunc) apply(s *Store) { f(s) }

// Defaults of a Store without options.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultLifetime    = 12 * time.Hour
	DefaultMaxSize     = 16 << 10
	DefaultKeyPrefix   = "gh:s:"
)

// WithIdleTimeout sets how long a session lives without being read or saved (default 30 minutes).
func WithIdleTimeout(d time.Duration) Option { return optionFunc(func(s *Store) { s.idle = d }) }

// WithLifetime sets the absolute lifetime: a session ends this long after its creation (or after
// its sign-in), however active it is (default 12 hours).
func WithLifetime(d time.Duration) Option { return optionFunc(func(s *Store) { s.lifetime = d }) }

// WithMaxSize caps the encoded size of a session's attributes, in bytes (default 16 KiB). A save
// that would exceed it fails with ErrTooLarge and writes nothing.
func WithMaxSize(bytes int) Option { return optionFunc(func(s *Store) { s.maxSize = bytes }) }

// WithCodec sets how attribute values are encoded (default JSON).
func WithCodec(c Codec) Option { return optionFunc(func(s *Store) { s.codec = c }) }

// WithKeyPrefix sets the prefix of every key the store writes (default DefaultKeyPrefix). It must
// not contain '{' or '}'.
func WithKeyPrefix(p string) Option { return optionFunc(func(s *Store) { s.prefix = p }) }

// WithRotationGrace keeps a rotated token readable for d, pointing to the new session, so that
// requests the client already had in flight when it signed in do not lose their session. Writes
// through the old token are refused all the same. The default, 0, is the safest: an old token
// stops working at once.
func WithRotationGrace(d time.Duration) Option { return optionFunc(func(s *Store) { s.grace = d }) }

// WithHMACKey stores sessions under HMAC-SHA256(key, token) instead of SHA-256(token), and derives
// user slot tags the same way, so that neither Redis contents nor cookies can be linked to a token
// or a user without the key. Use at least 32 random bytes.
func WithHMACKey(key []byte) Option {
	return optionFunc(func(s *Store) { s.hmacKey = append([]byte(nil), key...) })
}

// WithMaxSessionsPerUser caps how many sessions one user may have: a sign-in beyond the cap ends
// the user's oldest sessions. The default, 0, sets no cap.
func WithMaxSessionsPerUser(n int) Option { return optionFunc(func(s *Store) { s.maxPerUser = n }) }

// WithClock makes the store use the instants now returns instead of the Redis server's clock. It
// exists for deterministic tests only. Keys still expire by the server's clock, at instants
// computed from the injected one.
func WithClock(now func() time.Time) Option { return optionFunc(func(s *Store) { s.clock = now }) }

// NewStore returns a Store over client: a single server, Sentinel failover client, Cluster or Ring.
func NewStore(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("session: NewStore with a nil client")
	}
	st := &Store{
		client: client, prefix: DefaultKeyPrefix, codec: JSON,
		idle: DefaultIdleTimeout, lifetime: DefaultLifetime, maxSize: DefaultMaxSize,
	}
	for _, o := range opts {
		o.apply(st)
	}
	switch {
	case strings.ContainsAny(st.prefix, "{}"):
		return nil, fmt.Errorf("session: key prefix %q contains a brace", st.prefix)
	case st.idle < time.Millisecond, st.lifetime < time.Millisecond:
		return nil, fmt.Errorf("session: idle timeout %v and lifetime %v must be at least 1ms", st.idle, st.lifetime)
	case st.maxSize < 0, st.grace < 0, st.maxPerUser < 0:
		return nil, errors.New("session: negative size cap, grace window or sessions per user")
	case st.codec == nil:
		return nil, errors.New("session: nil codec")
	}
	for name, dst := range map[string]**gatehouse.Script{
		"session_touch": &st.touch, "session_save": &st.save, "session_create": &st.create,
		"session_rotate": &st.rotate, "session_seal": &st.seal, "session_user": &st.user,
	} {
		s, ok := gatehouse.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("session: no embedded script %s.lua", name)
		}
		*dst = s
	}
	st.tracer = telemetry.NewTracer(st.tp)
	st.inst = newInstruments(st.mp)
	return st, nil
}

// New returns a new anonymous session. Nothing is stored until it is saved with something in it.
func (st *Store) New() (*Session, error) {
	tag, err := randomTag()
	if err != nil {
		return nil, err
	}
	tok, err := newToken(tag)
	if err != nil {
		return nil, err
	}
	s := st.blank(tok, st.keyOf(tok))
	s.isNew, s.tokenChanged, s.gen = true, true, "1"
	s.meta.IdleTimeout = st.idle
	return s, nil
}

// blank returns an empty session for tok stored under key. The maps that track changes are made
// on the first change: most requests only read.
func (st *Store) blank(tok Token, key Key) *Session {
	return &Session{store: st, token: tok, key: key, values: map[string][]byte{}}
}

// Load reads the session of tok and slides its expiry, in one script call: the new expiry is the
// idle timeout or the time left to the absolute deadline, whichever is sooner. It returns
// ErrMalformed for a token this package did not issue (Redis is not asked), and ErrNotFound for one
// that is unknown, expired or destroyed: the caller then starts a new session and never adopts the
// client's token.
func (st *Store) Load(ctx context.Context, tok Token) (s *Session, err error) {
	ctx, o := st.begin(ctx, "load", st.touch.Name())
	defer func() {
		if s != nil && st.sized(&o) {
			o.key, o.bytes = s.key, payload(s.values)
		}
		st.end(&o, err)
	}()
	return st.load(ctx, tok)
}

// load is Load without telemetry.
func (st *Store) load(ctx context.Context, tok Token) (*Session, error) {
	if !tok.valid() {
		return nil, ErrMalformed
	}
	key := st.keyOf(tok)
	v, err := st.touch.Run(ctx, st.client, []string{string(key)}, st.now())
	if err != nil {
		return nil, st.scriptErr("load", err)
	}
	arr, status, err := reply(v)
	if err != nil {
		return nil, err
	}
	if status == 2 { // rotated within the grace window: read the session it moved to
		if len(arr) < 2 {
			return nil, fmt.Errorf("%w: moved without a target", ErrCorrupt)
		}
		target, _ := arr[1].(string)
		if _, ok := st.indexOfKey(Key(target)); !ok {
			return nil, fmt.Errorf("%w: moved to a key of another shape", ErrCorrupt)
		}
		key = Key(target)
		if v, err = st.touch.Run(ctx, st.client, []string{target}, st.now()); err != nil {
			return nil, st.scriptErr("load", err)
		}
		if arr, status, err = reply(v); err != nil {
			return nil, err
		}
	}
	if status != 1 {
		return nil, ErrNotFound
	}
	s := st.blank(tok, key)
	if err := s.fill(arr[1:]); err != nil {
		return nil, err
	}
	return s, nil
}

// fill reads {now, field, value, ...} from the touch script into s.
func (s *Session) fill(arr []any) error {
	if len(arr)%2 != 1 {
		return fmt.Errorf("%w: odd record", ErrCorrupt)
	}
	now, ok := arr[0].(int64)
	if !ok {
		return fmt.Errorf("%w: no time in reply", ErrCorrupt)
	}
	s.meta = Metadata{Key: s.key, LastSeen: time.UnixMilli(now)}
	for i := 1; i < len(arr); i += 2 {
		f, ok1 := arr[i].(string)
		v, ok2 := arr[i+1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: field %d is not a string", ErrCorrupt, i/2)
		}
		if name, ok := strings.CutPrefix(f, "a:"); ok {
			s.values[name] = []byte(v)
			continue
		}
		if err := s.meta.set(f, v); err != nil {
			return err
		}
		if f == "_g" {
			s.gen = v
		}
	}
	if s.gen == "" || s.meta.Deadline.IsZero() || s.meta.IdleTimeout == 0 {
		return fmt.Errorf("%w: record lacks its generation, deadline or idle timeout", ErrCorrupt)
	}
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
	case "_c":
		m.Created, err = ms()
	case "_s":
		m.LastSeen, err = ms()
	case "_d":
		m.Deadline, err = ms()
	case "_a":
		m.AuthenticatedAt, err = ms()
	case "_i":
		var t time.Time
		t, err = ms()
		m.IdleTimeout = time.Duration(t.UnixMilli()) * time.Millisecond
	case "_u":
		m.UserID = v
	case "_ip":
		m.IP = v
	case "_ua":
		m.UserAgent = v
	case "_l":
		m.Label = v
	}
	return err
}

// Save writes what changed in s since it was read: a new session is created with everything in
// it; a stored one gets only the attributes Put or Removed. Nothing is written into a session that
// was destroyed (ErrNotFound) or rotated (ErrConflict) since it was read. A new session with no
// attributes is not stored.
func (st *Store) Save(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.destroyed:
		return ErrNotFound
	case s.isNew && len(s.values) == 0, !s.isNew && !s.dirty():
		return nil // nothing to write: no call, no span
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
	defer func() { st.end(&o, err) }()
	return st.saveLocked(ctx, s)
}

func (st *Store) saveLocked(ctx context.Context, s *Session) error {
	if s.destroyed {
		return ErrNotFound
	}
	if s.isNew {
		if len(s.values) == 0 {
			return nil
		}
		return st.createLocked(ctx, s, "", nil)
	}
	if !s.dirty() {
		return nil
	}
	args := make([]any, 0, 5+2*(len(s.changed)+len(s.metaSet))+len(s.removed))
	args = append(args, st.now(), s.gen, st.maxSize, len(s.changed)+len(s.metaSet), len(s.removed))
	for name := range s.changed {
		args = append(args, "a:"+name, s.values[name])
	}
	for f, v := range s.metaSet {
		args = append(args, f, v)
	}
	for name := range s.removed {
		args = append(args, "a:"+name)
	}
	v, err := st.save.Run(ctx, st.client, []string{string(s.key)}, args...)
	if err != nil {
		return st.scriptErr("save", err)
	}
	arr, status, err := reply(v)
	if err != nil {
		return err
	}
	switch status {
	case 1:
		s.clearChanges()
		return nil
	case 0:
		return ErrNotFound
	case 2:
		return ErrConflict
	case 3:
		size, _ := arr[1].(int64)
		return fmt.Errorf("%w: %d bytes of attributes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	return fmt.Errorf("%w: save status %d", ErrCorrupt, status)
}

// createLocked stores s, new, under its token; with a user, indexes it and applies the cap.
// created and deadline are zero for a new session, or the moved session's own.
func (st *Store) createLocked(ctx context.Context, s *Session, user string, keep *Metadata) error {
	if size := payload(s.values); size > st.maxSize {
		return fmt.Errorf("%w: %d bytes of attributes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	tag := s.token.tag()
	keys := []string{string(s.key), st.indexOf(tag)}
	if user != "" && st.maxPerUser > 0 {
		members, err := st.client.ZRange(ctx, st.indexOf(tag), 0, -1).Result()
		if err != nil {
			return fmt.Errorf("session: login: reading the user's sessions: %w", err)
		}
		keys = append(keys, members...)
	}
	idle, lifetime := st.idle, st.lifetime
	if s.idle > 0 {
		idle = s.idle
	}
	if s.lifetime > 0 {
		lifetime = s.lifetime
	}
	var created, deadline, auth int64
	if keep != nil {
		created, deadline = keep.Created.UnixMilli(), keep.Deadline.UnixMilli()
		if keep.IdleTimeout > 0 {
			idle = keep.IdleTimeout
		}
		if !keep.AuthenticatedAt.IsZero() {
			auth = keep.AuthenticatedAt.UnixMilli()
		}
	}
	if user != "" {
		auth, deadline = -1, 0 // a sign-in starts a new lifetime
	}
	args := []any{st.now(), idle.Milliseconds(), lifetime.Milliseconds(), deadline, created, auth, user, st.maxPerUser}
	pairs := []any{"_g", s.gen}
	for name, v := range s.values {
		pairs = append(pairs, "a:"+name, v)
	}
	for f, v := range s.metaSet {
		pairs = append(pairs, f, v)
	}
	args = append(args, len(pairs)/2)
	args = append(args, pairs...)
	v, err := st.create.Run(ctx, st.client, keys, args...)
	if err != nil {
		return st.scriptErr("create", err)
	}
	arr, status, err := reply(v)
	if err != nil {
		return err
	}
	if status != 1 || len(arr) < 2 {
		return fmt.Errorf("session: create: status %d: the session's lifetime is already over", status)
	}
	now, _ := arr[1].(int64)
	s.meta.Key, s.meta.LastSeen, s.meta.IdleTimeout = s.key, time.UnixMilli(now), idle
	if created == 0 {
		s.meta.Created = time.UnixMilli(now)
	}
	if user != "" {
		s.meta.UserID, s.meta.AuthenticatedAt = user, time.UnixMilli(now)
		s.meta.Deadline = time.UnixMilli(now).Add(lifetime)
	} else if deadline == 0 {
		s.meta.Deadline = time.UnixMilli(now).Add(lifetime)
	}
	s.isNew = false
	s.clearChanges()
	return nil
}

// Destroy ends the session at once. Requests still in flight with it cannot bring it back: their
// saves fail with ErrNotFound.
func (st *Store) Destroy(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, o := st.begin(ctx, "destroy", "")
	o.key = s.key
	defer func() { st.end(&o, err) }()
	s.destroyed = true
	if s.isNew {
		return nil
	}
	return st.del(ctx, s.key)
}

// DestroyKey ends the session stored under key, as listed by ListByUser: for an "active sessions"
// page. Check first that the key is one of the signed-in user's own.
func (st *Store) DestroyKey(ctx context.Context, key Key) (err error) {
	ctx, o := st.begin(ctx, "destroy", "")
	o.key = key
	defer func() { st.end(&o, err) }()
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

// Rotate gives the session a new token, keeping its data: the defence against session fixation,
// for any change of privilege. The old token stops working at once (or, with WithRotationGrace,
// can still read for the grace window; it can never write). The middleware sends the new cookie.
func (st *Store) Rotate(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, o := st.begin(ctx, "rotate", st.rotate.Name())
	o.key = s.key
	defer func() { st.end(&o, err) }()
	o.script, err = st.rotateLocked(ctx, s, "")
	return err
}

// Login signs userID in on the session: a new token (in the user's cluster slot, so that the
// user's sessions can be listed and ended together), authenticated-at set to now, and a fresh
// absolute lifetime. The old token stops working as with Rotate. With WithMaxSessionsPerUser, the
// user's oldest sessions beyond the cap are ended.
func (st *Store) Login(ctx context.Context, s *Session, userID string) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, o := st.begin(ctx, "login", st.rotate.Name())
	o.key = s.key
	defer func() { st.end(&o, err) }()
	if userID == "" {
		return errors.New("session: Login with an empty user ID")
	}
	o.script, err = st.rotateLocked(ctx, s, userID)
	return err
}

// rotateLocked moves s to a new token and returns the name of the script that completed the move.
func (st *Store) rotateLocked(ctx context.Context, s *Session, user string) (string, error) {
	if s.destroyed {
		return "", ErrNotFound
	}
	tag := s.token.tag()
	if user != "" {
		tag = st.userTag(user)
	}
	tok, err := newToken(tag)
	if err != nil {
		return "", err
	}
	oldKey, oldGen := s.key, s.gen
	newKey := st.keyOf(tok)
	if s.isNew {
		// Never stored: store it straight under the new token.
		s.token, s.key, s.gen, s.tokenChanged = tok, newKey, "1", true
		return st.create.Name(), st.createLocked(ctx, s, user, nil)
	}
	// Pending changes go first, into the session as read, so the move carries them.
	if s.dirty() {
		if err := st.saveLocked(ctx, s); err != nil {
			return st.save.Name(), err
		}
	}
	if oldTag, _ := st.tagOfKey(oldKey); tag == oldTag {
		return st.rotate.Name(), st.rotateSameSlot(ctx, s, tok, newKey, user)
	}
	// Another slot (an anonymous session signing in): copy first, then retire the old key. If the
	// old one changed in between, the copy is deleted again, so nothing is duplicated or revived.
	moved := st.blank(tok, newKey)
	moved.values, moved.metaSet, moved.gen = s.values, map[string]string{}, nextGen(oldGen)
	if s.meta.IP != "" || s.meta.UserAgent != "" {
		moved.metaSet["_ip"], moved.metaSet["_ua"] = s.meta.IP, s.meta.UserAgent
	}
	if s.meta.Label != "" {
		moved.metaSet["_l"] = s.meta.Label
	}
	moved.meta, moved.idle, moved.lifetime = s.meta, s.idle, s.lifetime
	if err := st.createLocked(ctx, moved, user, &s.meta); err != nil {
		return st.create.Name(), err
	}
	v, err := st.seal.Run(ctx, st.client, []string{string(oldKey)}, st.now(), oldGen, st.grace.Milliseconds(), string(newKey))
	if err == nil {
		var status int64
		if _, status, err = reply(v); err == nil && status != 1 {
			err = ErrConflict
			if status == 0 {
				err = ErrNotFound
			}
		}
	}
	if err != nil {
		_ = st.del(context.WithoutCancel(ctx), newKey)
		return st.seal.Name(), st.scriptErr("rotate", err)
	}
	s.token, s.key, s.gen, s.meta, s.tokenChanged = tok, newKey, moved.gen, moved.meta, true
	return st.seal.Name(), nil
}

func (st *Store) rotateSameSlot(ctx context.Context, s *Session, tok Token, newKey Key, user string) error {
	keys := []string{string(s.key), string(newKey), st.indexOf(tok.tag())}
	v, err := st.rotate.Run(ctx, st.client, keys, st.now(), s.gen, st.grace.Milliseconds(), user, st.lifetime.Milliseconds())
	if err != nil {
		return st.scriptErr("rotate", err)
	}
	arr, status, err := reply(v)
	if err != nil {
		return err
	}
	switch status {
	case 0:
		return ErrNotFound
	case 2:
		return ErrConflict
	}
	if len(arr) < 3 {
		return fmt.Errorf("%w: short rotate reply", ErrCorrupt)
	}
	now, _ := arr[1].(int64)
	gen, _ := arr[2].(int64)
	s.token, s.key, s.gen, s.tokenChanged = tok, newKey, strconv.FormatInt(gen, 10), true
	s.meta.Key, s.meta.LastSeen = newKey, time.UnixMilli(now)
	if user != "" {
		s.meta.UserID, s.meta.AuthenticatedAt = user, time.UnixMilli(now)
		s.meta.Deadline = time.UnixMilli(now).Add(st.lifetime)
	}
	return nil
}

func nextGen(g string) string {
	n, _ := strconv.ParseInt(g, 10, 64)
	return strconv.FormatInt(n+1, 10)
}

// ListByUser returns the metadata of userID's live sessions, and removes dead ones from the index.
func (st *Store) ListByUser(ctx context.Context, userID string) (list []Metadata, err error) {
	ctx, o := st.begin(ctx, "list", st.user.Name())
	defer func() { o.count = len(list); st.end(&o, err) }()
	v, err := st.userOp(ctx, userID, "list", "")
	if err != nil {
		return nil, err
	}
	arr, n, err := reply(v)
	if err != nil {
		return nil, err
	}
	if int64(len(arr)) != 1+9*n {
		return nil, fmt.Errorf("%w: list reply of %d elements for %d sessions", ErrCorrupt, len(arr), n)
	}
	out := make([]Metadata, 0, n)
	fields := []string{"", "_c", "_s", "_d", "_a", "_i", "_ip", "_ua", "_l"}
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
func (st *Store) DestroyAllForUser(ctx context.Context, userID string) (int, error) {
	return st.destroyUser(ctx, userID, "")
}

// DestroyOthers ends every other session of s's user ("sign out other devices") and returns how many.
func (st *Store) DestroyOthers(ctx context.Context, s *Session) (int, error) {
	s.mu.Lock()
	user, key := s.meta.UserID, s.key
	s.mu.Unlock()
	if user == "" {
		return 0, nil
	}
	return st.destroyUser(ctx, user, key)
}

func (st *Store) destroyUser(ctx context.Context, userID string, keep Key) (n int, err error) {
	ctx, o := st.begin(ctx, "destroy_user", st.user.Name())
	defer func() { o.count = n; st.end(&o, err) }()
	v, err := st.userOp(ctx, userID, "destroy", keep)
	if err != nil {
		return 0, err
	}
	_, count, err := reply(v)
	return int(count), err
}

// userOp reads the user's index and runs session_user.lua over its members.
func (st *Store) userOp(ctx context.Context, userID, mode string, keep Key) (any, error) {
	if userID == "" {
		return nil, errors.New("session: empty user ID")
	}
	idx := st.indexOf(st.userTag(userID))
	members, err := st.client.ZRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("session: reading the user's sessions: %w", err)
	}
	keys := append([]string{idx}, members...)
	v, err := st.user.Run(ctx, st.client, keys, st.now(), userID, mode, string(keep))
	if err != nil {
		return nil, st.scriptErr(mode, err)
	}
	return v, nil
}

func (st *Store) now() int64 {
	if st.clock == nil {
		return 0
	}
	return st.clock().UnixMilli()
}

// scriptErr wraps a script failure; a corrupt-record error reply becomes ErrCorrupt.
func (st *Store) scriptErr(op string, err error) error {
	if strings.Contains(err.Error(), "GATEHOUSE corrupt") {
		return fmt.Errorf("session: %s: %w: %v", op, ErrCorrupt, err)
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) {
		return err
	}
	return fmt.Errorf("session: %s: %w", op, err)
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
