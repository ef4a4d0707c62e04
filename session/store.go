package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/script"
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
	// ErrReadOnly: the session was loaded through a token rotated less than the grace window ago
	// (WithRotationGrace). It can be read; nothing is written through it, and Redis is not asked.
	ErrReadOnly = errors.New("session: read-only: loaded through a rotated token within its grace window")
	// ErrHeadersSent: Rotate or Login (or Put after Destroy) was called after the middleware sent
	// the response's headers, when the new token's cookie can no longer be sent. Nothing was
	// changed, in Redis or in the session.
	ErrHeadersSent = errors.New("session: the response has started: a new session cookie can no longer be sent")
	// ErrContended: a per-user operation, or a sign-in, found the user's sessions (or the session
	// being signed in) changed by other requests every time it tried; nothing was changed. Try again.
	ErrContended = errors.New("session: contended: changed by other requests on every attempt")
	// ErrMalformed: a token that this package never issued (wrong length or alphabet). It is refused
	// before Redis is asked.
	ErrMalformed = errors.New("session: malformed token")
	// ErrTooLarge: the session would exceed the store's size cap (WithMaxSize); nothing was written.
	ErrTooLarge = errors.New("session: too large")
	// ErrCorrupt: the stored record or an attribute cannot be decoded.
	ErrCorrupt = errors.New("session: corrupt stored data")
	// ErrUnavailable: Redis failed, not the request: it could not be reached (a refused dial, a
	// reset or closed connection), did not answer in time (the caller's deadline, WithTimeout's,
	// the client's read, write or pool timeout), or answered that it cannot serve now (LOADING,
	// BUSY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN, READONLY, NOREPLICAS, MISCONF, out of memory under
	// noeviction, too many clients). Every Store operation that fails so returns an error that
	// matches it and still wraps the cause; the middleware answers 503 for it:
	//
	//	if errors.Is(err, session.ErrUnavailable) { ... }
	ErrUnavailable = errors.New("session: Redis unavailable")
)

// maxAttempts bounds the retries of an operation that another request keeps overtaking: a
// per-user operation whose index changed after it was read, a capped sign-in, or a sign-in that
// moves a session to another slot while saves keep landing on it. Past it: ErrContended.
const maxAttempts = 10

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
	timeout    time.Duration
	clock      func() time.Time

	touch, save, create, rotate, seal, user *script.Script

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

// MinMaxSize is the smallest size cap NewStore accepts: room for a session's metadata (about 150
// bytes, plus the user ID, label, IP address and user agent) and a few attributes.
const MinMaxSize = 1 << 10

// WithIdleTimeout sets how long a session lives without being read or saved (default 30 minutes).
func WithIdleTimeout(d time.Duration) Option { return optionFunc(func(s *Store) { s.idle = d }) }

// WithLifetime sets the absolute lifetime: a session ends this long after its creation (or after
// its sign-in), however active it is (default 12 hours).
func WithLifetime(d time.Duration) Option { return optionFunc(func(s *Store) { s.lifetime = d }) }

// WithMaxSize caps the size of a stored session, in bytes (default 16 KiB, at least MinMaxSize).
// A session's size is the sum, over every field of its record, of the length of the field's name
// plus the length of its value: each attribute counts its name (plus 2) and its encoded value, and
// the metadata counts too (times, user ID, IP address, user agent, label). A save, sign-in or
// rotation that would make a session larger than the cap fails with ErrTooLarge and writes
// nothing; one that leaves it smaller than it was succeeds even over the cap (a cap lowered while
// larger sessions exist), so that they can still be trimmed.
func WithMaxSize(bytes int) Option { return optionFunc(func(s *Store) { s.maxSize = bytes }) }

// WithCodec sets how attribute values are encoded (default JSON).
func WithCodec(c Codec) Option { return optionFunc(func(s *Store) { s.codec = c }) }

// WithKeyPrefix sets the prefix of every key the store writes (default DefaultKeyPrefix). It must
// not contain '{' or '}'.
func WithKeyPrefix(p string) Option { return optionFunc(func(s *Store) { s.prefix = p }) }

// WithRotationGrace keeps a rotated token readable for d, pointing to the new session, so that
// requests the client already had in flight when it signed in do not lose their session. A
// session loaded through the old token is read-only (Session.ReadOnly): Save, Rotate, Login,
// Destroy and DestroyOthers refuse it with ErrReadOnly, so the old token can never change the
// session nor obtain a token that outlives the window. The default, 0, is the safest: an old token
// stops working at once.
func WithRotationGrace(d time.Duration) Option { return optionFunc(func(s *Store) { s.grace = d }) }

