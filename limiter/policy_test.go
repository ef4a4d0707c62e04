package limiter

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	b.failed(0, cooldown, errors.New("dial tcp: connection refused"))
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
	// A reply with an error concerns one key: no cooldown.
	b.failed(0, cooldown, fmt.Errorf("limiter: token_bucket: %w", replyError("WRONGTYPE Operation against a key holding the wrong kind of value")))
	if b.skip(1, cooldown) {
		t.Error("an error reply started a cooldown")
	}
}
