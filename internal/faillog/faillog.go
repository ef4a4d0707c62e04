// Package faillog logs the requests a transport (limithttp, limitgrpc) could not have decided,
// bounding the records of failures of Redis, which fail every request while Redis is down, to one
// per interval.
package faillog

import (
	"context"
	"log/slog"
	"sync"
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

	mu         sync.Mutex
	next       time.Time // no record of a failure of Redis before it
	suppressed int64     // failures of Redis not logged since the last record
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
	t := now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	l.next = t.Add(l.Interval)
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
