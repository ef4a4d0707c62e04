package session

import (
	"sync/atomic"
	"time"
)

// ClockAt makes a store decide at the instant now holds (ms since the epoch) instead of the Redis
// server's clock, for the tests of package session_test: see withClock.
func ClockAt(now *atomic.Int64) Option {
	return withClock(func() time.Time { return time.UnixMilli(now.Load()) })
}
