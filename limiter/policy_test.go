package limiter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// replyError is an error Redis replied with, as go-redis reports one.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

var _ redis.Error = replyError("")

// Once the cooldown has passed, exactly one of many concurrent callers asks Redis; the rest keep
// deciding without it until that caller reports back.
func TestBreakerOneProbe(t *testing.T) {
	var b breaker
	const cooldown = time.Second
	b.failed(0, cooldown)
	if !b.skip(int64(cooldown)-1, cooldown) {
		t.Fatal("not skipping inside the cooldown")
	}
	var asked atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if !b.skip(int64(cooldown), cooldown) {
				asked.Add(1)
			}
		})
	}
	wg.Wait()
	if asked.Load() != 1 {
		t.Fatalf("%d callers asked Redis after the cooldown, want 1", asked.Load())
	}
	b.answered()
	if b.skip(int64(cooldown)+2, cooldown) {
		t.Error("still skipping after Redis answered")
	}
}

// What the failure policy stands in for: Redis unavailable, and an error of no known kind (from
// between the client and Redis: a hook's, a TLS failure), never the limiter's own verdicts, a
// reply, a cancellation or a closed client; and the error.type each error is recorded with.
func TestFailureOf(t *testing.T) {
	wrap := func(err error) error {
		return fmt.Errorf("limiter: token_bucket: gatehouse: script token_bucket: %w", err)
	}
	tests := []struct {
		err                    error
		unavailable, wholeServ bool
		errorType              string
	}{
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true, true, "unavailable"},
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true, true, "unavailable"},
		{wrap(io.EOF), true, true, "unavailable"},
		// The program closed its client under a call: no reply, but no sign of the server failing.
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), true, false, "unavailable"},
		{wrap(context.DeadlineExceeded), true, true, "timeout"},
		{wrap(os.ErrDeadlineExceeded), true, true, "timeout"},
		{wrap(redis.ErrPoolTimeout), true, true, "timeout"},
		{ErrUnavailable, true, true, "unavailable"},
		{wrap(replyError("LOADING Redis is loading the dataset in memory")), true, true, "unavailable"},
		{wrap(replyError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")), true, true, "unavailable"},
		{wrap(replyError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.")), true, true, "unavailable"},
		{wrap(replyError("CLUSTERDOWN Hash slot not served")), true, true, "unavailable"},
		{wrap(replyError("READONLY You can't write against a read only replica. script: 1, on @user_script:65.")), true, true, "unavailable"},
		{wrap(replyError("NOREPLICAS Not enough good replicas to write. script: 1, on @user_script:65.")), true, true, "unavailable"},
		{wrap(replyError("OOM command not allowed when used memory > 'maxmemory'. script: 1, on @user_script:65.")), true, true, "oom"},
		{wrap(replyError("ERR max number of clients reached")), true, true, "unavailable"},
		{wrap(replyError("TRYAGAIN Multiple keys request during rehashing of slot")), true, false, "unavailable"},
		{wrap(replyError("WRONGTYPE Operation against a key holding the wrong kind of value")), false, false, "error_reply"},
		{wrap(replyError("ERR user_script:71: too many results to unpack script: 1, on @user_script:71.")), false, false, "error_reply"},
		{wrap(replyError("ERR The user executing the script can't run this command or subcommand")), false, false, "error_reply"},
		{wrap(replyError("NOPERM this user has no permissions to run the 'evalsha' command")), false, false, "error_reply"},
		{wrap(replyError("BUSYKEY Target key name already exists.")), false, false, "error_reply"},
		{fmt.Errorf("%w: got string", ErrBadReply), false, false, "bad_reply"},
		{fmt.Errorf("%w: 0", ErrInvalidCost), false, false, "invalid_argument"},
		{wrap(redis.ErrClosed), false, false, "closed"},
		{wrap(context.Canceled), false, false, "canceled"},
		{wrap(replyError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.")), true, true, "unavailable"},
		{wrap(errors.New("redis: can't parse \"?\"")), true, true, "unavailable"}, // bytes that are not a reply
		{wrap(errors.New("a hook's own error")), false, false, "_OTHER"},
	}
	for _, tt := range tests {
		kind := failureOf(tt.err)
		if ok, whole := kind.Failed(), kind.ServerWide(); ok != tt.unavailable || whole != tt.wholeServ && ok {
			t.Errorf("failureOf(%v) = %v: failed %v, server-wide %v; want %v, %v", tt.err, kind, ok, whole, tt.unavailable, tt.wholeServ)
		}
		absorbed := failurePolicy{source: SourceFailOpen}.absorbs(context.Background(), tt.err)
		if want := tt.unavailable || tt.errorType == "_OTHER"; absorbed != want {
			t.Errorf("FailOpen absorbs %v: %v, want %v", tt.err, absorbed, want)
		}
		if got := errorType(tt.err); got != tt.errorType {
			t.Errorf("errorType(%v) = %q, want %q", tt.err, got, tt.errorType)
		}
	}
}
