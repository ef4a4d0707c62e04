package limiter

import (
	"context"
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

// What the failure policy stands in for: Redis unavailable, and nothing else.
func TestIsUnavailable(t *testing.T) {
	wrap := func(err error) error {
		return fmt.Errorf("limiter: token_bucket: gatehouse: script token_bucket: %w", err)
	}
	tests := []struct {
		err                    error
		unavailable, wholeServ bool
	}{
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true, true},
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true, true},
		{wrap(io.EOF), true, true},
		// The program closed its client under a call: no reply, but no sign of the server failing.
		{wrap(&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), true, false},
		{wrap(context.DeadlineExceeded), true, true},
		{wrap(os.ErrDeadlineExceeded), true, true},
		{wrap(redis.ErrPoolTimeout), true, true},
		{ErrUnavailable, true, true},
		{wrap(replyError("LOADING Redis is loading the dataset in memory")), true, true},
		{wrap(replyError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.")), true, true},
		{wrap(replyError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.")), true, true},
		{wrap(replyError("CLUSTERDOWN Hash slot not served")), true, true},
		{wrap(replyError("READONLY You can't write against a read only replica. script: 1, on @user_script:65.")), true, true},
		{wrap(replyError("NOREPLICAS Not enough good replicas to write. script: 1, on @user_script:65.")), true, true},
		{wrap(replyError("OOM command not allowed when used memory > 'maxmemory'. script: 1, on @user_script:65.")), true, true},
		{wrap(replyError("ERR max number of clients reached")), true, true},
		{wrap(replyError("TRYAGAIN Multiple keys request during rehashing of slot")), true, false},
		{wrap(replyError("WRONGTYPE Operation against a key holding the wrong kind of value")), false, false},
		{wrap(replyError("ERR user_script:71: too many results to unpack script: 1, on @user_script:71.")), false, false},
		{wrap(replyError("ERR The user executing the script can't run this command or subcommand")), false, false},
		{wrap(replyError("NOPERM this user has no permissions to run the 'evalsha' command")), false, false},
		{wrap(replyError("BUSYKEY Target key name already exists.")), false, false},
		{fmt.Errorf("%w: got string", ErrBadReply), false, false},
		{fmt.Errorf("%w: 0", ErrInvalidCost), false, false},
		{wrap(redis.ErrClosed), false, false},
		{wrap(context.Canceled), false, false},
	}
	for _, tt := range tests {
		ok, whole := isUnavailable(tt.err)
		if ok != tt.unavailable || whole != tt.wholeServ && ok {
			t.Errorf("isUnavailable(%v) = %v, %v; want %v, %v", tt.err, ok, whole, tt.unavailable, tt.wholeServ)
		}
	}
}
