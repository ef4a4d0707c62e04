package redisfail_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/redisfail"
	"github.com/gatehouse/gatehouse/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// blocked starts BLPOP on a key nothing pushes to, through c, and returns once the server shows the
// call waiting, with the client's ID and a channel that gets the call's error.
func blocked(t *testing.T, c, admin *redis.Client) (id int64, done <-chan error) {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- c.BLPop(context.Background(), time.Minute, "redisfail:never").Err() }() // not 0: a lost kill fails the test, not hangs it
	return redistest.WaitBlocked(t, admin, c.Options().ClientName), ch
}

// named sets a client's connection name, by which blocked finds its BLPOP in CLIENT LIST.
func named(name string) func(*redis.Options) {
	return func(o *redis.Options) { o.ClientName = "redisfail-" + name }
}

// Classify on the errors that a real go-redis client gets from real servers, each broken the way
// the case says, and the error.type that the limiter and the session store record for it.
func TestClassifyReal(t *testing.T) {
	ctx := context.Background()
	_, admin := redistest.Private(t)
	for _, c := range []struct {
		name    string
		produce func(t *testing.T) error
		want    redisfail.Kind
		typ     string
		or      redisfail.Kind // another kind the error may have, depending on the timing
	}{
		{"a server that answers", func(t *testing.T) error { return admin.Ping(ctx).Err() }, redisfail.None, "", redisfail.None},
		{"a stopped server (connection refused)", func(t *testing.T) error {
			srv, c := redistest.Private(t)
			srv.Stop()
			return c.Ping(ctx).Err()
		}, redisfail.Unreachable, "unavailable", redisfail.None},
		{"a client the program closed", func(t *testing.T) error {
			c := redistest.ClientFor(t, admin.Options().Addr)
			c.Close()
			return c.Ping(ctx).Err()
		}, redisfail.Closed, "closed", redisfail.None},
		{"a client closed while its call waits for the reply", func(t *testing.T) error {
			c := redistest.ClientFor(t, admin.Options().Addr, named("closed-under-call"))
			_, done := blocked(t, c, admin)
			c.Close()
			return <-done
		}, redisfail.Interrupted, "unavailable", redisfail.None},
		{"a connection the server closed under the call", func(t *testing.T) error {
			c := redistest.ClientFor(t, admin.Options().Addr, named("killed-under-call"))
			id, done := blocked(t, c, admin)
			if err := admin.ClientKillByFilter(ctx, "ID", strconv.FormatInt(id, 10)).Err(); err != nil {
				t.Fatal(err)
			}
			return <-done
		}, redisfail.Unreachable, "unavailable", redisfail.None},
		{"a pool timeout (PoolSize 1, its connection blocked)", func(t *testing.T) error {
			c := redistest.ClientFor(t, admin.Options().Addr, named("pool-timeout"), func(o *redis.Options) {
				o.PoolSize, o.PoolTimeout = 1, 50*time.Millisecond
			})
			id, done := blocked(t, c, admin)
			err := c.Ping(ctx).Err()
			admin.ClientKillByFilter(ctx, "ID", strconv.FormatInt(id, 10))
			<-done
			return err
		}, redisfail.Timeout, "timeout", redisfail.None},
		{"CLIENT PAUSE past the read timeout", func(t *testing.T) error {
			_, paused := redistest.Private(t)
			c := redistest.ClientFor(t, paused.Options().Addr, func(o *redis.Options) { o.ReadTimeout = 50 * time.Millisecond })
			if err := c.Ping(ctx).Err(); err != nil { // dialled before the pause
				t.Fatal(err)
			}
			pause(t, paused)
			return c.Ping(ctx).Err()
		}, redisfail.Timeout, "timeout", redisfail.None},
		{"CLIENT PAUSE past the context's deadline", func(t *testing.T) error {
			_, paused := redistest.Private(t)
			c := redistest.ClientFor(t, paused.Options().Addr)
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			pause(t, paused)
			dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			return c.Ping(dctx).Err()
		}, redisfail.Timeout, "timeout", redisfail.None},
		// (go-redis does not watch a cancellation once the command is sent: a call canceled while
		// it waits for the reply ends at the read timeout, and is a Timeout.)
		{"a caller that gave up", func(t *testing.T) error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			return admin.Ping(cctx).Err()
		}, redisfail.Canceled, "canceled", redisfail.None},
		{"a script error", func(t *testing.T) error {
			return admin.Eval(ctx, "return redis.call('INCR', KEYS[1], 'extra')", []string{"redisfail:k"}).Err()
		}, redisfail.ErrorReply, "error_reply", redisfail.None},
		{"a script's own error", func(t *testing.T) error {
			return admin.Eval(ctx, "return redis.error_reply('GATEHOUSE corrupt')", nil).Err()
		}, redisfail.ErrorReply, "error_reply", redisfail.None},
		{"a key of another type", func(t *testing.T) error {
			admin.Set(ctx, "redisfail:string", "x", time.Minute)
			return admin.Eval(ctx, "return redis.call('HGET', KEYS[1], 'f')", []string{"redisfail:string"}).Err()
		}, redisfail.ErrorReply, "error_reply", redisfail.None},
		{"OOM under maxmemory and noeviction", func(t *testing.T) error {
			_, full := redistest.Private(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
			return full.Eval(ctx, "return redis.call('SET', KEYS[1], 'x')", []string{"redisfail:k"}).Err()
		}, redisfail.OutOfMemory, "oom", redisfail.None},
		{"a write to a replica (READONLY)", func(t *testing.T) error {
			host, port, _ := strings.Cut(admin.Options().Addr, ":")
			_, replica := redistest.Private(t, "--replicaof", host, port)
			return replica.Set(ctx, "redisfail:k", "x", time.Minute).Err()
		}, redisfail.CannotServe, "unavailable", redisfail.None},
		{"a replica of a dead master, replica-serve-stale-data no (MASTERDOWN)", func(t *testing.T) error {
			dead, _ := redistest.Private(t)
			dead.Stop()
			host, port, _ := strings.Cut(dead.Addr, ":")
			_, replica := redistest.Private(t, "--replicaof", host, port)
			// Set once started: the start's PING would get MASTERDOWN.
			if err := replica.ConfigSet(ctx, "replica-serve-stale-data", "no").Err(); err != nil {
				t.Fatal(err)
			}
			return replica.Get(ctx, "redisfail:k").Err()
		}, redisfail.CannotServe, "unavailable", redisfail.None},
		{"writes stopped after a failed snapshot (MISCONF)", func(t *testing.T) error {
			_, c := redistest.Private(t, "--enable-protected-configs", "yes", "--save", "3600 1")
			redistest.FailSnapshot(t, c)
			return c.Eval(ctx, "return redis.call('SET', KEYS[1], 'x')", []string{"redisfail:k"}).Err()
		}, redisfail.CannotServe, "unavailable", redisfail.None},
		{"a cluster node serving no slot (CLUSTERDOWN)", func(t *testing.T) error {
			_, node := redistest.Private(t, "--cluster-enabled", "yes")
			return node.Get(ctx, "redisfail:k").Err()
		}, redisfail.CannotServe, "unavailable", redisfail.None},
		{"max clients reached", func(t *testing.T) error {
			_, full := redistest.Private(t, "--maxclients", "1")
			if err := full.Ping(ctx).Err(); err != nil { // full holds the one connection
				t.Fatal(err)
			}
			// The server replies with the error and closes the connection: the client may be
			// writing its HELLO already, and find the connection broken (EPIPE, ECONNRESET).
			return redistest.ClientFor(t, full.Options().Addr).Ping(ctx).Err()
		}, redisfail.CannotServe, "unavailable", redisfail.Unreachable},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.produce(t)
			if got := redisfail.Classify(err); got != c.want && (c.or == redisfail.None || got != c.or) || got.ErrorType() != c.typ {
				t.Errorf("Classify(%v) = %v (error.type %q), want %v (%q)", err, got, got.ErrorType(), c.want, c.typ)
			}
		})
	}
}

// pause pauses every client of the server c talks to (c too: UNPAUSE would not get through) for
// a minute; the test's end stops the server.
func pause(t *testing.T, c *redis.Client) {
	t.Helper()
	if err := c.Do(context.Background(), "CLIENT", "PAUSE", 60_000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
}