// WithHMACKey stores sessions under HMAC-SHA256(key, "gatehouse-session\x00"+token) instead of
// SHA-256 of the same, and derives user slot tags the same way, so that neither Redis contents nor
// cookies can be linked to a token or a user without the key. Use at least 32 random bytes.
func WithHMACKey(key []byte) Option {
	return optionFunc(func(s *Store) { s.hmacKey = append([]byte(nil), key...) })
}

// WithMaxSessionsPerUser caps how many sessions one user may have: a sign-in beyond the cap ends
// the user's oldest sessions by sign-in (the earliest authenticated-at; sessions signed in in the
// same millisecond by key order), never the one signing in. The cap holds however many sign-ins
// race: each checks, in the script that stores it, that it saw every session of the user. The
// default, 0, sets no cap.
func WithMaxSessionsPerUser(n int) Option { return optionFunc(func(s *Store) { s.maxPerUser = n }) }

// WithTimeout bounds each operation (Load, Save, Login, ...) to d, whatever the caller's context
// allows, so that a stalled Redis costs a bounded wait: past it the operation fails with an error
// matching ErrUnavailable that wraps the timeout (context.DeadlineExceeded, or the connection's
// os.ErrDeadlineExceeded). NewStore refuses it unless the client applies context
// deadlines (ContextTimeoutEnabled in its options). The default, 0, leaves the caller's context
// and the client's own timeouts in charge.
func WithTimeout(d time.Duration) Option { return optionFunc(func(s *Store) { s.timeout = d }) }

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
	case st.maxSize < MinMaxSize:
		return nil, fmt.Errorf("session: size cap %d bytes: at least %d are needed for a session's metadata", st.maxSize, MinMaxSize)
	case st.grace < 0, st.maxPerUser < 0, st.timeout < 0:
		return nil, errors.New("session: negative grace window, sessions per user or timeout")
	case st.timeout > 0 && !honoursDeadlines(client):
		return nil, errors.New("session: WithTimeout needs a client that applies context deadlines: set ContextTimeoutEnabled in its options")
	case st.codec == nil:
		return nil, errors.New("session: nil codec")
	}
	for name, dst := range map[string]**script.Script{
		"session_touch": &st.touch, "session_save": &st.save, "session_create": &st.create,
		"session_rotate": &st.rotate, "session_seal": &st.seal, "session_user": &st.user,
	} {
		s, ok := script.Lookup(name)
		if !ok {
			return nil, fmt.Errorf("session: no embedded script %s.lua", name)
		}
		*dst = s
	}
	st.tracer = telemetry.NewTracer(st.tp, scope)
	st.inst = newInstruments(st.mp)
	return st, nil
}

