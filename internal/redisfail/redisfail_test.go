package redisfail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// replyError is an error reply as go-redis returns it (a type with a RedisError method).
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// The classification of each error a client of Redis sees. The integration tests produce the
// real ones against real servers (refused, paused, BUSY, READONLY, MASTERDOWN, OOM, maxclients);
// this table also covers those a test cannot produce on demand (LOADING, TRYAGAIN, CLUSTERDOWN).
func TestClassify(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	script := func(reply string) error { return fmt.Errorf("gatehouse: script x: %w", replyError(reply)) }
	for _, c := range []struct {
		err  error
		want Kind
	}{
		{nil, None},
		{fmt.Errorf("session: load: %w", timeout), Timeout},
		{fmt.Errorf("session: save: %w", context.DeadlineExceeded), Timeout},
		{fmt.Errorf("session: save: %w", redis.ErrPoolTimeout), Timeout},
		{fmt.Errorf("session: load: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), Unreachable},
		{&net.DNSError{Err: "no such host", Name: "redis.invalid"}, Unreachable},
		{fmt.Errorf("session: save: %w", io.EOF), Unreachable},
		{fmt.Errorf("session: save: %w", io.ErrUnexpectedEOF), Unreachable},
		{fmt.Errorf("session: save: %w", syscall.ECONNRESET), Unreachable},
		{fmt.Errorf("session: save: %w", syscall.EPIPE), Unreachable},
		{fmt.Errorf("session: save: %w", net.ErrClosed), Interrupted},
		{fmt.Errorf("x: %w", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), Interrupted},
		{errors.New("redis: invalid reply: \"?\""), Unreachable},
		{errors.New("redis: connection not available for write operation"), Unreachable},
		{fmt.Errorf("session: save: %w", redis.ErrPoolExhausted), Unreachable},
		{errors.New("redis: all ring shards are down"), Unreachable},
		{fmt.Errorf("x: %w", errors.New("redis: all sentinels specified in configuration are unreachable")), Unreachable},
		{script("LOADING Redis is loading the dataset in memory"), CannotServe},
		{script("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), CannotServe},
		{script("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), CannotServe},
		{script("TRYAGAIN Multiple keys request during rehashing of slot"), SlotMoving},
		{script("CLUSTERDOWN The cluster is down"), CannotServe},
		{script("READONLY You can't write against a read only replica."), CannotServe},
		{script("NOREPLICAS Not enough good replicas to write."), CannotServe},
		{script("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), CannotServe},
		{script("OOM command not allowed when used memory > 'maxmemory'."), OutOfMemory},
		{script("ERR max number of clients reached"), CannotServe},
		{script("BUSYKEY Target key name already exists."), ErrorReply},
		{script("BUSYGROUP Consumer Group name already exists"), ErrorReply},
		{script("ERR Error running script: bad argument"), ErrorReply},
		{script("NOPERM this user has no permissions"), ErrorReply},
		{script("GATEHOUSE corrupt session record"), ErrorReply},
		{context.Canceled, Canceled},
		{fmt.Errorf("session: save: %w", redis.ErrClosed), Closed},  // closed by the program
		{fmt.Errorf("%w (%w)", context.Canceled, io.EOF), Canceled}, // the caller gave up first
		{errors.New("session: create: status 3"), Other},
		{fmt.Errorf("x: %w", redis.Nil), Other},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestKind(t *testing.T) {
	for _, c := range []struct {
		k                  Kind
		failed, serverWide bool
		errorType          string
	}{
		{None, false, false, ""},
		{Other, false, false, "_OTHER"},
		{Canceled, false, false, "canceled"},
		{Closed, false, false, "closed"},
		{Timeout, true, true, "timeout"},
		{Unreachable, true, true, "unavailable"},
		{Interrupted, true, false, "unavailable"},
		{CannotServe, true, true, "unavailable"},
		{SlotMoving, true, false, "unavailable"},
		{OutOfMemory, true, true, "oom"},
		{ErrorReply, false, false, "error_reply"},
	} {
		if c.k.Failed() != c.failed || c.k.ServerWide() != c.serverWide || c.k.ErrorType() != c.errorType {
			t.Errorf("%v: Failed %v, ServerWide %v, ErrorType %q; want %v, %v, %q", c.k,
				c.k.Failed(), c.k.ServerWide(), c.k.ErrorType(), c.failed, c.serverWide, c.errorType)
		}
	}
}
