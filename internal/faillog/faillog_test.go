package faillog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Failures of Redis are logged at most once per interval, the next record carrying how many were
// not; other failures every time; a client gone at Debug.
func TestLog(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := &Log{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), Msg: "x: not decided",
		Interval: time.Second, Now: func() time.Time { return now }}
	ctx := context.Background()
	down := fmt.Errorf("limiter: token_bucket: %w", syscall.ECONNREFUSED)
	invalid := errors.New("limiter: invalid cost: 0 (want at least 1)")
	lines := func() []string {
		defer buf.Reset()
		return strings.Split(strings.TrimSpace(buf.String()), "\n")
	}
	for range 5 {
		l.Failure(ctx, down, false, slog.String("method", "GET"))
	}
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "level=ERROR") || strings.Contains(got[0], "suppressed") || !strings.Contains(got[0], "method=GET") {
		t.Fatalf("5 failures of Redis within the interval: %q, want one record", got)
	}
	for range 3 {
		l.Failure(ctx, invalid, false)
	}
	if got := lines(); len(got) != 3 {
		t.Fatalf("3 other failures: %q, want each logged", got)
	}
	l.Failure(ctx, context.Canceled, true)
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "level=DEBUG") {
		t.Fatalf("a client gone: %q, want a Debug record", got)
	}
	now = now.Add(999 * time.Millisecond)
	l.Failure(ctx, down, false)
	if got := lines(); len(got) != 1 || got[0] != "" {
		t.Fatalf("a failure of Redis just within the interval: %q, want none", got)
	}
	now = now.Add(time.Millisecond)
	l.Failure(ctx, down, false)
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "suppressed=5") {
		t.Fatalf("a failure of Redis at the end of the interval: %q, want a record with suppressed=5", got)
	}
	every := &Log{Logger: l.Logger}
	for range 3 {
		every.Failure(ctx, down, false)
	}
	if got := lines(); len(got) != 3 {
		t.Fatalf("no interval: %q, want every failure", got)
	}
}
