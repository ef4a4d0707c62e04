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
		{fmt.Errorf("session: save: %w", net.ErrClosed), Unreachable},
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
		{script("OOM command not allowed when used memory > 'maxmemory'."), CannotServe},
		{script("ERR max number of clients reached"), CannotServe},
		{script("BUSYKEY Target key name already exists."), None},
		{script("BUSYGROUP Consumer Group name already exists"), None},
		{script("ERR Error running script: bad argument"), None},
		{script("NOPERM this user has no permissions"), None},
		{script("GATEHOUSE corrupt session record"), None},
		{context.Canceled, None},
		{fmt.Errorf("session: save: %w", redis.ErrClosed), None}, // closed by the program
		{fmt.Errorf("%w (%w)", context.Canceled, io.EOF), None},  // the caller gave up first
		{errors.New("session: create: status 3"), None},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestKind(t *testing.T) {
	for _, c := range []struct {
		k                            Kind
		failed, answered, serverWide bool
		errorType                    string
	}{
		{None, false, false, false, ""},
		{Timeout, true, false, true, "timeout"},
		{Unreachable, true, false, true, "unavailable"},
		{CannotServe, true, true, true, "unavailable"},
		{SlotMoving, true, true, false, "unavailable"},
	} {
		if c.k.Failed() != c.failed || c.k.Answered() != c.answered || c.k.ServerWide() != c.serverWide || c.k.ErrorType() != c.errorType {
			t.Errorf("%v: Failed %v, Answered %v, ServerWide %v, ErrorType %q; want %v, %v, %v, %q", c.k,
				c.k.Failed(), c.k.Answered(), c.k.ServerWide(), c.k.ErrorType(), c.failed, c.answered, c.serverWide, c.errorType)
		}
	}
}