// honoursDeadlines reports whether client applies context deadlines to its network calls, as
// WithTimeout needs. Clients of unknown types are trusted.
func honoursDeadlines(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
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
	s.isNew, s.sendCookie, s.gen = true, true, "1"
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
	v, err := st.touch.Run(ctx, st.client, []string{string(key), idx}, st.now())
	if err != nil {
		return nil, st.scriptErr("load", err)
	}
	arr, status, err := reply(v)
	if err != nil {
		return nil, err
	}
	target := key
	if status == statusMoved { // rotated within the grace window: read the session it moved to
		if len(arr) < 2 {
			return nil, fmt.Errorf("%w: moved without a target", ErrCorrupt)
		}
		t, _ := arr[1].(string)
		idx, ok := st.indexOfKey(Key(t))
		if !ok {
			return nil, fmt.Errorf("%w: moved to a key of another shape", ErrCorrupt)
		}
		target = Key(t)
		if v, err = st.touch.Run(ctx, st.client, []string{t, idx}, st.now()); err != nil {
			return nil, st.scriptErr("load", err)
		}
		if arr, status, err = reply(v); err != nil {
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

// fill reads {now, field, value, ...} from the touch script into s.
func (s *Session) fill(arr []any) error {
	if len(arr)%2 != 1 {
		return fmt.Errorf("%w: odd record", ErrCorrupt)
	}
	now, ok := arr[0].(int64)
	if !ok {
		return fmt.Errorf("%w: no time in reply", ErrCorrupt)
	}
	s.now = time.UnixMilli(now)
	s.meta = Metadata{Key: s.key}
	for i := 1; i < len(arr); i += 2 {
		f, ok1 := arr[i].(string)
		v, ok2 := arr[i+1].(string)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: field %d is not a string", ErrCorrupt, i/2)
		}
		if name, ok := strings.CutPrefix(f, attrPrefix); ok {
			s.values[name] = []byte(v)
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

// Save writes what changed in s since it was read: a new session is created with everything in
// it; a stored one gets only the attributes Put or Removed and the metadata set. Nothing is written
// into a session that was destroyed (ErrNotFound) or rotated (ErrConflict) since it was read, nor
// through a read-only session (ErrReadOnly). A new session with no attributes is not stored. A
// session the save would make larger than the size cap is refused with ErrTooLarge, before Redis
// is asked when this request's own view already exceeds it.
func (st *Store) Save(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.destroyed:
		return ErrNotFound
	case s.isNew && len(s.values) == 0, !s.isNew && !s.dirty():
		return nil // nothing to write: no call, no span
	case s.readOnly:
		return ErrReadOnly
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
	defer func() { err = st.end(&o, err) }()
	return st.saveLocked(ctx, s)
}

func (st *Store) saveLocked(ctx context.Context, s *Session) error {
	switch {
	case s.destroyed:
		return ErrNotFound
	case s.readOnly:
		return ErrReadOnly
	case s.isNew:
		if len(s.values) == 0 {
			return nil
		}
		return st.createNew(ctx, s, "", loginConfig{})
	case !s.dirty():
		return nil
	}
	if size := s.size(); size > st.maxSize && size > s.base {
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	args := make([]any, 0, 5+2*(len(s.changed)+len(s.metaSet))+len(s.removed))
	args = append(args, st.now(), s.gen, st.maxSize, len(s.changed)+len(s.metaSet), len(s.removed))
	for name := range s.changed {
		args = append(args, attrPrefix+name, s.values[name])
	}
	for f, v := range s.metaSet {
		args = append(args, f, v)
	}
	for name := range s.removed {
		args = append(args, attrPrefix+name)
	}
	var keys []string
	if s.meta.UserID != "" {
		// The index vouches for a signed-in session, and scores it by its deadline. (A record
		// never gains a user in place: a sign-in moves the session to a new key.)
		idx, _ := st.indexOfKey(s.key)
		keys = []string{string(s.key), idx}
	} else {
		keys = []string{string(s.key)}
	}
	_, deadline := s.metaSet[fieldDeadline]
	v, err := st.save.Run(ctx, st.client, keys, args...)
	if err != nil {
		return st.scriptErr("save", err)
	}
	arr, status, err := reply(v)
	if err != nil {
		return err
	}
	switch status {
	case statusOK:
		s.clearChanges()
		s.base = s.size()
		if deadline {
			s.sendCookie = true // the cookie expires at the deadline: it must follow
		}
		return nil
	case statusNotFound:
		return ErrNotFound
	case statusConflict:
		return ErrConflict
	case statusTooLarge:
		var size int64
		if len(arr) > 1 {
			size, _ = arr[1].(int64)
		}
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	return fmt.Errorf("%w: save status %d", ErrCorrupt, status)
}

// createNew stores s, a session never stored, under its token; with a user, signed in, under the
// user's cap.
func (st *Store) createNew(ctx context.Context, s *Session, user string, cfg loginConfig) error {
	spec := createSpec{user: user, idle: st.idle, lifetime: st.lifetime, deadline: s.deadline}
	if s.idle > 0 {
		spec.idle = s.idle
	}
	if s.lifetime > 0 {
		spec.lifetime = s.lifetime
	}
	if user != "" {
		spec.auth, spec.deadline = -1, time.Time{} // a sign-in starts a new lifetime
		if cfg.idle > 0 {
			spec.idle = cfg.idle
		}
		if cfg.lifetime > 0 {
			spec.lifetime = cfg.lifetime
		}
		if cfg.persist != 0 {
			s.persist = cfg.persist
		}
	}
	if s.persist != 0 {
		s.setMetaLocked(fieldPersist, persistFlag(s.persist))
	}
	return st.createLocked(ctx, s, spec)
}

func persistFlag(p int8) string {
	if p > 0 {
		return "1"
	}
	return "0"
}

// createSpec is what session_create.lua needs beyond the record's fields.
type createSpec struct {
	user           string
	idle, lifetime time.Duration
	deadline       time.Time // zero: now + lifetime
	created        time.Time // zero: now
	auth           int64     // ms since the epoch; 0 never, -1 now
	allowed        int       // a size allowed over the cap (a record moved by a sign-in), or 0
}

// createLocked stores s, new, under its token with s.values and s.metaSet; with a user, indexes it
// and applies the cap, reading the user's index again while other sign-ins overtake it.
func (st *Store) createLocked(ctx context.Context, s *Session, c createSpec) error {
	size := s.size()
	if c.user != "" && s.meta.UserID == "" {
		size += len(fieldUser) + len(c.user) + len(fieldAuth) + 13 // the user, and authenticated-at in ms
	}
	if size > st.maxSize && size > c.allowed {
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, size, st.maxSize)
	}
	var deadline, created int64
	if !c.deadline.IsZero() {
		deadline = c.deadline.UnixMilli()
	}
	if !c.created.IsZero() {
		created = c.created.UnixMilli()
	}
	pairs := make([]any, 0, 2+2*(len(s.values)+len(s.metaSet)))
	pairs = append(pairs, fieldGen, s.gen)
	for name, v := range s.values {
		pairs = append(pairs, attrPrefix+name, v)
	}
	for f, v := range s.metaSet {
		pairs = append(pairs, f, v)
	}
	args := append([]any{st.now(), c.idle.Milliseconds(), c.lifetime.Milliseconds(), deadline, created, c.auth,
		c.user, st.maxPerUser, st.maxSize, c.allowed, len(pairs) / 2}, pairs...)
	idx := st.indexOf(s.token.tag())
	capped := c.user != "" && st.maxPerUser > 0
	arr, status, err := st.runIndexed(ctx, st.create, "create", []string{string(s.key), idx}, idx, capped, statusRereadIndex, args...)
	switch {
	case err != nil:
		return err
	case status == statusTooLarge && len(arr) > 1:
		n, _ := arr[1].(int64)
		return fmt.Errorf("%w: %d bytes, the cap is %d", ErrTooLarge, n, st.maxSize)
	case status != statusOK || len(arr) < 4:
		return fmt.Errorf("session: create: status %d: the session's lifetime is already over", status)
	}
	now, _ := arr[1].(int64)
	dl, _ := arr[3].(int64)
	s.now = time.UnixMilli(now)
	s.meta.Key, s.meta.LastSeen, s.meta.IdleTimeout = s.key, s.now, c.idle
	s.meta.Deadline = time.UnixMilli(dl)
	s.meta.Created = s.now
	if created != 0 {
		s.meta.Created = c.created
	}
	if c.user != "" {
		s.meta.UserID, s.meta.AuthenticatedAt = c.user, s.now
	}
	s.isNew, s.ver = false, ""
	s.clearChanges()
	s.base = s.size()
	return nil
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
			return nil, 0, st.scriptErr(op, err)
		}
		arr, status, err := reply(v)
		if err != nil || status != retry {
			return arr, status, err
		}
	}
	return nil, 0, fmt.Errorf("session: %s: the user's sessions kept changing: %w", op, ErrContended)
}

// Destroy ends the session at once, and empties it. Requests still in flight with it cannot bring
// it back: their saves fail with ErrNotFound. A Put after Destroy starts a new session, with a new
// token. A read-only session (Session.ReadOnly) is refused with ErrReadOnly.
func (st *Store) Destroy(ctx context.Context, s *Session) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readOnly {
		return ErrReadOnly
	}
	ctx, o := st.begin(ctx, "destroy", "")
	o.key = s.key
	defer func() { err = st.end(&o, err) }()
	wasNew := s.isNew
	s.destroyed = true
	clear(s.values)
	s.clearChanges()
	s.meta = Metadata{IP: s.meta.IP, UserAgent: s.meta.UserAgent}
	if wasNew {
		return nil
	}
	return st.del(ctx, s.key)
}

// DestroyKey ends the session stored under key, as listed by ListByUser: for an "active sessions"
// page. Check first that the key is one of the signed-in user's own.
func (st *Store) DestroyKey(ctx context.Context, key Key) (err error) {
	ctx, o := st.begin(ctx, "destroy", "")
	o.key = key
	defer func() { err = st.end(&o, err) }()
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
