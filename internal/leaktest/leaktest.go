// Package leaktest checks that a test leaves no goroutine behind: Take notes the goroutines
// running at a point, and Snapshot.Check later waits, a bounded time, until every goroutine
// started since has ended, failing the test with their stacks otherwise. It compares goroutines by
// their IDs, not by count, so that a goroutine of an earlier test ending meanwhile cannot hide a
// leak. It depends on the standard library alone (the root module requires go-redis, the
// OpenTelemetry API and msgpack, nothing more, not even for tests).
package leaktest

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Snapshot is the set of goroutines running when it was taken.
type Snapshot struct {
	ids   map[uint64]bool
	count int
}

// Take returns the goroutines running now.
func Take() Snapshot {
	gs := goroutines()
	ids := make(map[uint64]bool, len(gs))
	for id := range gs {
		ids[id] = true
	}
	return Snapshot{ids: ids, count: len(gs)}
}

// Count is how many goroutines were running when s was taken.
func (s Snapshot) Count() int { return s.count }

// Left returns the stacks of the goroutines started since s that are still running, but those
// created by a function whose name starts with one of ignore (such as "os/exec.", for the
// goroutines that watch a server process the test keeps running).
func (s Snapshot) Left(ignore ...string) []string {
	var left []string
	for id, stack := range goroutines() {
		if !s.ids[id] && !createdBy(stack, ignore) {
			left = append(left, stack)
		}
	}
	return left
}

// createdBy reports whether the goroutine of stack was created by a function whose name starts
// with one of prefixes.
func createdBy(stack string, prefixes []string) bool {
	_, creator, ok := strings.Cut(stack, "\ncreated by ")
	if !ok {
		return false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(creator, p) {
			return true
		}
	}
	return false
}

// Check waits at most wait, polling, until every goroutine started since s has ended (but those
// Left ignores), and fails t with the stacks of those still running then. It returns how long the
// wait took.
func (s Snapshot) Check(t testing.TB, wait time.Duration, ignore ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(wait)
	for {
		left := s.Left(ignore...)
		if len(left) == 0 {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines started since the snapshot still run after %v:\n\n%s", len(left), wait, strings.Join(left, "\n\n"))
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dump returns the stacks of every goroutine, for a failure message.
func Dump() string {
	gs := goroutines()
	stacks := make([]string, 0, len(gs))
	for _, st := range gs {
		stacks = append(stacks, st)
	}
	return strings.Join(stacks, "\n\n")
}

// goroutines returns the stack of every goroutine but the caller's, by ID.
func goroutines() map[uint64]string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[uint64]string{}
	for i, block := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller's own goroutine comes first
		}
		// "goroutine 18 [chan receive]:"
		rest, ok := strings.CutPrefix(block, "goroutine ")
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, " ")
		if id, err := strconv.ParseUint(num, 10, 64); err == nil {
			out[id] = block
		}
	}
	return out
}

// Await waits at most within for wg, and fails t with every goroutine's stack if it has not
// finished by then: the bound on a hang (not on speed) of what wg counts, which is named by what.
func Await(t testing.TB, wg *sync.WaitGroup, within time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(within):
		t.Fatalf("%s still running after %v:\n\n%s", what, within, Dump())
	}
}
