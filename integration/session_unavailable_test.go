package integration

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/gatehouse/gatehouse/internal/sessiontest"
	"github.com/gatehouse/gatehouse/session"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// storeOp is one Store operation that asks Redis, over sessions stored while Redis answered.
type storeOp struct {
	name   string
	writes bool // adds data: refused by a full server under noeviction
	run    func(st *session.Store) error
}

// prepareOps stores sessions through st while Redis answers, and returns every Store operation
// that asks Redis, each over sessions of its own, to run later through another store (with the
// same prefix) while Redis fails.
func prepareOps(t *testing.T, st *session.Store) []storeOp {
	t.Helper()
	ctx := context.Background()
	load := func(s *session.Session) *session.Session { t.Helper(); return sessiontest.MustLoad(t, st, s.Token()) }
	signedIn := func(user string) *session.Session {
		t.Helper()
		s := sessiontest.Stored(t, st, "a", "1")
		if err := st.Login(ctx, s, user); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Each operation has sessions (and users) of its own, so that the ones that go on (under
	// noeviction) change nothing another one uses.
	put := func(s *session.Session) *session.Session { s.Put("b", "2"); return s }
	anon, in := sessiontest.Stored(t, st, "a", "1"), signedIn("u-load")
	saved, savedIn, rotated, across := put(load(sessiontest.Stored(t, st, "a", "1"))), put(load(signedIn("u-save"))),
		load(sessiontest.Stored(t, st, "a", "1")), load(sessiontest.Stored(t, st, "a", "1"))
	within, destroyed, byKey := load(signedIn("u-within")), load(sessiontest.Stored(t, st, "a", "1")), signedIn("u-key")
	signedIn("u-list")
	signedIn("u-all")
	others := load(signedIn("u-others"))
	signedIn("u-others")
	return []storeOp{
		{"Load", false, func(st *session.Store) error { _, err := st.Load(ctx, anon.Token()); return err }},
		{"Load signed in", false, func(st *session.Store) error { _, err := st.Load(ctx, in.Token()); return err }},
		{"Save of a new session", true, func(st *session.Store) error {
			s, err := st.New()
			if err != nil {
				return err
			}
			s.Put("a", "1")
			return st.Save(ctx, s)
		}},
		{"Save", true, func(st *session.Store) error { return st.Save(ctx, saved) }},
		{"Save signed in", true, func(st *session.Store) error { return st.Save(ctx, savedIn) }},
		{"Rotate", true, func(st *session.Store) error { return st.Rotate(ctx, rotated) }},
		{"Login", true, func(st *session.Store) error { return st.Login(ctx, across, "u-across") }},
		{"Login within the slot", true, func(st *session.Store) error { return st.Login(ctx, within, "u-within") }},
		{"Destroy", false, func(st *session.Store) error { return st.Destroy(ctx, destroyed) }},
		{"DestroyKey", false, func(st *session.Store) error { return st.DestroyKey(ctx, byKey.Key()) }},
		{"ListByUser", false, func(st *session.Store) error { _, err := st.ListByUser(ctx, "u-list"); return err }},
		{"DestroyAllForUser", false, func(st *session.Store) error { _, err := st.DestroyAllForUser(ctx, "u-all"); return err }},
		{"DestroyOthers", false, func(st *session.Store) error { _, err := st.DestroyOthers(ctx, others); return err }},
	}
}

// Every Store operation that fails because Redis could not answer, or answered that it cannot
// serve now, returns an error matching ErrUnavailable that still wraps the cause, and its span
// says error.type "timeout" (a timeout) or "unavailable". Each case breaks a real server (or
// points a Cluster or Ring client at none) after sessions were stored, then runs every operation
// through a store over a client of its own.
func TestSessionStoreUnavailable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts private Redis servers")
	}
	ctx := context.Background()
	type failing struct {
		client    func(addr string) redis.UniversalClient // the client of the store under test
		opts      []session.Option
		errorType string
		cause     func(error) bool // what the error must still wrap; nil: anything
		writes    bool             // only the operations that add data fail
		breakIt   func(t *testing.T, srv *redistest.Server, admin *redis.Client)
	}
	standalone := func(timeout bool) func(string) redis.UniversalClient {
		return func(addr string) redis.UniversalClient {
			return redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1,
				DialTimeout: time.Second, ContextTimeoutEnabled: timeout})
		}
	}
	do := func(t *testing.T, admin *redis.Client, args ...any) {
		t.Helper()
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	replicaOfNothing := func(t *testing.T, admin *redis.Client, serveStale string) {
		t.Helper()
		dead, err := redistest.StartServer()
		if err != nil {
			t.Fatal(err)
		}
		dead.Close()
		host, port, _ := net.SplitHostPort(dead.Addr)
		do(t, admin, "CONFIG", "SET", "replica-serve-stale-data", serveStale)
		do(t, admin, "REPLICAOF", host, port)
	}
	refused := func(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
	for name, c := range map[string]failing{
		"stopped": {client: standalone(false), errorType: "unavailable", cause: refused,
			breakIt: func(_ *testing.T, srv *redistest.Server, _ *redis.Client) { srv.Stop() }},
		"paused, WithTimeout": {client: standalone(true), opts: []session.Option{session.WithTimeout(200 * time.Millisecond)},
			errorType: "timeout", cause: redistest.IsTimeout,
			breakIt: func(t *testing.T, _ *redistest.Server, admin *redis.Client) {
				do(t, admin, "CLIENT", "PAUSE", 60_000, "ALL")
				t.Cleanup(func() { admin.Do(ctx, "CLIENT", "UNPAUSE") })
			}},
		"BUSY": {client: standalone(false), errorType: "unavailable", cause: replyPrefix("BUSY"),
			breakIt: func(t *testing.T, srv *redistest.Server, admin *redis.Client) { busyScript(t, srv, admin) }},
		"READONLY": {client: standalone(false), errorType: "unavailable", cause: replyPrefix("READONLY"),
			breakIt: func(t *testing.T, _ *redistest.Server, admin *redis.Client) { replicaOfNothing(t, admin, "yes") }},
		"MASTERDOWN": {client: standalone(false), errorType: "unavailable", cause: replyPrefix("MASTERDOWN", "READONLY"), // READONLY: a plain DEL
			breakIt: func(t *testing.T, _ *redistest.Server, admin *redis.Client) { replicaOfNothing(t, admin, "no") }},
		"OOM under noeviction": {client: standalone(false), errorType: "oom", cause: replyPrefix("OOM"), writes: true,
			breakIt: func(t *testing.T, _ *redistest.Server, admin *redis.Client) {
				do(t, admin, "CONFIG", "SET", "maxmemory-policy", "noeviction")
				do(t, admin, "CONFIG", "SET", "maxmemory", "1")
			}},
		// The server sends "ERR max number of clients reached" and closes the connection at
		// once: the client sees the reply, EOF or a reset, as timing has it.
		"max clients": {client: standalone(false), errorType: "unavailable",
			breakIt: func(t *testing.T, _ *redistest.Server, admin *redis.Client) {
				do(t, admin, "CONFIG", "SET", "maxclients", "1") // the admin's connection is the one
			}},
		"Cluster client, no node answers": {errorType: "unavailable",
			client: func(addr string) redis.UniversalClient {
				return redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}, DisableIdentity: true, MaxRetries: -1})
			},
			breakIt: func(_ *testing.T, srv *redistest.Server, _ *redis.Client) { srv.Stop() }},
		"Ring client, no shard answers": {errorType: "unavailable",
			client: func(addr string) redis.UniversalClient {
				return redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": addr}, DisableIdentity: true, MaxRetries: -1})
			},
			breakIt: func(_ *testing.T, srv *redistest.Server, _ *redis.Client) { srv.Stop() }},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, admin := redistest.Private(t)
			prefix := redistest.Prefix(t)
			prep, err := session.NewStore(admin, session.WithKeyPrefix(prefix))
			if err != nil {
				t.Fatal(err)
			}
			ops := prepareOps(t, prep)
			// From now on the admin holds the one connection to the server (see "max clients").
			admin.Close()
			admin = redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, PoolSize: 1, MaxRetries: -1})
			t.Cleanup(func() { admin.Close() })
			if err := admin.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			c.breakIt(t, srv, admin)

			rdb := c.client(srv.Addr)
			t.Cleanup(func() { rdb.Close() })
			rec := tracetest.NewSpanRecorder()
			st, err := session.NewStore(rdb, append(c.opts, session.WithKeyPrefix(prefix),
				session.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))))...)
			if err != nil {
				t.Fatal(err)
			}
			failed := 0
			for _, op := range ops {
				err := op.run(st)
				switch {
				case err == nil && (!c.writes || op.writes):
					t.Errorf("%s: no error", op.name)
				case err == nil:
				case !errors.Is(err, session.ErrUnavailable):
					t.Errorf("%s: %v; want an error matching ErrUnavailable", op.name, err)
				case c.cause != nil && !c.cause(err):
					t.Errorf("%s: %v; the cause is not wrapped", op.name, err)
				default:
					if failed++; failed == 1 {
						t.Logf("%s: %v", op.name, err)
					}
				}
			}
			errSpans := 0
			for _, sp := range rec.Ended() {
				if sp.Status().Code != codes.Error {
					continue
				}
				errSpans++
				typ, _ := spanAttr(sp, "error.type")
				outcome, _ := spanAttr(sp, "gatehouse.session.outcome")
				if typ.AsString() != c.errorType || outcome.AsString() != c.errorType {
					t.Errorf("span %s: error.type %q, outcome %q; want %q", sp.Name(), typ.AsString(), outcome.AsString(), c.errorType)
				}
			}
			if errSpans != failed {
				t.Errorf("%d spans with an error status for %d failed operations", errSpans, failed)
			}
		})
	}
}

// replyPrefix returns a check that err wraps an error reply of Redis starting with one of
// prefixes.
func replyPrefix(prefixes ...string) func(error) bool {
	return func(err error) bool {
		var reply redis.Error
		if !errors.As(err, &reply) {
			return false
		}
		for _, p := range prefixes {
			if redis.HasErrorPrefix(reply, p) {
				return true
			}
		}
		return false
	}
}

// busyScript keeps the server busy in a script that never ends, past busy-reply-threshold, until
// the test ends (SCRIPT KILL): every other command is answered BUSY meanwhile.
func busyScript(t *testing.T, srv *redistest.Server, admin *redis.Client) {
	t.Helper()
	ctx := context.Background()
	if err := admin.ConfigSet(ctx, "busy-reply-threshold", "10").Err(); err != nil {
		t.Fatal(err)
	}
	loop := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, MaxRetries: -1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		loop.Eval(ctx, "while true do end", nil) // ends with an error when killed
	}()
	t.Cleanup(func() {
		for {
			err := admin.ScriptKill(ctx).Err()
			if err == nil || !replyPrefix("NOTBUSY")(err) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		<-done
		loop.Close()
	})
	for {
		err := admin.Ping(ctx).Err()
		if replyPrefix("BUSY")(err) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
