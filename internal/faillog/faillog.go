// Package faillog logs the requests a transport (limithttp, limitgrpc) could not have decided,
// bounding the records of failures of Redis, which fail every request while Redis is down, to one
// per interval. Its Throttle is that bound alone, which the session middleware's log uses too.
package faillog

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/redisfail"
)

// Log logs failures. Its zero value logs every failure to slog.Default() under an empty message;
// set Msg and Interval. A Log is safe for concurrent use.
type Log struct {
	Logger   *slog.Logger     // nil: slog.Default(), as it is at each record
	Msg      string           // the records' message
	Interval time.Duration    // at most one record of a failure of Redis per Interval; <= 0: all
	Now      func() time.Time // nil: time.Now

	throttle Throttle
}

// Failure logs err with attrs: at Debug when gone (the client went away: nothing failed on this
// side), else at Error. A failure of Redis (redisfail.Classify) within Interval of the last one
// logged is counted, not logged; the next record logged carries the count (suppressed).
func (l *Log) Failure(ctx context.Context, err error, gone bool, attrs ...slog.Attr) {
	level := slog.LevelError
	if gone {
		level = slog.LevelDebug
	}
	if !gone && redisfail.Classify(err).Failed() && l.Interval > 0 {
		logged, suppressed := l.admit()
		if !logged {
			return
		}
		if suppressed > 0 {
			attrs = append(attrs, slog.Int64("suppressed", suppressed))
		}
	}
	logger := l.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.LogAttrs(ctx, level, l.Msg, append(attrs, slog.Any("error", err))...)
}

// admit reports whether a failure of Redis is logged now and, if it is, how many were not since
// the previous record.
func (l *Log) admit() (bool, int64) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	return l.throttle.Admit(now(), l.Interval)
}

// Throttle bounds records of one kind to one per interval, counting those it holds back. Its zero
// value is ready; it is safe for concurrent use.
type Throttle struct {
	suppressed atomic.Int64 // records held back since the last one; changed under mu

	mu   sync.Mutex
	next time.Time // no record before it
}

// Admit reports whether a record is due at now, with interval between records (<= 0: every
// record is), and if it is, how many were held back since the previous one.
func (t *Throttle) Admit(now time.Time, interval time.Duration) (bool, int64) {
	if interval <= 0 {
		return true, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Before(t.next) {
		t.suppressed.Add(1)
		return false, 0
	}
	t.next = now.Add(interval)
	return true, t.suppressed.Swap(0)
}

// Recovered returns, once the trouble is over (Redis answered), how many records were held back
// since the last one, when interval has passed since it (the count then starts again); else 0:
// nothing to log. Without held-back records it costs one atomic load, and reads no clock.
func (t *Throttle) Recovered(now func() time.Time, interval time.Duration) int64 {
	if t.suppressed.Load() == 0 {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	at := now()
	if at.Before(t.next) {
		return 0
	}
	n := t.suppressed.Swap(0)
	if n > 0 {
		t.next = at.Add(interval)
	}
	return n
}
