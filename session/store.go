package session

// The Store: what it holds, how it is made, and the sessions it makes. Its operations are by job:
// load.go (Load), save.go (Save, Destroy), rotate.go (Rotate, Login), users.go (per-user
// control); record.go turns sessions into the scripts' arguments and their replies into sessions;
// telemetry.go observes every operation.

import (
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/internal/script"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/redis/go-redis/v9"
)

// Store keeps sessions in Redis. It is safe for concurrent use; make one and share it.
type Store struct {
	client redis.UniversalClient
	config

	touch, save, create, activate, rotate, seal, user, destroy *script.Script

	tracer *telemetry.Tracer
	inst   instruments
}

// NewStore returns a Store over client: a single server, Sentinel failover client, Cluster or Ring.
func NewStore(client redis.UniversalClient, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("session: NewStore with a nil client")
	}
	st := &Store{client: client, config: defaultConfig()}
	for _, o := range opts {
		o.apply(&st.config)
	}
	if err := st.check(client); err != nil {
		return nil, err
	}
	for name, dst := range map[string]**script.Script{
		"session_touch": &st.touch, "session_save": &st.save, "session_create": &st.create,
		"session_activate": &st.activate, "session_rotate": &st.rotate, "session_seal": &st.seal,
		"session_user": &st.user, "session_destroy": &st.destroy,
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
	return &Session{store: st, token: tok, key: key, values: map[string]string{}}
}

// now returns the injected clock's instant in ms for the scripts' "now" argument, or 0: the
// scripts then read the server's TIME.
func (st *Store) now() int64 {
	if st.clock == nil {
		return 0
	}
	return st.clock().UnixMilli()
}
