package session

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

func TestRedisUnavailable(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("session: load: %w", timeout), true},
		{fmt.Errorf("session: load: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{fmt.Errorf("session: save: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("session: save: %w", io.EOF), true},
		{fmt.Errorf("session: save: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("session: save: %w", redis.ErrPoolTimeout), true},
		{fmt.Errorf("session: save: %w", redis.ErrClosed), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("LOADING Redis is loading the dataset in memory")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("BUSY Redis is busy running a script")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("MASTERDOWN Link with MASTER is down")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("TRYAGAIN Multiple keys request during rehashing")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("CLUSTERDOWN The cluster is down")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("READONLY You can't write against a read only replica.")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("OOM command not allowed when used memory > 'maxmemory'.")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("ERR max number of clients reached")), true},
		{fmt.Errorf("gatehouse: script x: %w", replyError("ERR Error running script: bad argument")), false},
		{fmt.Errorf("gatehouse: script x: %w", replyError("NOPERM this user has no permissions")), false},
		{fmt.Errorf("%w: 20000 bytes of attributes, the cap is 16384", ErrTooLarge), false},
		{fmt.Errorf("%w: odd record", ErrCorrupt), false},
		{fmt.Errorf("%w: %w", ErrCorrupt, io.ErrUnexpectedEOF), false}, // a truncated value, not a connection
		{context.Canceled, false},
		{errors.New("session: create: status 3"), false},
	} {
		if got := redisUnavailable(c.err); got != c.want {
			t.Errorf("redisUnavailable(%v) = %v, want %v", c.err, got, c.want)
		}
		if got := errors.Is(classify(c.err), ErrUnavailable); got != c.want {
			t.Errorf("classify(%v) matches ErrUnavailable: %v, want %v", c.err, got, c.want)
		}
		if !errors.Is(classify(c.err), c.err) {
			t.Errorf("classify(%v) lost the error", c.err)
		}
	}
}
